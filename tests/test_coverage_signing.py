"""sut_soap.signing: the text checks the main signing tests leave out (issue 7 coverage)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sut_soap.errors import ConfigurationError
from sut_soap.signing import check_text_value, timestamp


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
