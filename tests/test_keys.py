"""Tests for sut_soap.keys: every key form partners hold, every refusal, and the writers."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import b64_int

from sut_soap import keys
from sut_soap.errors import ConfigurationError
from sut_soap.keys import (
    KeyFilePermissionWarning,
    load_private_key,
    private_key_to_pem,
    private_key_to_rsa_xml,
    public_key_fingerprint,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keys"
PASSWORD = "sut-soap-test"
FINGERPRINT = "SHA256:29:5b:aa:b9:9b:76:f8:5f:b1:61:54:c2:a0:15:d9:c1:4f:a2:76:c8:a5:1c:31:58:0b:97:9a:a4:02:7d:86:41"
ELEMENTS = ("Modulus", "Exponent", "P", "Q", "DP", "DQ", "InverseQ", "D")
PLAIN = serialization.NoEncryption()
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL
PKCS8 = serialization.PrivateFormat.PKCS8
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def private_copy(tmp_path: Path, name: str, mode: int = 0o600) -> Path:
    """Copy a fixture to tmp_path with ``mode`` (git checks files out 0644)."""
    target = tmp_path / name
    shutil.copyfile(FIXTURES / name, target)
    target.chmod(mode)
    return target


def windows_of(*materials: bytes | str | int) -> set[str]:
    """Every 16-character window of the Base64/hex/decimal runs in ``materials``."""
    found: set[str] = set()
    for material in materials:
        if isinstance(material, int):
            texts = [str(material), f"{material:x}", f"{material:X}"]
        elif isinstance(material, bytes):
            texts = [material.decode("latin-1"), repr(material)[2:-1], material.hex()]
        else:
            texts = [material]
        for text in texts:
            for run in re.findall(r"[A-Za-z0-9+/=\\]{16,}", text):
                found.update(run[i : i + 16] for i in range(len(run) - 15))
    return found


def error_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend([current.__cause__, current.__context__])


def leaked(error: BaseException, windows: set[str]) -> list[str]:
    """The key-material windows found in the error, its str/repr/args/hint, and its whole chain."""
    hits = []
    for link in error_chain(error):
        texts = [str(link), repr(link), *(str(arg) for arg in link.args)]
        texts += [str(getattr(link, name, "")) for name in ("message", "hint")]
        for text in texts:
            hits += [text[i : i + 16] for i in range(len(text) - 15) if text[i : i + 16] in windows]
    return hits


def refused(source: Any, windows: set[str], *, password: bytes | str | None = None) -> ConfigurationError:
    """Assert that loading ``source`` raises ConfigurationError that leaks no key material."""
    with pytest.raises(ConfigurationError) as caught:
        load_private_key(source, password=password)
    assert leaked(caught.value, windows) == []
    # keys.py raises after its except blocks end, so no third-party exception rides along.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    return caught.value


def dotnet_values(numbers: rsa.RSAPrivateNumbers) -> dict[str, str]:
    """The <RSAKeyValue> values as .NET writes them, computed here independently of keys.py."""
    public = numbers.public_numbers
    size = (public.n.bit_length() + 7) // 8
    half = (size + 1) // 2
    widths = {
        "Modulus": (public.n, size),
        "Exponent": (public.e, (public.e.bit_length() + 7) // 8),
        "P": (numbers.p, half),
        "Q": (numbers.q, half),
        "DP": (numbers.dmp1, half),
        "DQ": (numbers.dmq1, half),
        "InverseQ": (numbers.iqmp, half),
        "D": (numbers.d, size),
    }
    return {name: base64.b64encode(v.to_bytes(w, "big")).decode() for name, (v, w) in widths.items()}


def xml_document(values: dict[str, str], *, between: str = "", prolog: str = "", root: str = "RSAKeyValue") -> str:
    body = between.join(f"<{name}>{value}</{name}>" for name, value in values.items())
    return f"{prolog}<{root}>{between}{body}{between}</{root}>"


@pytest.fixture(scope="session")
def partner_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(fixture_bytes("test-partner-pkcs8.pem"), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="session")
def partner_numbers(partner_key: rsa.RSAPrivateKey) -> rsa.RSAPrivateNumbers:
    return partner_key.private_numbers()


@pytest.fixture(scope="session")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def small_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(fixture_bytes("rsa-1024.pem"), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="session")
def secret(partner_numbers: rsa.RSAPrivateNumbers, small_key: rsa.RSAPrivateKey) -> set[str]:
    """Windows of the fixture keys in every form they exist in."""
    files = [p.read_bytes() for p in FIXTURES.iterdir() if p.suffix in {".pem", ".der", ".xml"}]
    small = small_key.private_numbers()
    numbers = [partner_numbers.p, partner_numbers.q, partner_numbers.d, partner_numbers.public_numbers.n]
    numbers += [small.p, small.q, small.d, small.public_numbers.n]
    return windows_of(*files, *numbers, *dotnet_values(partner_numbers).values())


@pytest.fixture(scope="session")
def certificate(partner_key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sut-soap test partner")])
    now = datetime.now(timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(partner_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(partner_key, hashes.SHA256())
    )


# --- accepted forms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("test-partner.xml", None),
        ("test-partner-pkcs1.pem", None),
        ("test-partner-pkcs8.pem", None),
        ("test-partner.der", None),
        ("test-partner-encrypted.pem", PASSWORD),
        ("test-partner-encrypted.pem", PASSWORD.encode()),
    ],
)
def test_every_fixture_form_gives_the_same_key(
    name: str, password: str | bytes | None, partner_numbers: rsa.RSAPrivateNumbers
) -> None:
    """Each committed form of the test-partner key loads to the same private numbers."""
    key = load_private_key(fixture_bytes(name), password=password)
    assert key.private_numbers() == partner_numbers


def test_pkcs1_der_loads(partner_key: rsa.RSAPrivateKey) -> None:
    """DER PKCS#1 (RSAPrivateKey structure) loads."""
    der = partner_key.private_bytes(DER, PKCS1, PLAIN)
    assert load_private_key(der).private_numbers() == partner_key.private_numbers()


def test_legacy_encrypted_pkcs1_pem_loads(partner_key: rsa.RSAPrivateKey) -> None:
    """OpenSSL's legacy encrypted PKCS#1 PEM (Proc-Type/DEK-Info) loads with its password."""
    pem = partner_key.private_bytes(PEM, PKCS1, serialization.BestAvailableEncryption(b"legacy"))
    assert b"Proc-Type: 4,ENCRYPTED" in pem
    assert load_private_key(pem, password="legacy").private_numbers() == partner_key.private_numbers()


def test_encrypted_pkcs8_der_loads(partner_key: rsa.RSAPrivateKey) -> None:
    """Encrypted PKCS#8 DER loads with its password."""
    der = partner_key.private_bytes(DER, PKCS8, serialization.BestAvailableEncryption(b"der-pw"))
    assert load_private_key(der, password=b"der-pw").private_numbers() == partner_key.private_numbers()


@pytest.mark.parametrize("name", ["test-partner.xml", "test-partner-pkcs8.pem", "test-partner.der"])
def test_str_path_loads(name: str, tmp_path: Path, partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """A str that is not key content is read as a file path."""
    path = private_copy(tmp_path, name)
    assert load_private_key(str(path)).private_numbers() == partner_numbers


def test_pathlike_loads(tmp_path: Path, partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """An os.PathLike is read as a file."""
    path = private_copy(tmp_path, "test-partner.xml")
    assert load_private_key(path).private_numbers() == partner_numbers


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_like_content_loads(wrap: Callable[[bytes], Any], partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """bytes, bytearray and memoryview are key content."""
    key = load_private_key(wrap(fixture_bytes("test-partner-pkcs1.pem")))
    assert key.private_numbers() == partner_numbers


@pytest.mark.parametrize("name", ["test-partner-pkcs1.pem", "test-partner.xml"])
def test_str_content_loads(name: str, partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """A str holding PEM or XML (even after a BOM and whitespace) is key content, not a path."""
    text = "\ufeff \r\n" + fixture_bytes(name).decode("utf-8-sig") + "\n\n"
    assert load_private_key(text).private_numbers() == partner_numbers


def test_key_object_is_returned_as_is(partner_key: rsa.RSAPrivateKey) -> None:
    """An RSA private key object of 2048 bits is returned unchanged."""
    assert load_private_key(partner_key) is partner_key


def test_fixture_xml_is_shaped_like_a_portal_download() -> None:
    """The XML fixture has a UTF-8 BOM, CRLF line ends and a value wrapped over lines."""
    raw = fixture_bytes("test-partner.xml")
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\r\n") == raw.count(b"\n") > 10
    assert re.search(rb"<Modulus>\s*[A-Za-z0-9+/]+\r\n\s*[A-Za-z0-9+/]+", raw)


def _variant(name: str, values: dict[str, str]) -> bytes:
    if name == "dotnet-one-line":
        return xml_document(values).encode()
    if name == "declaration":
        return xml_document(values, prolog='<?xml version="1.0" encoding="utf-8"?>\r\n').encode()
    if name == "declaration-bom-crlf":
        doc = xml_document(values, between="\r\n  ", prolog='<?xml version="1.0" encoding="utf-8"?>\r\n')
        return b"\xef\xbb\xbf" + doc.encode()
    if name == "surrounding-whitespace":
        return b"\n\n \t" + xml_document(values, between="\n\t").encode() + b"\n  \n"
    if name == "utf-16-powershell":
        doc = xml_document(values, between="\r\n", prolog='<?xml version="1.0" encoding="utf-16"?>')
        return doc.encode("utf-16")
    if name == "java-sign-byte":
        # BigInteger.toByteArray() prefixes a zero byte when the top bit is set.
        modulus = base64.b64decode(values["Modulus"])
        return xml_document({**values, "Modulus": base64.b64encode(b"\0" + modulus).decode()}).encode()
    if name == "tabs-and-spaces-in-values":
        spaced = {k: " \t".join(v[i : i + 10] for i in range(0, len(v), 10)) for k, v in values.items()}
        return xml_document(spaced).encode()
    if name == "comments":
        return xml_document(values, between="<!-- exported by hand -->").encode()
    if name == "other-element-order":
        return xml_document(dict(reversed(list(values.items())))).encode()
    raise AssertionError(name)


@pytest.mark.parametrize(
    "variant",
    [
        "dotnet-one-line",
        "declaration",
        "declaration-bom-crlf",
        "surrounding-whitespace",
        "utf-16-powershell",
        "java-sign-byte",
        "tabs-and-spaces-in-values",
        "comments",
        "other-element-order",
    ],
)
def test_xml_variations_load(variant: str, partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """<RSAKeyValue> documents as .NET, Windows editors and other tools write them all load."""
    data = _variant(variant, dotnet_values(partner_numbers))
    assert load_private_key(data).private_numbers() == partner_numbers


@settings(derandomize=True, max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.integers(min_value=1, max_value=120),
    gap=st.text(alphabet=" \t\r\n", min_size=1, max_size=4),
)
def test_xml_values_may_be_wrapped_anywhere(width: int, gap: str, partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """Whitespace inserted at any interval inside every value is ignored when the values are read."""
    values = {
        name: gap.join(value[i : i + width] for i in range(0, len(value), width))
        for name, value in dotnet_values(partner_numbers).items()
    }
    # The values are checked here; building the key (slow: RSA consistency checks) is pinned
    # once below and for every format in test_xml_variations_load.
    root = keys._parse_xml(xml_document(values).encode(), "test")
    public = partner_numbers.public_numbers
    assert keys._xml_values(root, "test") == {
        "Modulus": public.n, "Exponent": public.e, "P": partner_numbers.p, "Q": partner_numbers.q,
        "DP": partner_numbers.dmp1, "DQ": partner_numbers.dmq1, "InverseQ": partner_numbers.iqmp,
        "D": partner_numbers.d,
    }


def test_wrapped_xml_key_loads(partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """A key whose every value is wrapped every 7 characters with CRLF and tabs loads to the same numbers."""
    values = {
        name: "\r\n\t".join(value[i : i + 7] for i in range(0, len(value), 7))
        for name, value in dotnet_values(partner_numbers).items()
    }
    assert load_private_key(xml_document(values).encode()).private_numbers() == partner_numbers


def test_pem_with_bom_and_crlf_loads(partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """PEM saved with a UTF-8 BOM and CRLF line ends loads."""
    pem = b"\xef\xbb\xbf" + fixture_bytes("test-partner-pkcs8.pem").replace(b"\n", b"\r\n")
    assert load_private_key(pem).private_numbers() == partner_numbers


def test_utf16_pem_loads(partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """PEM that Windows PowerShell redirected into a UTF-16 file loads."""
    pem = fixture_bytes("test-partner-pkcs1.pem").decode().replace("\n", "\r\n").encode("utf-16")
    assert load_private_key(pem).private_numbers() == partner_numbers


def test_pem_bundle_with_certificate_first_loads(
    certificate: x509.Certificate, partner_numbers: rsa.RSAPrivateNumbers
) -> None:
    """A PEM file holding the certificate and then the private key yields the key."""
    bundle = certificate.public_bytes(PEM) + fixture_bytes("test-partner-pkcs8.pem")
    assert load_private_key(bundle).private_numbers() == partner_numbers


# --- files and permissions ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660])
def test_file_open_to_others_warns_with_path_and_mode(mode: int, tmp_path: Path, secret: set[str]) -> None:
    """A key file with any group/other bit (0o644, ...) loads with a warning naming path and mode."""
    path = private_copy(tmp_path, "test-partner.xml", mode=mode)
    with pytest.warns(KeyFilePermissionWarning) as record:
        load_private_key(path)
    message = str(record[0].message)
    assert str(path) in message
    assert f"{mode:#o}" in message
    assert not windows_of(message) & secret


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_owner_only_file_does_not_warn(mode: int, tmp_path: Path) -> None:
    """A key file with mode 0o600 (or 0o400, 0o700) owned by this user loads without any warning."""
    path = private_copy(tmp_path, "test-partner.xml", mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_private_key(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_file_of_another_user_warns(tmp_path: Path) -> None:
    """A 0o600 key file owned by another uid loads with a KeyFilePermissionWarning naming the uid."""
    path = private_copy(tmp_path, "test-partner.xml", mode=0o600)
    os.chown(path, 65534, -1)
    with pytest.warns(KeyFilePermissionWarning, match="uid 65534"):
        load_private_key(path)


def test_permission_warning_points_at_the_caller(tmp_path: Path) -> None:
    """The permission warning is attributed to the code that called load_private_key."""
    path = private_copy(tmp_path, "test-partner.xml", mode=0o640)
    with pytest.warns(KeyFilePermissionWarning) as record:
        load_private_key(str(path))
    assert record[0].filename == __file__


@pytest.mark.parametrize("as_path", [str, Path])
def test_missing_file_is_refused_naming_the_path(
    as_path: Callable[[Path], Any], tmp_path: Path, secret: set[str]
) -> None:
    """A path to no file is refused, and the message names the path."""
    missing = tmp_path / "no-such-key.xml"
    error = refused(as_path(missing), secret)
    assert str(missing) in error.message
    assert "does not exist" in error.message
    assert "path to the private key file" in (error.hint or "")


def test_directory_is_refused(tmp_path: Path, secret: set[str]) -> None:
    """A path to a directory is refused as a directory."""
    assert "directory" in refused(tmp_path, secret).message


def test_unreadable_file_is_refused(tmp_path: Path, secret: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A key file this process may not read is refused with 'permission denied' and the path."""
    path = private_copy(tmp_path, "test-partner.xml")

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    # Root reads any file, so the denial is simulated in the module's namespace only.
    monkeypatch.setattr(keys, "open", denied, raising=False)
    error = refused(path, secret)
    assert "permission denied" in error.message
    assert str(path) in error.message


def test_empty_file_is_refused(tmp_path: Path, secret: set[str]) -> None:
    """An empty key file is refused as empty, naming the path."""
    path = tmp_path / "empty.pem"
    path.write_bytes(b"\xef\xbb\xbf\r\n")
    path.chmod(0o600)
    error = refused(path, secret)
    assert "empty" in error.message
    assert str(path) in error.message


@pytest.mark.parametrize("source", [b"", b" \r\n\t", b"\xef\xbb\xbf", "", "  \n", "\ufeff "])
def test_empty_content_is_refused(source: bytes | str, secret: set[str]) -> None:
    """Empty or blank content (bytes or str) is refused as empty, not looked up as a file."""
    assert "empty" in refused(source, secret).message


def test_key_body_passed_as_str_is_not_echoed(secret: set[str]) -> None:
    """A PEM body without its BEGIN line, passed as str, is taken for a path but never quoted."""
    body = "".join(fixture_bytes("test-partner-pkcs8.pem").decode().splitlines()[1:-1])
    error = refused(body, secret)
    assert "not shown" in error.message
    assert "-----BEGIN" in (error.hint or "")


def test_oversized_content_is_refused(secret: set[str]) -> None:
    """Content over 1 MiB is refused as too large without being parsed."""
    assert "too large" in refused(b"<" + b" " * (1 << 20), secret).message


# --- refusals: formats ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"hello, this is not a key", "not in a recognised key format"),
        (b"\x01\x02\x03\x04" * 20, "not in a recognised key format"),
        (b"0\x82\x04\xa4garbage that is not DER", "DER data that does not decode"),
        (b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ user@host", "OpenSSH public key"),
        (b"PuTTY-User-Key-File-3: ssh-rsa\r\n", "PuTTY"),
        (b'{"kty": "RSA", "n": "..."}', "JSON"),
        (b"/etc/sut-soap/partner.pem", "never as a file name"),
    ],
    ids=["text", "binary", "broken-der", "openssh-public", "putty", "jwk", "bytes-path"],
)
def test_unrecognised_content_is_refused_with_a_reason(data: bytes, expected: str, secret: set[str]) -> None:
    """Content in no supported format is refused with what it looks like instead."""
    assert expected in refused(data, secret).message


def test_base64_without_pem_lines_is_refused_with_hint(secret: set[str]) -> None:
    """A PEM body without its BEGIN/END lines, as bytes, is refused with a hint about them."""
    body = b"".join(fixture_bytes("test-partner-pkcs8.pem").splitlines()[1:-1])
    error = refused(body, secret)
    assert "without the PEM" in error.message


def test_damaged_pem_is_refused(secret: set[str]) -> None:
    """A PEM private key whose Base64 body was damaged is refused."""
    pem = fixture_bytes("test-partner-pkcs8.pem")
    lines = pem.splitlines(keepends=True)
    damaged = b"".join(lines[:3] + lines[5:])
    assert "does not decode" in refused(damaged, secret).message


def test_pem_without_private_key_block_is_refused(secret: set[str]) -> None:
    """PEM holding no private key block (here a CRL-like label) is refused as such."""
    pem = b"-----BEGIN X509 CRL-----\nMIIBAAAA\n-----END X509 CRL-----\n"
    assert "no private key block" in refused(pem, secret).message


def test_openssh_private_key_is_refused_with_conversion_hint(partner_key: rsa.RSAPrivateKey, secret: set[str]) -> None:
    """An OpenSSH private key is refused with the ssh-keygen conversion in the hint."""
    openssh = partner_key.private_bytes(PEM, serialization.PrivateFormat.OpenSSH, PLAIN)
    error = refused(openssh, secret | windows_of(openssh))
    assert "OpenSSH" in error.message
    assert "ssh-keygen" in (error.hint or "")


# --- refusals: passwords --------------------------------------------------------------------


def _legacy_encrypted(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(PEM, PKCS1, serialization.BestAvailableEncryption(PASSWORD.encode()))


@pytest.mark.parametrize("form", ["pkcs8-pem", "legacy-pkcs1-pem", "pkcs8-der"])
def test_encrypted_key_without_password_is_refused(form: str, partner_key: rsa.RSAPrivateKey, secret: set[str]) -> None:
    """An encrypted key given no password is refused, saying it is encrypted."""
    data = {
        "pkcs8-pem": fixture_bytes("test-partner-encrypted.pem"),
        "legacy-pkcs1-pem": _legacy_encrypted(partner_key),
        "pkcs8-der": partner_key.private_bytes(DER, PKCS8, serialization.BestAvailableEncryption(b"x")),
    }[form]
    error = refused(data, secret | windows_of(data))
    assert "encrypted and no password was given" in error.message


@pytest.mark.parametrize("form", ["pkcs8-pem", "legacy-pkcs1-pem"])
def test_wrong_password_is_refused(form: str, partner_key: rsa.RSAPrivateKey, secret: set[str]) -> None:
    """An encrypted key given the wrong password is refused, saying the password is wrong."""
    data = fixture_bytes("test-partner-encrypted.pem") if form == "pkcs8-pem" else _legacy_encrypted(partner_key)
    error = refused(data, secret | windows_of(data), password="not-the-password")
    assert "password does not decrypt it" in error.message


@pytest.mark.parametrize("form", ["pkcs8-pem", "pkcs1-der", "xml", "key-object"])
def test_password_for_unencrypted_key_is_refused(form: str, partner_key: rsa.RSAPrivateKey, secret: set[str]) -> None:
    """A password given for a key that is not encrypted is an error, in every form."""
    source = {
        "pkcs8-pem": fixture_bytes("test-partner-pkcs8.pem"),
        "pkcs1-der": partner_key.private_bytes(DER, PKCS1, PLAIN),
        "xml": fixture_bytes("test-partner.xml"),
        "key-object": partner_key,
    }[form]
    error = refused(source, secret, password=PASSWORD)
    assert "password was given" in error.message
    assert "not encrypted" in error.message


def test_empty_password_counts_as_none(partner_numbers: rsa.RSAPrivateNumbers) -> None:
    """An empty password (an empty environment variable) is treated as no password."""
    key = load_private_key(fixture_bytes("test-partner-pkcs8.pem"), password="")
    assert key.private_numbers() == partner_numbers


def test_password_of_wrong_type_is_refused(secret: set[str]) -> None:
    """A password that is neither bytes nor str is refused."""
    assert "password must be bytes or str" in refused(fixture_bytes("test-partner.xml"), secret, password=1234).message  # type: ignore[arg-type]


# --- refusals: not an RSA private key -------------------------------------------------------


@pytest.mark.parametrize(
    "form", ["spki-pem", "pkcs1-public-pem", "spki-der", "public-key-object", "xml-modulus-exponent"]
)
def test_public_key_is_refused_as_public(
    form: str, partner_key: rsa.RSAPrivateKey, partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]
) -> None:
    """A public key in any form is refused, saying signing needs the private key."""
    public = partner_key.public_key()
    values = dotnet_values(partner_numbers)
    source = {
        "spki-pem": fixture_bytes("test-partner-public.pem"),
        "pkcs1-public-pem": public.public_bytes(PEM, serialization.PublicFormat.PKCS1),
        "spki-der": public.public_bytes(DER, SPKI),
        "public-key-object": public,
        "xml-modulus-exponent": xml_document({"Modulus": values["Modulus"], "Exponent": values["Exponent"]}),
    }[form]
    error = refused(source, secret)
    assert "public key" in error.message
    assert "signing needs the private key" in error.message


@pytest.mark.parametrize("form", ["pem", "der", "object"])
def test_certificate_is_refused_as_public(form: str, certificate: x509.Certificate, secret: set[str]) -> None:
    """A certificate is refused, saying it holds only the public key."""
    source = {"pem": certificate.public_bytes(PEM), "der": certificate.public_bytes(DER), "object": certificate}[form]
    error = refused(source, secret | windows_of(certificate.public_bytes(PEM)))
    assert "certificate" in error.message
    assert "signing needs the private key" in error.message


def test_ec_fixture_is_refused_naming_ec(secret: set[str]) -> None:
    """The EC P-256 fixture is refused as an EC key, not RSA, naming the curve."""
    error = refused(fixture_bytes("ec-p256.pem"), secret)
    assert "an EC private key (secp256r1), not RSA" in error.message


@pytest.fixture(scope="session")
def non_rsa_keys() -> dict[str, Any]:
    return {
        "ec-object": ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ed448": ed448.Ed448PrivateKey.generate(),
        "dsa": dsa.generate_private_key(key_size=1024),
    }


@pytest.mark.parametrize(
    ("name", "as_pem", "kind"),
    [
        ("ec-object", False, "an EC private key (secp384r1)"),
        ("ec-object", True, "an EC private key (secp384r1)"),
        ("ed25519", False, "an Ed25519 private key"),
        ("ed25519", True, "an Ed25519 private key"),
        ("ed448", True, "an Ed448 private key"),
        ("dsa", True, "a DSA private key"),
    ],
)
def test_non_rsa_key_is_refused_naming_its_kind(
    name: str, as_pem: bool, kind: str, non_rsa_keys: dict[str, Any], secret: set[str]
) -> None:
    """EC, Ed25519, Ed448 and DSA keys (object or PEM) are refused, naming the kind."""
    key = non_rsa_keys[name]
    source = key.private_bytes(PEM, PKCS8, PLAIN) if as_pem else key
    error = refused(source, secret | windows_of(key.private_bytes(PEM, PKCS8, PLAIN)))
    assert f"{kind}, not RSA" in error.message


def test_traditional_ec_pem_is_refused_naming_ec(non_rsa_keys: dict[str, Any], secret: set[str]) -> None:
    """An EC key in OpenSSL's 'BEGIN EC PRIVATE KEY' form is refused as EC."""
    pem = non_rsa_keys["ec-object"].private_bytes(PEM, PKCS1, PLAIN)
    assert b"BEGIN EC PRIVATE KEY" in pem
    assert "EC private key" in refused(pem, secret | windows_of(pem)).message


@pytest.mark.parametrize("form", ["pem-fixture", "key-object", "xml"])
def test_rsa_key_under_2048_bits_is_refused_with_its_size(
    form: str, small_key: rsa.RSAPrivateKey, secret: set[str]
) -> None:
    """A 1024-bit RSA key is refused in every form, and the message gives its size."""
    source = {
        "pem-fixture": fixture_bytes("rsa-1024.pem"),
        "key-object": small_key,
        "xml": xml_document(dotnet_values(small_key.private_numbers())).encode(),
    }[form]
    error = refused(source, secret)
    assert "1024-bit RSA key" in error.message
    assert "2048" in error.message


@pytest.mark.parametrize("source", [42, None, {"key": "value"}, ["-----BEGIN"]])
def test_unsupported_source_type_is_refused(source: Any, secret: set[str]) -> None:
    """A source that is no path, content or key object is refused, naming its type."""
    assert type(source).__name__ in refused(source, secret).message


# --- refusals: XML --------------------------------------------------------------------------


def test_malformed_xml_is_refused_with_position(partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]) -> None:
    """XML that is not well-formed is refused with a line and column, not lxml's text."""
    doc = xml_document(dotnet_values(partner_numbers)).replace("</DQ>", "</DX>")
    error = refused(doc.encode(), secret)
    assert "not well-formed XML (line 1, column" in error.message


def test_xml_with_another_root_is_refused(partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]) -> None:
    """An XML document whose root is not <RSAKeyValue> is refused."""
    doc = xml_document(dotnet_values(partner_numbers), root="RSAParameters")
    assert "root element is not <RSAKeyValue>" in refused(doc, secret).message


def test_xml_that_is_not_utf8_is_refused(partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]) -> None:
    """XML bytes that are not UTF-8 are refused with the encoding named."""
    doc = xml_document(dotnet_values(partner_numbers), prolog="<!-- \xe9 -->").encode("latin-1")
    assert "not valid UTF-8" in refused(doc, secret).message


@pytest.mark.parametrize("missing", ["P", "Q", "DP", "DQ", "InverseQ", "D", "Modulus"])
def test_xml_missing_element_is_named(missing: str, partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]) -> None:
    """An <RSAKeyValue> lacking one element is refused, naming the element."""
    values = {k: v for k, v in dotnet_values(partner_numbers).items() if k != missing}
    assert f"lacks <{missing}>" in refused(xml_document(values), secret).message


@pytest.mark.parametrize("bad", ["not base64!", "AQA", "AQ=B", "-_-_"])
def test_xml_non_base64_element_is_named(bad: str, partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]) -> None:
    """A value that is not standard Base64 is refused, naming the element."""
    values = {**dotnet_values(partner_numbers), "DQ": bad}
    assert "<DQ> is not standard Base64" in refused(xml_document(values), secret).message


def test_xml_empty_element_is_named(partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]) -> None:
    """An element with no value is refused, naming the element."""
    values = {**dotnet_values(partner_numbers), "InverseQ": " \r\n "}
    assert "<InverseQ> is empty" in refused(xml_document(values), secret).message


def test_xml_duplicate_element_is_refused(partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]) -> None:
    """An element that appears twice is refused, naming it."""
    doc = xml_document(dotnet_values(partner_numbers)).replace("<D>", "<P>AQAB</P><D>")
    assert "<P> appears more than once" in refused(doc, secret).message


def _shifted(value: str, delta: int) -> str:
    number = int.from_bytes(base64.b64decode(value), "big") + delta
    return base64.b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big")).decode()


@pytest.mark.parametrize(
    ("element", "named"),
    [
        ("DP", "<DP>"),
        ("DQ", "<DQ>"),
        ("InverseQ", "<InverseQ>"),
        ("D", "<D>"),
        ("Modulus", "<Modulus>"),
        ("P", "<Modulus> is not <P> times <Q>"),
        ("Exponent", "<D> is not the private exponent"),
    ],
)
def test_xml_inconsistent_element_is_named(
    element: str, named: str, partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]
) -> None:
    """A value that disagrees with the others is refused, naming the disagreement."""
    values = dotnet_values(partner_numbers)
    values[element] = _shifted(values[element], 2)
    error = refused(xml_document(values), secret | windows_of(values[element]))
    assert "inconsistent key" in error.message
    assert named in error.message


def test_xml_mixed_from_two_keys_is_refused(
    partner_numbers: rsa.RSAPrivateNumbers, other_key: rsa.RSAPrivateKey, secret: set[str]
) -> None:
    """P and Q of another key with this key's Modulus are refused as inconsistent."""
    values = dotnet_values(partner_numbers)
    other = dotnet_values(other_key.private_numbers())
    mixed = {**values, "P": other["P"], "Q": other["Q"]}
    error = refused(xml_document(mixed), secret | windows_of(*other.values()))
    assert "<Modulus> is not <P> times <Q>" in error.message


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE RSAKeyValue [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<RSAKeyValue><Modulus>&lol9;</Modulus><Exponent>AQAB</Exponent></RSAKeyValue>
"""


@pytest.fixture
def marker_file(tmp_path: Path) -> Path:
    path = tmp_path / "outside.txt"
    path.write_text("MARKER-FROM-OUTSIDE-THE-KEY-FILE")
    return path


def _entity_documents(marker_file: Path) -> dict[str, str]:
    return {
        "billion-laughs": BILLION_LAUGHS,
        "xxe-etc-passwd": (
            '<!DOCTYPE RSAKeyValue [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            "<RSAKeyValue><Modulus>&xxe;</Modulus><Exponent>AQAB</Exponent></RSAKeyValue>"
        ),
        "xxe-marker": (
            f'<!DOCTYPE RSAKeyValue [<!ENTITY xxe SYSTEM "{marker_file.as_uri()}">]>'
            "<RSAKeyValue><Modulus>&xxe;</Modulus><Exponent>AQAB</Exponent></RSAKeyValue>"
        ),
        "external-dtd": f'<!DOCTYPE RSAKeyValue SYSTEM "{marker_file.as_uri()}"><RSAKeyValue/>',
        "bare-doctype": "<!DOCTYPE RSAKeyValue><RSAKeyValue/>",
        "parameter-entity": (f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{marker_file.as_uri()}"> %p;]><RSAKeyValue/>'),
    }


ENTITY_CASES = ["billion-laughs", "xxe-etc-passwd", "xxe-marker", "external-dtd", "bare-doctype", "parameter-entity"]


def _assert_dtd_refused(error: ConfigurationError, *, parse_error_ok: bool = False) -> None:
    accepted = ["DOCTYPE or entity declaration"] + (["not well-formed XML"] if parse_error_ok else [])
    assert any(text in error.message for text in accepted)
    for link in error_chain(error):
        text = f"{link} {link!r}"
        assert "MARKER-FROM-OUTSIDE" not in text
        assert "root:" not in text
        assert "lollol" not in text


@pytest.mark.parametrize("case", ENTITY_CASES)
def test_dtd_and_entities_are_refused_not_expanded(case: str, marker_file: Path, secret: set[str]) -> None:
    """XML with a DOCTYPE or entity declaration is refused before any entity is expanded."""
    _assert_dtd_refused(refused(_entity_documents(marker_file)[case].encode(), secret))


@pytest.mark.parametrize("case", ENTITY_CASES)
def test_parser_refuses_dtd_even_without_the_up_front_check(
    case: str, marker_file: Path, secret: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the text scan disabled, the hardened parser still refuses and reads no external file."""
    # A parser that read the external file would fail on its content ("not well-formed")
    # or expand it; only a parser that never touched it reaches the DOCTYPE refusal.
    # libxml2's own amplification limit may stop the billion laughs first: refused either way.
    monkeypatch.setattr(keys, "_XML_DECLARATION_MARKUP", re.compile(r"(?!)"))
    marker_file.write_text("<!ENTITY this is not a valid DTD")
    error = refused(_entity_documents(marker_file)[case].encode(), secret)
    _assert_dtd_refused(error, parse_error_ok=case == "billion-laughs")


# --- writers --------------------------------------------------------------------------------


def test_rsa_xml_round_trips(partner_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    """private_key_to_rsa_xml output loads back to the same key."""
    for key in (partner_key, other_key):
        assert load_private_key(private_key_to_rsa_xml(key)).private_numbers() == key.private_numbers()


def test_rsa_xml_is_what_dotnet_writes(partner_key: rsa.RSAPrivateKey) -> None:
    """The XML equals the fixture without BOM and whitespace: .NET's one-line layout and padding."""
    fixture = "".join(fixture_bytes("test-partner.xml").decode("utf-8-sig").split())
    assert private_key_to_rsa_xml(partner_key) == fixture


def test_rsa_xml_pads_short_values_like_dotnet(partner_key: rsa.RSAPrivateKey) -> None:
    """Values shorter than their .NET width keep leading zero bytes: halves 128 bytes, D 256."""
    document = private_key_to_rsa_xml(partner_key)
    lengths = {
        name: len(base64.b64decode(re.search(f"<{name}>([^<]*)</{name}>", document).group(1)))  # type: ignore[union-attr]
        for name in ELEMENTS
    }
    assert lengths == {
        "Modulus": 256,
        "Exponent": 3,
        "P": 128,
        "Q": 128,
        "DP": 128,
        "DQ": 128,
        "InverseQ": 128,
        "D": 256,
    }
    # The fixture key was chosen with a short InverseQ, so the padding is really exercised.
    assert partner_key.private_numbers().iqmp.bit_length() <= 1016
    assert re.search("<InverseQ>AI", document)


def test_rsa_xml_element_order_is_dotnets(partner_key: rsa.RSAPrivateKey) -> None:
    """Elements come in .NET's order: Modulus, Exponent, P, Q, DP, DQ, InverseQ, D."""
    names = re.findall(r"<(\w+)>", private_key_to_rsa_xml(partner_key))
    assert names == ["RSAKeyValue", *ELEMENTS]


def test_pem_writer_gives_unencrypted_pkcs8(partner_key: rsa.RSAPrivateKey) -> None:
    """private_key_to_pem writes unencrypted PKCS#8 PEM of the same key."""
    pem = private_key_to_pem(partner_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = serialization.load_pem_private_key(pem, None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == partner_key.private_numbers()


def test_fingerprint_format() -> None:
    """The fingerprint is 'SHA256:' and 32 lowercase hex pairs joined by colons."""
    assert re.fullmatch(
        r"SHA256:(?:[0-9a-f]{2}:){31}[0-9a-f]{2}",
        public_key_fingerprint(load_private_key(fixture_bytes("test-partner.der"))),
    )


def test_fingerprint_is_sha256_of_spki_for_private_and_public(partner_key: rsa.RSAPrivateKey) -> None:
    """Private and public key give the same fingerprint: SHA-256 of the DER SubjectPublicKeyInfo."""
    expected = hashlib.sha256(partner_key.public_key().public_bytes(DER, SPKI)).hexdigest()
    assert public_key_fingerprint(partner_key).replace(":", "") == "SHA256" + expected
    assert public_key_fingerprint(partner_key.public_key()) == public_key_fingerprint(partner_key)


def test_fingerprint_matches_the_fixture_readme(partner_key: rsa.RSAPrivateKey) -> None:
    """The fingerprint documented in fixtures/keys/README.md is the test-partner key's."""
    assert public_key_fingerprint(partner_key) == FINGERPRINT
    assert FINGERPRINT in (FIXTURES / "README.md").read_text()


@pytest.mark.parametrize("writer", [private_key_to_rsa_xml, private_key_to_pem, public_key_fingerprint])
def test_writers_refuse_non_rsa_keys(writer: Callable[[Any], Any], non_rsa_keys: dict[str, Any]) -> None:
    """The writers raise ConfigurationError for a key that is not RSA."""
    with pytest.raises(ConfigurationError, match="EC"):
        writer(non_rsa_keys["ec-object"])


# --- the module and the test helpers --------------------------------------------------------


def test_all_lists_existing_public_names() -> None:
    """keys.__all__ names exactly the module's public API and each name exists."""
    assert sorted(keys.__all__) == [
        "KeyFilePermissionWarning",
        "PrivateKeyInput",
        "load_private_key",
        "private_key_to_pem",
        "private_key_to_rsa_xml",
        "public_key_fingerprint",
    ]
    assert all(hasattr(keys, name) for name in keys.__all__)
    assert issubclass(KeyFilePermissionWarning, UserWarning)


def test_leak_check_catches_key_material(partner_numbers: rsa.RSAPrivateNumbers, secret: set[str]) -> None:
    """The leak check used above flags an error that quotes key material, even in its chain."""
    modulus = dotnet_values(partner_numbers)["Modulus"]
    assert leaked(ConfigurationError(f"bad key {modulus[40:60]}"), secret)
    try:
        try:
            raise ValueError(f"{partner_numbers.d:x}"[100:140])
        except ValueError:
            raise ConfigurationError("clean message") from None
    except ConfigurationError as error:
        assert leaked(error, secret)


def fixture_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((FIXTURES / "test-partner-pkcs8.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def refused_without_cause(source: object, *, password: str | None = None) -> ConfigurationError:
    """Load ``source``; assert a ConfigurationError with no third-party exception attached."""
    with pytest.raises(ConfigurationError) as caught:
        load_private_key(source, password=password)  # type: ignore[arg-type]
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    return caught.value


def test_zero_byte_key_file_is_refused_as_empty(tmp_path: Path) -> None:
    """A zero-byte key file is refused as empty, naming the path, with a hint to save it completely."""
    path = tmp_path / "partner.xml"
    path.write_bytes(b"")
    path.chmod(0o600)
    error = refused_without_cause(str(path))
    assert error.message == f"key file {str(path)!r} is empty"
    assert error.hint == "that the key was saved completely"


def test_key_file_over_one_mebibyte_is_refused_by_its_size(tmp_path: Path) -> None:
    """A regular file over 1 MiB is refused from its size (in bytes), before it is read."""
    path = tmp_path / "huge.pem"
    with path.open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)  # sparse: nothing to read, only a size
    path.chmod(0o600)
    error = refused_without_cause(path)
    assert "is 2097152 bytes, too large to be a key" in error.message


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_device_is_refused_after_one_mebibyte() -> None:
    """A path to a device with no size (/dev/zero) is read only up to the cap and refused as too large."""
    error = refused_without_cause("/dev/zero")
    assert error.message == "key file '/dev/zero' is too large to be a key"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_is_not_permission_checked() -> None:
    """A non-regular file (/dev/null, mode 0666) gets no permission warning; it is refused as empty."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyFilePermissionWarning)
        error = refused_without_cause("/dev/null")
    assert error.message == "key file '/dev/null' is empty"


def test_unopenable_path_is_refused_with_the_os_reason(tmp_path: Path) -> None:
    """An OS error other than missing/denied/directory (a name too long) is refused with its strerror."""
    path = str(tmp_path / ("k" * 300 + ".pem"))
    error = refused_without_cause(path)
    assert "cannot be read (File name too long)" in error.message
    assert error.hint == "the path to the private key file and that this process may read it"


def test_path_with_nul_byte_is_refused_as_unusable_name() -> None:
    """A str path holding a NUL byte is refused as an unusable file name, not a crash."""
    error = refused_without_cause("partner\0.pem")
    assert error.message == "key file 'partner\\x00.pem' is not a usable file name"


def test_utf16_bom_with_invalid_text_is_refused() -> None:
    """Content that starts with a UTF-16 BOM but is not UTF-16 (a lone surrogate) is refused as such."""
    error = refused_without_cause(b"\xff\xfe" + "<RSAKeyValue>".encode("utf-16-le") + b"\x00\xd8")
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
    error = refused_without_cause(data, password=password)
    assert error.message == "the key data uses an encryption or key algorithm this cryptography build does not support"
    assert "openssl pkcs8 -topk8" in (error.hint or "")


def test_damaged_pem_with_password_is_not_called_a_wrong_password() -> None:
    """A damaged unencrypted PEM given a password is reported as damaged, not as a wrong password."""
    lines = (FIXTURES / "test-partner-pkcs8.pem").read_bytes().splitlines(keepends=True)
    damaged = b"".join(lines[:3] + lines[5:])
    error = refused_without_cause(damaged, password="sut-soap-test")
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
    document = "<RSAKeyValue>" + "".join(f"<{k}>{b64_int(v)}</{k}>" for k, v in values.items()) + "</RSAKeyValue>"
    error = refused_without_cause(document)
    assert error.message == "the key text: inconsistent key: the numbers do not form a valid RSA key"
