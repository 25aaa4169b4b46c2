"""sut_soap.errors and python -m sut_soap: message shapes not covered elsewhere (issue 7 coverage)."""

from __future__ import annotations

import runpy
import sys

import pytest

from sut_soap.errors import ConfigurationError, SutSoapError, TransportError


def test_error_without_hint_prints_only_its_message() -> None:
    """An error with an empty hint (the base class default, or hint="") has no '(check: ...)' suffix."""
    assert str(SutSoapError("something failed")) == "something failed"
    assert str(ConfigurationError("bad value", hint="")) == "bad value"
    assert str(ConfigurationError("bad value")) == "bad value (check: the value passed to sut-soap)"


def test_message_is_capped_at_one_kibibyte() -> None:
    """A message longer than 1 KiB is cut to 1024 characters in message, str and args."""
    error = TransportError("x" * 5000, hint="")
    assert error.message == "x" * 1024
    assert str(error) == "x" * 1024
    assert error.args == ("x" * 1024,)


def test_python_dash_m_exits_with_the_command_line_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """python -m sut_soap runs cli.main() and exits with its status (0 for --help)."""
    monkeypatch.setattr(sys, "argv", ["sut-soap", "--help"])
    with pytest.raises(SystemExit) as caught:
        runpy.run_module("sut_soap", run_name="__main__")
    assert caught.value.code == 0
    assert "sut-soap" in capsys.readouterr().out
