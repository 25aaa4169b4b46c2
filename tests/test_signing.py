"""Signing the system user token: format, UTC, known answers."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from support import KAT_ASCII, KAT_UTF8

from sut_soap.errors import ConfigurationError
from sut_soap.keys import load_private_key
from sut_soap.signing import check_text_value, sign_system_user_token, timestamp

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
XML_KEY = KEYS / "test-partner.xml"
AT = datetime(2026, 11, 28, 13, 30, 42, tzinfo=timezone.utc)


def test_known_answer_from_xml_key() -> None:
    """The .NET XML key signs to the OpenSSL-made vector, byte for byte."""
    assert sign_system_user_token("Acme Sync-8k8Q7DmBgo", XML_KEY, at=AT) == KAT_ASCII


@pytest.mark.parametrize(
    "name", ["test-partner.xml", "test-partner-pkcs1.pem", "test-partner-pkcs8.pem", "test-partner.der"]
)
def test_every_key_form_signs_identically(name: str) -> None:
    """XML, PKCS#1, PKCS#8 and DER forms of one key give the same bytes."""
    assert sign_system_user_token("Acme Sync-8k8Q7DmBgo", KEYS / name, at=AT) == KAT_ASCII


def test_encrypted_key_with_password() -> None:
    """An encrypted PEM signs identically given its password."""
    signed = sign_system_user_token(
        "Acme Sync-8k8Q7DmBgo", KEYS / "test-partner-encrypted.pem", at=AT, password="sut-soap-test"
    )
    assert signed == KAT_ASCII


def test_non_ascii_token_signed_as_utf8() -> None:
    """A non-ASCII token is signed over its UTF-8 bytes."""
    at = datetime(2026, 1, 1, 13, 5, 59, 999000, tzinfo=timezone.utc)
    assert sign_system_user_token("Sørlandet Å Sync-Ωmega", XML_KEY, at=at) == KAT_UTF8


def test_signature_is_pkcs1v15_sha256_not_pss() -> None:
    """The signature verifies under PKCS#1 v1.5/SHA-256 and not under PSS."""
    token, stamp, signature = KAT_ASCII.rsplit(".", 2)
    public = load_private_key(XML_KEY).public_key()
    raw = base64.b64decode(signature, validate=True)
    public.verify(raw, f"{token}.{stamp}".encode(), padding.PKCS1v15(), hashes.SHA256())
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    with pytest.raises(InvalidSignature):
        public.verify(raw, f"{token}.{stamp}".encode(), pss, hashes.SHA256())


def test_timestamp_is_utc_from_other_zone() -> None:
    """An aware time in another zone is stamped in UTC, 24-hour, zero-padded."""
    auckland = timezone(timedelta(hours=13))
    assert timestamp(datetime(2026, 1, 2, 2, 5, 59, tzinfo=auckland)) == "202601011305"


def test_naive_datetime_refused() -> None:
    """A naive datetime is refused rather than guessed to be UTC or local."""
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        timestamp(datetime(2026, 1, 1, 13, 5))


def test_now_is_utc_whatever_the_process_zone() -> None:
    """With TZ=Pacific/Auckland the stamp of 'now' is still UTC."""
    code = (
        "from datetime import datetime, timezone; from sut_soap.signing import timestamp; "
        "a = datetime.now(timezone.utc).strftime('%Y%m%d%H%M'); t = timestamp(); "
        "b = datetime.now(timezone.utc).strftime('%Y%m%d%H%M'); print(a <= t <= b)"
    )
    env = {**os.environ, "TZ": "Pacific/Auckland"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def test_token_with_dots_and_spaces_kept_verbatim() -> None:
    """The token is signed exactly as received, dots and inner spaces included."""
    signed = sign_system_user_token("a.b  c", XML_KEY, at=AT)
    assert signed.startswith("a.b  c.202611281330.")


@pytest.mark.parametrize("token", ["", "   ", "a\x00b", "a\x1fb", "a\x7fb", 42])
def test_bad_tokens_refused(token: object) -> None:
    """Empty tokens, control characters and non-strings are ConfigurationErrors."""
    with pytest.raises(ConfigurationError):
        sign_system_user_token(token, XML_KEY, at=AT)  # type: ignore[arg-type]


@pytest.mark.parametrize("char", ["\ufffe", "\uffff"], ids=["U+FFFE", "U+FFFF"])
def test_unicode_non_characters_are_refused_by_code_point(char: str) -> None:
    """U+FFFE and U+FFFF (not allowed in XML) are refused, naming the code point and never the value."""
    with pytest.raises(ConfigurationError) as caught:
        check_text_value(f"SecretCanary{char}Sync", "system user token")
    assert caught.value.message == f"system user token contains a non-character (U+{ord(char):04X})"
    assert "SecretCanary" not in str(caught.value)


def test_characters_next_to_the_non_characters_are_accepted() -> None:
    """U+FFFD and U+10000, on either side of the refused pair, pass the check unchanged."""
    value = "Acme \ufffd Sync \U00010000"
    assert check_text_value(value, "system user token") is value


def test_timestamp_defaults_to_the_current_utc_minute() -> None:
    """timestamp() without at= stamps the current minute in UTC, whatever the local time zone."""
    before = datetime.now(timezone.utc).strftime("%Y%m%d%H%M")
    stamp = timestamp()
    after = datetime.now(timezone.utc).strftime("%Y%m%d%H%M")
    assert before <= stamp <= after
    assert len(stamp) == 12


@pytest.mark.parametrize("value", [" Acme Sync", "Acme Sync ", "Acme Sync\n", "\tAcme Sync", "Acme Sync\u00a0"])
def test_surrounding_whitespace_is_refused_by_name(value: str) -> None:
    """A value with leading or trailing whitespace is refused (never stripped), naming the value, not its content."""
    with pytest.raises(ConfigurationError) as caught:
        check_text_value(value, "system user token")
    assert caught.value.message == "system user token has leading or trailing whitespace"
    assert "Acme" not in str(caught.value)


@pytest.mark.parametrize("char", ["\n", "\r", "\t"])
def test_line_break_or_tab_inside_a_value_is_refused(char: str) -> None:
    """A line break or tab inside a value is refused, naming the code point."""
    with pytest.raises(ConfigurationError) as caught:
        check_text_value(f"Acme{char}Sync", "client secret")
    assert caught.value.message.startswith("client secret contains a ")
    assert f"(U+{ord(char):04X})" in caught.value.message
