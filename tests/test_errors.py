"""The error tree: messages are capped and a hint is printed only when there is one."""

from __future__ import annotations

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




def test_rejection_names_its_reason_code() -> None:
    """AuthenticationRejectedError.reason is the word that starts ErrorMessage, or empty without one."""
    from sut_soap.errors import AuthenticationRejectedError

    assert AuthenticationRejectedError("x", error_message=" InvalidSystemToken: not this tenant's").reason == (
        "InvalidSystemToken"
    )
    assert AuthenticationRejectedError("x", error_message="").reason == ""
    assert AuthenticationRejectedError("x", error_message=": odd").reason == ""
