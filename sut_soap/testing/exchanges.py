"""The model of a recording: exchanges, recorded errors, placeholders."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sut_soap.errors import (
    ConfigurationError,
)
from sut_soap.testing._raw import _element_value

__all__ = ["FORMAT", "PLACEHOLDER_NAMES", "Exchange", "RecordedError", "Recording", "placeholder"]

FORMAT = "sut-soap-recording/1"
PLACEHOLDER_NAMES = ("CLIENT_SECRET", "CONTEXT_IDENTIFIER", "SYSTEM_USER_TOKEN", "SIGNED_TOKEN", "JWT", "TICKET")

_PLACEHOLDER = re.compile(r"\{\{SUT_SOAP:([A-Z_]+)\}\}")
def placeholder(name: str) -> str:
    """Return the placeholder text for ``name`` (one of :data:`PLACEHOLDER_NAMES`)."""
    if name not in PLACEHOLDER_NAMES:
        raise ValueError(f"unknown placeholder {name!r}; expected one of {', '.join(PLACEHOLDER_NAMES)}")
    return "{{SUT_SOAP:" + name + "}}"


def _substitutions(
    *,
    jwt: str | None = None,
    ticket: str | None = None,
    client_secret: str | None = None,
    context_identifier: str | None = None,
    system_user_token: str | None = None,
    signed_token: str | None = None,
) -> dict[str, str]:
    given = {
        "JWT": jwt,
        "TICKET": ticket,
        "CLIENT_SECRET": client_secret,
        "CONTEXT_IDENTIFIER": context_identifier,
        "SYSTEM_USER_TOKEN": system_user_token,
        "SIGNED_TOKEN": signed_token,
    }
    out: dict[str, str] = {}
    for name, value in given.items():
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"the substitution for {name} must be a non-empty string")
        out[name] = value
    return out



# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedError:
    """The exception a transport raised instead of answering (``type`` is its qualified name).

    ``host`` and ``phase`` are a :class:`~sut_soap.errors.TransportError`'s (None otherwise,
    and in recordings made before they existed).
    """

    type: str
    message: str
    context: str | None = None
    status: int | None = None
    retryable: bool | None = None
    host: str | None = None
    phase: str | None = None


@dataclass(frozen=True, repr=False)
class Exchange:
    """One request and its answer (or the transport's failure), as recorded.

    In a :class:`RecordingTransport` the bodies are the raw bytes, secrets included; after
    :func:`redact_exchange` or :func:`load_recording` they hold placeholders instead.
    """

    url: str
    request_body: bytes | None
    request_headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"
    status: int | None = None
    reason: str = ""
    response_headers: Mapping[str, str] = field(default_factory=dict)
    response_body: bytes | None = None
    error: RecordedError | None = None
    recorded_at: datetime | None = None
    jwt_header: Mapping[str, Any] | None = None
    jwt_claims: Mapping[str, Any] | None = None
    signed_at: str | None = None
    source: str = "recorded"
    note: str = ""

    @property
    def hand_written(self) -> bool:
        """True when the exchange was written by hand rather than recorded."""
        return self.source.lower().startswith("hand-written")

    def request_text(self, local_name: str) -> str | None:
        """The text of the request's first element with this local name (any prefix), or None."""
        return _element_value(self.request_body or b"", local_name)

    def response_text(self, local_name: str) -> str | None:
        """The text of the answer's first element with this local name (any prefix), or None."""
        return _element_value(self.response_body or b"", local_name)

    def __repr__(self) -> str:
        request = "none" if self.request_body is None else f"{len(self.request_body)} bytes"
        if self.error is not None:
            outcome = f"error={self.error.type}"
        else:
            size = 0 if self.response_body is None else len(self.response_body)
            outcome = f"status={self.status}, response={size} bytes"
        return f"Exchange({self.method} {self.url!r}, request={request}, {outcome})"


@dataclass(frozen=True, repr=False)
class Recording:
    """Exchanges loaded from a directory, with the values the test gave for placeholders."""

    exchanges: tuple[Exchange, ...]
    directory: Path | None = None
    substitutions: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        given = ", ".join(sorted(self.substitutions))
        return f"Recording({str(self.directory)!r}, exchanges={len(self.exchanges)}, substitutions=[{given}])"


