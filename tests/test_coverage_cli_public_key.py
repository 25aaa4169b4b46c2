"""The command line's partner public key reader (doctor --public-key): its refusals (issue 7 coverage)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sut_soap.cli.doctor import _load_partner_public_key
from sut_soap.errors import ConfigurationError


def b64(value: int) -> str:
    return base64.b64encode(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")).decode()


def refused(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "partner-public.xml"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError) as caught:
        _load_partner_public_key(str(path))
    assert caught.value.__cause__ is None
    return caught.value.message.replace(repr(str(path)), "FILE")


def test_missing_file_is_refused_with_the_os_reason(tmp_path: Path) -> None:
    """A public key path that does not exist is refused with the OS reason."""
    path = tmp_path / "nope.xml"
    with pytest.raises(ConfigurationError) as caught:
        _load_partner_public_key(str(path))
    assert caught.value.message == f"cannot read the public key file {str(path)!r}: No such file or directory"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><RSAKeyValue>&x;</RSAKeyValue>',
         "the public key file FILE carries a DTD or declaration; refused"),
        (b"<RSAKeyValue><Modulus>", "the public key file FILE is not well-formed XML"),
        (f"<RSAKeyValue><Modulus>{b64(3233)}</Modulus><Exponent>AQAB</Exponent><D>AQAB</D></RSAKeyValue>".encode(),
         "the public key file FILE holds a private key"),
        (b"<RSAKeyValue><Modulus>not base64!</Modulus><Exponent>AQAB</Exponent></RSAKeyValue>",
         "the public key file FILE: <Modulus> is not Base64"),
        (b"<RSAKeyValue><Exponent>AQAB</Exponent></RSAKeyValue>",
         "the public key file FILE is XML without <Modulus> and <Exponent>"),
        (f"<RSAKeyValue><Modulus>{b64(3233)}</Modulus><Exponent>{b64(2)}</Exponent></RSAKeyValue>".encode(),
         "the public key file FILE does not hold a valid RSA public key"),
    ],
    ids=["dtd", "not-well-formed", "private-member", "not-base64", "no-modulus", "even-exponent"],
)
def test_unusable_dotnet_public_key_is_refused_with_the_reason(tmp_path: Path, content: bytes, expected: str) -> None:
    """A .NET XML public key with a DTD, broken XML, private members, bad Base64 or impossible numbers is refused."""
    assert refused(tmp_path, content) == expected


def test_processing_instruction_in_dotnet_public_key_is_skipped(tmp_path: Path) -> None:
    """A processing instruction among the <RSAKeyValue> children is ignored and the key loads."""
    from jwt_factory import rsa_key

    numbers = rsa_key(0).public_key().public_numbers()
    path = tmp_path / "partner-public.xml"
    path.write_text(
        f"<RSAKeyValue><?exported by=portal?><Modulus>{b64(numbers.n)}</Modulus>"
        f"<Exponent>{b64(numbers.e)}</Exponent></RSAKeyValue>"
    )
    assert _load_partner_public_key(str(path)).public_numbers() == numbers
