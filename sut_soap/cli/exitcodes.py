"""Exit codes shared by every sut-soap command (``sut-soap ...`` and ``sut-soap replay``)."""

from __future__ import annotations

from ..errors import (
    AuthenticationRejectedError,
    ConfigurationError,
    SoapFaultError,
    SutSoapError,
    TokenValidationError,
)

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_SOME_FAILED",
    "EXIT_TOKEN",
    "EXIT_TRANSPORT",
    "EXIT_USAGE",
    "exit_code_for",
]

EXIT_OK = 0
EXIT_REJECTED = 1  # the service said no: IsSuccessful=false or a SOAP fault
EXIT_USAGE = 2  # usage or configuration
EXIT_TRANSPORT = 3  # transport or protocol
EXIT_TOKEN = 4  # the returned JWT failed validation
EXIT_SOME_FAILED = 5  # warm: not every tenant got a ticket (each one's error is in the report)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (128 + 2)


def exit_code_for(error: SutSoapError) -> int:
    """Map a sut-soap error to the command line's exit code (transport/protocol by default)."""
    if isinstance(error, (AuthenticationRejectedError, SoapFaultError)):
        return EXIT_REJECTED
    if isinstance(error, ConfigurationError):
        return EXIT_USAGE
    if isinstance(error, TokenValidationError):
        return EXIT_TOKEN
    return EXIT_TRANSPORT
