"""make audit's accepted advisories: each has a reason and an end date, and no end date has passed.

pip-audit's --ignore-vuln has neither, so the Makefile writes them in a comment right above each
``AUDIT_IGNORE += --ignore-vuln ID`` line, and this file holds the list to that form. Offline.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IGNORE = re.compile(r"AUDIT_IGNORE\s*\+=\s*--ignore-vuln\s+(?P<id>\S+)\s*")
REASON = re.compile(r"#\s*(?P<id>\S+)\s+until\s+(?P<until>\d{4}-\d{2}-\d{2}):\s*(?P<reason>\S.*)")


def accepted(makefile: str) -> list[tuple[str, date, str]]:
    """(ID, end date, reason) of every --ignore-vuln; ValueError names the first one without both."""
    found = []
    lines = makefile.splitlines()
    for number, line in enumerate(lines, start=1):
        if "--ignore-vuln" not in line or line.lstrip().startswith("#"):
            continue
        ignore = IGNORE.fullmatch(line.strip())
        if ignore is None:
            raise ValueError(f"line {number}: expected 'AUDIT_IGNORE += --ignore-vuln ID'")
        comment = REASON.fullmatch(lines[number - 2].strip()) if number > 1 else None
        if comment is None or comment["id"] != ignore["id"]:
            raise ValueError(f"line {number}: {ignore['id']} needs '# {ignore['id']} until YYYY-MM-DD: reason' above it")
        try:
            until = date.fromisoformat(comment["until"])
        except ValueError:
            raise ValueError(f"line {number - 1}: {comment['until']!r} is not a date") from None
        found.append((ignore["id"], until, comment["reason"]))
    return found


def test_every_accepted_advisory_has_a_reason_and_an_end_date_not_yet_passed() -> None:
    """The Makefile's --ignore-vuln list is in the documented form, and each acceptance is still current."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "AUDIT_IGNORE :=" in makefile and "$(AUDIT_IGNORE)" in makefile
    expired = [(vuln, until) for vuln, until, _ in accepted(makefile) if until < date.today()]
    assert expired == [], f"accepted advisories past their end date, look at them again: {expired}"


def test_reader_takes_the_documented_form() -> None:
    """A comment '# ID until date: reason' right above 'AUDIT_IGNORE += --ignore-vuln ID' is read whole."""
    text = "# GHSA-aaaa-bbbb-cccc until 2099-01-31: no fixed release yet\nAUDIT_IGNORE += --ignore-vuln GHSA-aaaa-bbbb-cccc\n"
    assert accepted(text) == [("GHSA-aaaa-bbbb-cccc", date(2099, 1, 31), "no fixed release yet")]


@pytest.mark.parametrize(
    "text",
    [
        "AUDIT_IGNORE += --ignore-vuln PYSEC-2099-1\n",
        "# PYSEC-2099-1 no date here\nAUDIT_IGNORE += --ignore-vuln PYSEC-2099-1\n",
        "# PYSEC-2099-1 until 2099-01-31:\nAUDIT_IGNORE += --ignore-vuln PYSEC-2099-1\n",
        "# PYSEC-2099-2 until 2099-01-31: another one's reason\nAUDIT_IGNORE += --ignore-vuln PYSEC-2099-1\n",
        "# PYSEC-2099-1 until 2099-02-30: not a day\nAUDIT_IGNORE += --ignore-vuln PYSEC-2099-1\n",
        "# PYSEC-2099-1 until 2099-01-31: two at once\nAUDIT_IGNORE += --ignore-vuln PYSEC-2099-1 --ignore-vuln X\n",
    ],
)
def test_reader_refuses_an_acceptance_without_its_own_reason_and_date(text: str) -> None:
    """No reason, no date, an impossible date, another ID's comment or two IDs on a line is an error."""
    with pytest.raises(ValueError, match="line"):
        accepted(text)
