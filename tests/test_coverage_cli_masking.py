"""Redaction of envelopes the command line prints: what the regex pass cannot see (issue 7 coverage)."""

from __future__ import annotations

from sut_soap.cli._common import MASK, _Masker


def test_secret_in_cdata_or_child_elements_is_masked_by_the_parsed_pass() -> None:
    """A secret element whose value hides in CDATA or in child elements is blanked, other elements kept."""
    data = (
        b'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        b"<s:Header><ApplicationToken><![CDATA[SecretCanary]]></ApplicationToken></s:Header>"
        b"<s:Body><Token><part>JwtCanary</part></Token><ContextIdentifier>Cust12345</ContextIdentifier></s:Body>"
        b"</s:Envelope>"
    )
    shown = _Masker().envelope(data)
    assert "SecretCanary" not in shown
    assert "JwtCanary" not in shown
    assert f"<ApplicationToken>{MASK}</ApplicationToken>" in shown
    assert f"<Token>{MASK}</Token>" in shown
    assert "<ContextIdentifier>Cust12345</ContextIdentifier>" in shown
    assert shown.startswith("<?xml version='1.0' encoding='utf-8'?>\n")


def test_envelope_without_hidden_secrets_is_shown_unchanged() -> None:
    """An envelope whose secret elements are empty is printed exactly as it came (no re-serialisation)."""
    text = '<E xmlns="urn:x">\n  <Token/>\n  <Other a="1">keep</Other>\n</E>'
    assert _Masker().envelope(text.encode()) == text


def test_masker_ignores_blank_values() -> None:
    """Blank or missing values are never registered as secrets (masking them would blank every space)."""
    masker = _Masker()
    masker.add(None, "", "   ", "SecretValue")
    assert masker.text("x   y SecretValue") == f"x   y {MASK}"
