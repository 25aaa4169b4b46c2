"""The secret scan: no secret in fixtures/, and what scan_for_secrets finds (real-looking JWTs, tickets,
signed tokens and private keys in PEM, XML or DER) and what it leaves alone."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jwt_factory import mint, rsa_key

from sut_soap.testing import scan_for_secrets

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
KEYS = FIXTURES / "keys"


def documented_test_keys() -> list[Path]:
    """The key files listed in the table of fixtures/keys/README.md."""
    readme = (KEYS / "README.md").read_text(encoding="utf-8")
    names = re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE)
    return [KEYS / name for name in names]


# --- fixtures/ --------------------------------------------------------------------------------


def test_fixtures_hold_no_secrets() -> None:
    """Every file under fixtures/ is free of secret-looking values, except the documented test keys."""
    findings = scan_for_secrets(FIXTURES, allowed_keys=documented_test_keys())
    assert findings == [], "\n".join(str(f) for f in findings)


def test_documented_keys_are_the_key_files() -> None:
    """The allow-list is exactly the key files in fixtures/keys, so a new key must be documented."""
    files = {p for p in KEYS.iterdir() if p.is_file() and p.name != "README.md"}
    assert set(documented_test_keys()) == files


def test_generator_values_never_reach_a_fixture() -> None:
    """The emulator-run secrets in make_fixtures.py appear in no recorded file."""
    script = FIXTURES / "recordings" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_fixtures", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    values = [module.CLIENT_SECRET, module.SYSTEM_USER_TOKEN, module.OTHER_TOKEN]
    for path in (FIXTURES / "recordings").rglob("*"):
        if path.is_file() and path != script:
            data = path.read_bytes()
            assert not [v for v in values if v.encode() in data], path


# --- what the scan finds ----------------------------------------------------------------------


def _plant(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / "fixtures" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _kinds(tmp_path: Path, **kwargs: object) -> list[str]:
    return [f.kind for f in scan_for_secrets(tmp_path / "fixtures", **kwargs)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("recordings/a/01-response.xml", b"<Token>" + mint(rsa_key()).encode() + b"</Token>", "JWT"),
        ("notes.txt", b"ticket=7T:dgBlAHMAdAAxADIAMwA0ADUANgA3ADgA==\n", "7T: ticket"),
        ("r/01-request.xml", b"<S>Acme Sync-x.202611281330." + b"QUJD" * 86 + b"==</S>", "signed system token"),
        ("copied.pem", (KEYS / "test-partner-pkcs8.pem").read_bytes(), "PEM private key"),
        ("deep/rsa.pem", (KEYS / "test-partner-pkcs1.pem").read_bytes(), "PEM private key"),
        ("partner.xml", (KEYS / "test-partner.xml").read_bytes(), "RSAKeyValue private key"),
        ("partner.der", (KEYS / "test-partner.der").read_bytes(), "DER private key"),
    ],
)
def test_scanner_finds_planted_secrets(tmp_path: Path, name: str, content: bytes, kind: str) -> None:
    """Each kind of secret planted in a fixture tree is reported with its file and line."""
    path = _plant(tmp_path, name, content)
    findings = scan_for_secrets(tmp_path / "fixtures")
    assert [f.kind for f in findings] == [kind]
    assert findings[0].path == path
    assert str(path) in str(findings[0])
    assert len(findings[0].excerpt) <= 11


def test_scanner_reports_the_line(tmp_path: Path) -> None:
    """The finding names the line the value is on."""
    _plant(tmp_path, "a.json", b'{\n  "x": 1,\n  "t": "7T:abcdefghijklmnop"\n}\n')
    (finding,) = scan_for_secrets(tmp_path / "fixtures")
    assert finding.line == 3


def test_scanner_allows_documented_keys_only(tmp_path: Path) -> None:
    """A key file on the allow-list passes; the same key elsewhere, or a JWT in it, does not."""
    allowed = _plant(tmp_path, "keys/test.pem", (KEYS / "test-partner-pkcs8.pem").read_bytes())
    assert _kinds(tmp_path, allowed_keys=[allowed]) == []
    shutil.copy(allowed, tmp_path / "fixtures" / "elsewhere.pem")
    assert _kinds(tmp_path, allowed_keys=[allowed]) == ["PEM private key"]
    allowed.write_bytes(allowed.read_bytes() + b"\n" + mint(rsa_key()).encode())
    assert sorted(_kinds(tmp_path, allowed_keys=[allowed])) == ["JWT", "PEM private key"]


def test_scanner_ignores_placeholders_and_public_material(tmp_path: Path) -> None:
    """Placeholders, public keys, URLs and short 7T: mentions are not secrets."""
    public = rsa_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _plant(tmp_path, "public.pem", public)
    _plant(
        tmp_path,
        "01-response.xml",
        b"<Token>{{SUT_SOAP:JWT}}</Token><E>{{SUT_SOAP:TICKET}} 7T:... www.superoffice.com a.b.c</E>"
        b"<Modulus>" + b"QUJD" * 30 + b"</Modulus>",
    )
    assert _kinds(tmp_path) == []


def test_scanner_finds_a_jwt_after_a_dotted_word(tmp_path: Path) -> None:
    """A JWT glued to a preceding word and dot is still found."""
    _plant(tmp_path, "log.txt", b"token.was." + mint(rsa_key()).encode())
    assert _kinds(tmp_path) == ["JWT"]


def test_scan_finds_a_jwt_right_after_a_jwt_like_word(tmp_path: Path) -> None:
    """A JWT glued after a long e-word (a near miss read as its first segment) is still found, at the JWT."""
    jwt = mint(rsa_key())
    (tmp_path / "log.txt").write_text(f"line one\neventually_everything.{jwt}\n")
    (finding,) = scan_for_secrets(tmp_path)
    assert (finding.kind, finding.line, finding.excerpt) == ("JWT", 2, jwt[:8] + "...")


@pytest.mark.parametrize(
    "segment",
    [
        "eyJhbGciOiJSUzI1NiJ9A",  # 21 characters: not base64 at all
        "eyJhbGciOiBicm9rZW4",  # {"alg": broken
        "e________________w",  # "{" then bytes that are not UTF-8
        "eW91cl9iYXNlNjRfaGVyZQ",  # your_base64_here: not an object
    ],
    ids=["bad-base64", "bad-json", "bad-utf8", "not-an-object"],
)
def test_scan_ignores_jwt_shapes_without_a_json_header(tmp_path: Path, segment: str) -> None:
    """A dotted e-word whose first segment does not decode to a JSON header with alg is not reported."""
    (tmp_path / "notes.md").write_text(f"see {segment}.payloadpart.signaturepart and {segment}.x.y\n")
    assert scan_for_secrets(tmp_path) == []


@pytest.mark.parametrize(
    ("encryption", "kind"),
    [
        (serialization.NoEncryption(), "DER private key"),
        (serialization.BestAvailableEncryption(b"pw"), "DER private key (encrypted)"),
    ],
    ids=["plain", "encrypted"],
)
def test_scan_finds_der_private_keys(tmp_path: Path, encryption: Any, kind: str) -> None:
    """The secret scan flags a binary DER private key, encrypted or not, by kind and never by value."""
    der = rsa_key(0).private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption)
    (tmp_path / "key.bin").write_bytes(der)
    (tmp_path / "noise.bin").write_bytes(b"\x00\x01\x02 not a key")
    findings = scan_for_secrets(tmp_path)
    assert [(f.path.name, f.kind, f.excerpt) for f in findings] == [("key.bin", kind, "binary")]
