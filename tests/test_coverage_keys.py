"""sut_soap.keys: the refusals and tolerances the main key tests leave out (issue 7 coverage)."""

from __future__ import annotations

import base64
import os
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sut_soap.errors import ConfigurationError
from sut_soap.keys import KeyFilePermissionWarning, load_private_key

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keys"


def fixture_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((FIXTURES / "test-partner-pkcs8.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def refused(source: object, *, password: str | None = None) -> ConfigurationError:
    """Load ``source``; assert a ConfigurationError with no third-party exception attached."""
    with pytest.raises(ConfigurationError) as caught:
        load_private_key(source, password=password)  # type: ignore[arg-type]
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    return caught.value


def b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")).decode()


# --- files ------------------------------------------------------------------------------------


def test_zero_byte_key_file_is_refused_as_empty(tmp_path: Path) -> None:
    """A zero-byte key file is refused as empty, naming the path, with a hint to save it completely."""
    path = tmp_path / "partner.xml"
    path.write_bytes(b"")
    path.chmod(0o600)
    error = refused(str(path))
    assert error.message == f"key file {str(path)!r} is empty"
    assert error.hint == "that the key was saved completely"


def test_key_file_over_one_mebibyte_is_refused_by_its_size(tmp_path: Path) -> None:
    """A regular file over 1 MiB is refused from its size (in bytes), before it is read."""
    path = tmp_path / "huge.pem"
    with path.open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)  # sparse: nothing to read, only a size
    path.chmod(0o600)
    error = refused(path)
    assert "is 2097152 bytes, too large to be a key" in error.message


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_device_is_refused_after_one_mebibyte() -> None:
    """A path to a device with no size (/dev/zero) is read only up to the cap and refused as too large."""
    error = refused("/dev/zero")
    assert error.message == "key file '/dev/zero' is too large to be a key"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_is_not_permission_checked() -> None:
    """A non-regular file (/dev/null, mode 0666) gets no permission warning; it is refused as empty."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyFilePermissionWarning)
        error = refused("/dev/null")
    assert error.message == "key file '/dev/null' is empty"


def test_unopenable_path_is_refused_with_the_os_reason(tmp_path: Path) -> None:
    """An OS error other than missing/denied/directory (a name too long) is refused with its strerror."""
    path = str(tmp_path / ("k" * 300 + ".pem"))
    error = refused(path)
    assert "cannot be read (File name too long)" in error.message
    assert error.hint == "the path to the private key file and that this process may read it"


def test_path_with_nul_byte_is_refused_as_unusable_name() -> None:
    """A str path holding a NUL byte is refused as an unusable file name, not a crash."""
    error = refused("partner\0.pem")
    assert error.message == "key file 'partner\\x00.pem' is not a usable file name"


# --- content ----------------------------------------------------------------------------------


def test_utf16_bom_with_invalid_text_is_refused() -> None:
    """Content that starts with a UTF-16 BOM but is not UTF-16 (a lone surrogate) is refused as such."""
    error = refused(b"\xff\xfe" + "<RSAKeyValue>".encode("utf-16-le") + b"\x00\xd8")
    assert "starts with a UTF-16 byte order mark but is not valid UTF-16 text" in error.message
    assert error.hint == "save the key as UTF-8 or ASCII"


def _ec_key_on_unsupported_curve() -> bytes:
    """An RFC 5915 EC private key on secp112r1, a curve cryptography does not implement."""
    oid = bytes.fromhex("2b81040006")  # 1.3.132.0.6, secp112r1
    scalar = bytes(range(1, 15))
    inner = bytes([0x02, 0x01, 0x01, 0x04, len(scalar)]) + scalar + bytes([0xA0, len(oid) + 2, 0x06, len(oid)]) + oid
    return bytes([0x30, len(inner)]) + inner


@pytest.mark.parametrize("form", ["pem", "der"])
@pytest.mark.parametrize("password", [None, "pw"])
def test_key_on_unsupported_algorithm_is_refused_as_unsupported(form: str, password: str | None) -> None:
    """A key cryptography cannot handle (an EC curve it lacks) is refused as unsupported, not as damaged."""
    der = _ec_key_on_unsupported_curve()
    data = der if form == "der" else (
        b"-----BEGIN EC PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END EC PRIVATE KEY-----\n"
    )
    error = refused(data, password=password)
    assert error.message == "the key data uses an encryption or key algorithm this cryptography build does not support"
    assert "openssl pkcs8 -topk8" in (error.hint or "")


def test_damaged_pem_with_password_is_not_called_a_wrong_password() -> None:
    """A damaged unencrypted PEM given a password is reported as damaged, not as a wrong password."""
    lines = (FIXTURES / "test-partner-pkcs8.pem").read_bytes().splitlines(keepends=True)
    damaged = b"".join(lines[:3] + lines[5:])
    error = refused(damaged, password="sut-soap-test")
    assert "PEM data that does not decode as a private key" in error.message
    assert "password" not in error.message


def test_unknown_elements_in_rsa_key_value_are_ignored() -> None:
    """Elements of <RSAKeyValue> other than the eight key values are skipped, and the key loads."""
    document = (FIXTURES / "test-partner.xml").read_text(encoding="utf-8-sig")
    extended = document.replace("<RSAKeyValue>", "<RSAKeyValue><KeySize>2048</KeySize><Comment>x</Comment>", 1)
    assert extended != document
    key = load_private_key(extended)
    assert key.private_numbers() == fixture_key().private_numbers()


def test_consistent_numbers_that_are_no_rsa_key_are_refused() -> None:
    """Values that pass every named consistency check but are no RSA key (P=4) are refused as invalid."""
    # n = p*q, d*e = 1 mod lcm(p-1, q-1), DP, DQ and InverseQ all agree; p is not prime.
    values = {"Modulus": 20, "Exponent": 5, "P": 4, "Q": 5, "DP": 2, "DQ": 1, "InverseQ": 1, "D": 5}
    document = "<RSAKeyValue>" + "".join(f"<{k}>{b64(v)}</{k}>" for k, v in values.items()) + "</RSAKeyValue>"
    error = refused(document)
    assert error.message == "the key text: inconsistent key: the numbers do not form a valid RSA key"

