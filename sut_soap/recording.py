"""Recorded exchanges: record once (against SuperOffice or the emulator), replay forever.

A test of code that uses sut-soap should not need a server, a partner contract or the
network. :class:`RecordingTransport` records what goes over the wire, :func:`save_recording`
writes it to a directory with every secret replaced by a placeholder, and
:class:`ReplayTransport` (or :func:`replay_client`, the three-line way) answers a
:class:`~sut_soap.SystemUserClient` from that directory without opening a socket, while
checking that the client sent what was recorded.

On disk
-------
A recording is a directory. Each exchange in it has a number and up to three files, all
meant to be read and reviewed in a diff::

    tests/recordings/ok/
        01-exchange.json     status, reason, relevant headers, URL, time, the JWT's header and claims
        01-request.xml       the request envelope, exact bytes (secrets as placeholders)
        01-response.xml      the response body, exact bytes (.html, .txt or .bin by Content-Type)

``01-exchange.json`` looks like this (``response`` is ``null`` and ``error`` is set when the
transport raised, for example connection refused)::

    {
      "format": "sut-soap-recording/1",
      "source": "recorded by sut_soap.recording.RecordingTransport (sut-soap 0.1.0)",
      "note": "",
      "recorded_at": "2026-11-28T13:30:12+00:00",
      "redacted": ["CLIENT_SECRET", "JWT", "SIGNED_TOKEN", "SYSTEM_USER_TOKEN", "TICKET"],
      "request": {"method": "POST", "url": "https://online.superoffice.com/Login/Services/...",
                  "headers": {"SOAPAction": "\\"http://...\\"", "Content-Type": "text/xml; charset=utf-8"},
                  "body": "01-request.xml", "signed_at": "202611281330"},
      "response": {"status": 200, "reason": "OK", "headers": {"Content-Type": "text/xml; charset=utf-8"},
                   "body": "01-response.xml"},
      "error": null,
      "jwt": {"header": {"alg": "RS256", "kid": "...", "typ": "JWT"},
              "claims": {"iss": "SuperOffice AS", "...ticket": "{{SUT_SOAP:TICKET}}", ...}}
    }

Bodies are stored byte for byte (a replay parses exactly what the client parsed), so keep
them out of end-of-line conversion (``* -text`` in a ``.gitattributes``). Hop-by-hop
headers, ``Content-Length``, ``Content-Encoding`` (the body is stored decoded) and cookie or
authorization headers are not stored. Hand-written exchanges say so in ``source``.

Placeholders
------------
On save, secrets become ``{{SUT_SOAP:NAME}}`` (plain text, safe in XML and JSON):
``CLIENT_SECRET`` (ApplicationToken), ``SIGNED_TOKEN`` (SignedSystemToken),
``SYSTEM_USER_TOKEN`` (the signed token's first part), ``JWT`` (Token), ``TICKET`` (any
``7T:`` value) and, when asked, ``CONTEXT_IDENTIFIER``. Redaction works on the raw bytes,
twice: by element (any namespace prefix) and by exact value wherever a known secret occurs
again (an echo in ErrorMessage, a header); JWT-shaped and ``7T:`` values are caught by shape.
Known values shorter than 6 characters are replaced only inside their elements. The JWT is
replaced whole, but its header and claims are kept in the JSON (ticket and system user token
as placeholders), so a replay can sign the same claims again with a test key.

On load, placeholders are filled with values the test gives (:func:`load_recording`), and a
replay fills the rest from what the client sent. The JWT is either given (``jwt=``, for
example from :func:`mint_test_jwt`) or re-signed from the recorded claims with ``jwt_key=``,
its times moved by the time elapsed since the recording, so it validates now with that
key's public half and without any network.

Replay checks
-------------
By default each request the client sends must match the recorded one: the same elements
and text after parsing (namespace prefixes, XML declaration and whitespace between elements
ignored), the same ``SOAPAction`` and ``Content-Type``, the same URL path. A placeholder
matches any value unless the test gave that value; ``SIGNED_TOKEN`` must still look like
``<token>.<12 digits>.<base64>`` (starting with the given system user token, if any). A
mismatch raises :class:`ReplayMismatch` with a readable diff. ``ReplayMismatch`` is not an
``Exception`` (like ``pytest.fail``): neither the client's error boundary nor an
``except Exception`` in the code under test can swallow it.

``sut-soap replay DIR`` (:func:`replay_main`) runs a recording through the client's own
parsing and validation path offline and prints what the client would have returned or
raised: a production incident becomes a test case.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import difflib
import functools
import html
import json
import os
import re
import secrets
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit
from xml.sax.saxutils import escape as _xml_escape

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from . import __version__
from . import errors as _errors
from ._contract import CLAIM_PREFIX, CLAIM_TICKET, ISSUER, SOAP11_ENV, TNS, XSI
from ._exitcodes import EXIT_OK, EXIT_USAGE, exit_code_for
from ._xml import hardened_parser, has_dtd
from .client import SystemUserClient
from .errors import (
    ConfigurationError,
    ProtocolError,
    SutSoapError,
    TokenValidationError,
    TransportError,
)
from .keys import PrivateKeyInput, load_private_key
from .soap import parse_answer
from .tokens import decode_unverified
from .transport import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
    HeaderMap,
    HttpResponse,
    HttpTransport,
    Response,
    Transport,
    call_transport,
)

if TYPE_CHECKING:
    import requests

__all__ = [
    "FORMAT",
    "PLACEHOLDER_NAMES",
    "Exchange",
    "RecordedError",
    "Recording",
    "RecordingTransport",
    "ReplayClient",
    "ReplayMismatch",
    "ReplayTransport",
    "SecretFinding",
    "SentRequest",
    "load_recording",
    "mint_test_jwt",
    "placeholder",
    "redact_exchange",
    "replay_client",
    "replay_main",
    "save_recording",
    "scan_for_secrets",
]

FORMAT = "sut-soap-recording/1"
PLACEHOLDER_NAMES = ("CLIENT_SECRET", "CONTEXT_IDENTIFIER", "SYSTEM_USER_TOKEN", "SIGNED_TOKEN", "JWT", "TICKET")

_SOURCE = f"recorded by sut_soap.recording.RecordingTransport (sut-soap {__version__})"
_MIN_EXACT = 6
_MAX_BODY_FILE = 64 * 1024 * 1024
_PLACEHOLDER = re.compile(r"\{\{SUT_SOAP:([A-Z_]+)\}\}")
_EXCHANGE_FILE = re.compile(r"([0-9]{2,6})-exchange\.json")
_OWN_FILE = re.compile(r"[0-9]{2,6}-(exchange\.json|request\.[a-z]+|response\.[a-z]+)")
_SAFE_NAME = re.compile(r"[0-9]{2,6}-(request|response)\.[a-z]{2,4}")
_TIME_CLAIMS = ("iat", "nbf", "exp", "auth_time")
_DROP_HEADERS = frozenset(
    {
        "connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "te",
        "trailer", "upgrade", "set-cookie", "cookie", "authorization", "proxy-authorization",
        "proxy-authenticate", "proxy-connection",
    }
)
_MATCHED_HEADERS = ("SOAPAction", "Content-Type")
_SECRET_ELEMENTS = {"ApplicationToken": "CLIENT_SECRET", "SignedSystemToken": "SIGNED_TOKEN", "Token": "JWT"}
_STAND_IN_SECRET = "sut-soap-replay-client-secret"  # noqa: S105 -- a stand-in, not a secret
_STAND_IN_SYSTEM_USER_TOKEN = "sut-soap-replay-system-user-token"  # noqa: S105
_DEFAULT_ENDPOINT = "https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc"
_NS_SHORT = {SOAP11_ENV: "soap", TNS: "tns", XSI: "xsi"}

_TICKET_SHAPE = re.compile(r"7T:[A-Za-z0-9+/=_-]{10,}")
# A JWT header is a JSON object, so its base64url starts with "e" ("{" is 0x7B).
_JWT_SHAPE = re.compile(
    r"(?<![A-Za-z0-9_-])(e[A-Za-z0-9_-]{12,})\.([A-Za-z0-9_-]{2,})\.([A-Za-z0-9_-]*)(?![A-Za-z0-9_-])"
)
_JWT_FRAGMENT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{16,}(?:\.[A-Za-z0-9_-]*){0,2}")
_SIGNED_CORE = re.compile(r"\.[0-9]{12}\.[A-Za-z0-9+/]{40,}={0,2}")
_TOKEN_STOP = frozenset(" \t\r\n<>\"'&")


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
    """The exception a transport raised instead of answering (``type`` is its qualified name)."""

    type: str
    message: str
    context: str | None = None
    status: int | None = None
    retryable: bool | None = None


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


@dataclass(frozen=True, repr=False)
class SentRequest:
    """What the client handed to a :class:`ReplayTransport`."""

    address: str
    body: bytes
    headers: Mapping[str, str]

    def element_text(self, local_name: str) -> str | None:
        """The text of the first element with this local name (any prefix), unescaped."""
        return _element_value(self.body, local_name)

    @property
    def context_identifier(self) -> str | None:
        """The ContextIdentifier header the client sent."""
        return self.element_text("ContextIdentifier")

    @property
    def signed_at(self) -> str | None:
        """The ``yyyyMMddHHmm`` UTC stamp of the signed system token the client sent."""
        signed = self.element_text("SignedSystemToken")
        parts = signed.rsplit(".", 2) if signed else []
        return parts[1] if len(parts) == 3 else None

    def __repr__(self) -> str:
        ctx = self.context_identifier
        return f"SentRequest({self.address!r}, body={len(self.body)} bytes, context_identifier={ctx!r})"


class ReplayMismatch(BaseException):
    """A replay went off script: the client sent something else, or more than was recorded.

    Deliberately not an ``Exception`` (``pytest.fail`` does the same), so that neither the
    client's error boundary nor an ``except Exception`` in the code under test swallows it.
    """


# --- redaction ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _element_pattern(local_name: str) -> re.Pattern[str]:
    prefix = r"(?:[A-Za-z_][\w.-]*:)?"
    return re.compile(
        rf"(<{prefix}{local_name}(?:\s[^<>]*)?(?<!/)>)([^<]*)(</{prefix}{local_name}\s*>)"
    )


@functools.lru_cache(maxsize=16)
def _unclosed_pattern(local_name: str) -> re.Pattern[str]:
    """The element still open where a truncated body ends."""
    return re.compile(rf"(<(?:[A-Za-z_][\w.-]*:)?{local_name}(?:\s[^<>]*)?(?<!/)>)([^<]+)\Z")


def _latin(data: bytes) -> str:
    return data.decode("latin-1")


def _utf8_as_latin(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


def _element_value(body: bytes, local_name: str) -> str | None:
    match = _element_pattern(local_name).search(_latin(body))
    if match is None:
        return None
    raw = match.group(2).encode("latin-1").decode("utf-8", errors="replace")
    value = html.unescape(raw).strip()
    return value or None


def _b64url_json(segment: str) -> Any:
    if len(segment) > 8192:
        return None
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(data) if data.lstrip()[:1] == b"{" else None
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None


def _looks_like_jwt(header_segment: str) -> bool:
    header = _b64url_json(header_segment)
    return isinstance(header, dict) and "alg" in header


def _jwt_spans(text: str) -> list[tuple[int, int]]:
    """Where JWTs are in ``text``; after a near miss the search goes on from the next segment."""
    spans: list[tuple[int, int]] = []
    position = 0
    while (match := _JWT_SHAPE.search(text, position)) is not None:
        if _looks_like_jwt(match.group(1)):
            spans.append(match.span())
            position = match.end()
        else:
            position = match.end(1) + 1
    return spans


def _signed_spans(text: str) -> list[tuple[int, int]]:
    """Where ``<token>.<12 digits>.<base64>`` values are: found by their tail, extended leftwards."""
    spans: list[tuple[int, int]] = []
    floor = 0
    for match in _SIGNED_CORE.finditer(text):
        start = match.start()
        while start > floor and text[start - 1] not in _TOKEN_STOP:
            start -= 1
        if start < match.start():
            spans.append((start, match.end()))
        floor = match.end()
    return spans


def _replace_spans(text: str, spans: list[tuple[int, int]], replacement: str) -> str:
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        pieces += [text[last:start], replacement]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _scrub_shapes(text: str) -> str:
    text = _replace_spans(text, _jwt_spans(text), placeholder("JWT"))
    text = _JWT_FRAGMENT.sub(placeholder("JWT"), text)
    text = _replace_spans(text, _signed_spans(text), placeholder("SIGNED_TOKEN"))
    return _TICKET_SHAPE.sub(placeholder("TICKET"), text)


def _variants(value: str) -> list[str]:
    out = [value, _xml_escape(value), _xml_escape(value, {'"': "&quot;", "'": "&apos;"})]
    return list(dict.fromkeys(out))


def _scrub_text(text: str, values: Sequence[tuple[str, str]], *, latin: bool = False) -> str:
    """Replace exact known values (longest first), then JWT, signed-token and ticket shapes."""
    for value, name in values:
        if len(value) < _MIN_EXACT:
            continue
        for variant in _variants(value):
            needle = _utf8_as_latin(variant) if latin else variant
            text = text.replace(needle, placeholder(name))
    return _scrub_shapes(text)


def _scrub_body(data: bytes, values: Sequence[tuple[str, str]], elements: Mapping[str, str]) -> bytes:
    text = _latin(data)
    for local_name, name in elements.items():

        def swap(match: re.Match[str], name: str = name) -> str:
            inner = match.group(2)
            if not inner.strip() or _PLACEHOLDER.fullmatch(inner.strip()):
                return match.group(0)
            closing = match.group(3) if match.lastindex == 3 else ""
            return match.group(1) + placeholder(name) + closing

        text = _element_pattern(local_name).sub(swap, text)
        text = _unclosed_pattern(local_name).sub(swap, text)
    return _scrub_text(text, values, latin=True).encode("latin-1")


def _scrub_json(value: Any, values: Sequence[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        return _scrub_text(value, values)
    if isinstance(value, list):
        return [_scrub_json(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _scrub_json(item, values) for key, item in value.items()}
    return value


def _request_values(body: bytes) -> dict[str, str]:
    """CLIENT_SECRET, CONTEXT_IDENTIFIER, SIGNED_TOKEN and SYSTEM_USER_TOKEN found in a request."""
    found: dict[str, str] = {}
    for local_name, name in (
        ("ApplicationToken", "CLIENT_SECRET"),
        ("ContextIdentifier", "CONTEXT_IDENTIFIER"),
        ("SignedSystemToken", "SIGNED_TOKEN"),
    ):
        value = _element_value(body, local_name)
        if value is not None and "{{SUT_SOAP:" not in value:
            found[name] = value
    signed = found.get("SIGNED_TOKEN")
    if signed is not None:
        parts = signed.rsplit(".", 2)
        if len(parts) == 3 and parts[0]:
            found["SYSTEM_USER_TOKEN"] = parts[0]
    return found


def _decode_jwt(token: str | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    if not token or "{{SUT_SOAP:" in token:
        return None
    try:
        return decode_unverified(token)
    except SutSoapError:
        return None


def redact_exchange(
    exchange: Exchange,
    *,
    client_secret: str | None = None,
    system_user_token: str | None = None,
    context_identifier: str | None = None,
    redact_context_identifier: bool = False,
) -> Exchange:
    """Return ``exchange`` with every secret replaced by a placeholder (see the module docstring).

    The values in the request envelope and in the answer's JWT are found and redacted
    wherever they occur; pass the ones you know as well, to be safe against odd envelopes.
    The ContextIdentifier is redacted only with ``redact_context_identifier=True``.
    """
    known: list[tuple[str, str]] = []
    request = exchange.request_body or b""
    found = _request_values(request)
    for name, value in found.items():
        if name != "CONTEXT_IDENTIFIER":
            known.append((value, name))
    token = _element_value(exchange.response_body or b"", "Token")
    decoded = _decode_jwt(token)
    if token is not None and "{{SUT_SOAP:" not in token:
        known.append((token, "JWT"))
    jwt_header: Mapping[str, Any] | None = exchange.jwt_header
    jwt_claims: Mapping[str, Any] | None = exchange.jwt_claims
    if decoded is not None:
        jwt_header, claims = decoded
        jwt_claims = dict(claims)
        ticket = claims.get(CLAIM_TICKET)
        if isinstance(ticket, str) and ticket:
            known.append((ticket, "TICKET"))
            jwt_claims[CLAIM_TICKET] = placeholder("TICKET")
        system_token = claims.get(CLAIM_PREFIX + "system_token")
        if isinstance(system_token, str) and system_token:
            known.append((system_token, "SYSTEM_USER_TOKEN"))
            jwt_claims[CLAIM_PREFIX + "system_token"] = placeholder("SYSTEM_USER_TOKEN")
    if client_secret:
        known.append((client_secret, "CLIENT_SECRET"))
    if system_user_token:
        known.append((system_user_token, "SYSTEM_USER_TOKEN"))
    elements = dict(_SECRET_ELEMENTS)
    if redact_context_identifier:
        elements["ContextIdentifier"] = "CONTEXT_IDENTIFIER"
        for ctx in (context_identifier, found.get("CONTEXT_IDENTIFIER")):
            if ctx:
                known.append((ctx, "CONTEXT_IDENTIFIER"))
    known = sorted({v: n for v, n in known if "{{SUT_SOAP:" not in v}.items(), key=lambda item: -len(item[0]))

    def body(data: bytes | None) -> bytes | None:
        return None if data is None else _scrub_body(data, known, elements)

    def headers(items: Mapping[str, str]) -> dict[str, str]:
        return {k: _scrub_text(v, known) for k, v in items.items() if k.lower() not in _DROP_HEADERS}

    error = exchange.error
    if error is not None:
        error = replace(error, message=_scrub_text(error.message, known))
    signed_at = exchange.signed_at
    signed_parts = found.get("SIGNED_TOKEN", "").rsplit(".", 2)
    if signed_at is None and len(signed_parts) == 3 and re.fullmatch(r"[0-9]{12}", signed_parts[1]):
        signed_at = signed_parts[1]
    try:
        header_out = None if jwt_header is None else _scrub_json(dict(jwt_header), known)
        claims_out = None if jwt_claims is None else _scrub_json(dict(jwt_claims), known)
        json.dumps([header_out, claims_out])
    except (RecursionError, TypeError, ValueError):  # absurdly nested claims: keep the JWT out entirely
        header_out = claims_out = None
    return replace(
        exchange,
        signed_at=signed_at,
        url=_scrub_text(exchange.url, known),
        request_body=body(exchange.request_body),
        request_headers=headers(exchange.request_headers),
        response_body=body(exchange.response_body),
        response_headers=headers(exchange.response_headers),
        error=error,
        jwt_header=header_out,
        jwt_claims=claims_out,
        note=_scrub_text(exchange.note, known),
    )


# --- saving and loading ---------------------------------------------------------------------


def _extension(headers: Mapping[str, str], body: bytes) -> str:
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "").lower()
    if "html" in content_type:
        return ".html"
    if "xml" in content_type:
        return ".xml"
    if "json" in content_type:
        return ".json"
    stripped = body.lstrip()
    if stripped.startswith(b"<"):
        return ".html" if stripped[:100].lower().startswith((b"<!doctype html", b"<html")) else ".xml"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return ".bin"
    return ".txt"


def _placeholders_in(*chunks: Any) -> list[str]:
    names: set[str] = set()
    for chunk in chunks:
        text = _latin(chunk) if isinstance(chunk, bytes) else json.dumps(chunk)
        names.update(_PLACEHOLDER.findall(text))
    return sorted(names)


def _existing_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and _OWN_FILE.fullmatch(p.name))


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the recording file {path}: {exc.strerror or type(exc).__name__}",
            hint="that the recording directory is writable",
        ) from None


def _refuse_existing(directory: Path) -> None:
    existing = _existing_files(directory)
    if existing:
        raise ConfigurationError(
            f"{directory} already holds a recording ({len(existing)} files)",
            hint="choose an empty directory or pass overwrite=True to replace it",
        )


def _prepare_directory(directory: Path, *, overwrite: bool) -> None:
    if not overwrite:
        _refuse_existing(directory)
    existing = _existing_files(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path in existing:
            path.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot prepare the recording directory {directory}: {exc.strerror or type(exc).__name__}"
        ) from None


def _write_exchange(directory: Path, number: int, exchange: Exchange) -> list[Path]:
    stem = f"{number:02d}"
    written: list[Path] = []
    request_name = response_name = None
    if exchange.request_body is not None:
        request_name = f"{stem}-request{_extension(exchange.request_headers, exchange.request_body)}"
        _write(directory / request_name, exchange.request_body)
        written.append(directory / request_name)
    if exchange.status is not None:
        body = exchange.response_body or b""
        response_name = f"{stem}-response{_extension(exchange.response_headers, body)}"
        _write(directory / response_name, body)
        written.append(directory / response_name)
    document: dict[str, Any] = {
        "format": FORMAT,
        "source": exchange.source,
        "note": exchange.note,
        "recorded_at": None if exchange.recorded_at is None else exchange.recorded_at.isoformat(timespec="seconds"),
        "redacted": _placeholders_in(
            exchange.request_body or b"", exchange.response_body or b"", dict(exchange.response_headers),
            dict(exchange.jwt_claims or {}), exchange.error.message if exchange.error else "",
        ),
        "request": {
            "method": exchange.method,
            "url": exchange.url,
            "headers": dict(exchange.request_headers),
            "body": request_name,
        },
        "response": None
        if exchange.status is None
        else {
            "status": exchange.status,
            "reason": exchange.reason,
            "headers": dict(exchange.response_headers),
            "body": response_name,
        },
        "error": None if exchange.error is None else {
            "type": exchange.error.type,
            "message": exchange.error.message,
            "context": exchange.error.context,
            "status": exchange.error.status,
            "retryable": exchange.error.retryable,
        },
        "jwt": None
        if exchange.jwt_claims is None
        else {"header": dict(exchange.jwt_header or {}), "claims": dict(exchange.jwt_claims)},
    }
    if exchange.signed_at is not None:
        document["request"]["signed_at"] = exchange.signed_at
    path = directory / f"{stem}-exchange.json"
    _write(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return [path, *written]


def save_recording(
    directory: str | os.PathLike[str],
    exchanges: Iterable[Exchange],
    *,
    overwrite: bool = False,
    client_secret: str | None = None,
    system_user_token: str | None = None,
    context_identifier: str | None = None,
    redact_context_identifier: bool = False,
) -> list[Path]:
    """Redact ``exchanges`` and write them to ``directory``; return the files written.

    A directory that already holds a recording is refused unless ``overwrite=True``, which
    removes the old exchange files first (other files, such as a README, stay).
    """
    target = Path(directory)
    items = list(exchanges)
    _prepare_directory(target, overwrite=overwrite)
    written: list[Path] = []
    for number, exchange in enumerate(items, start=1):
        redacted = redact_exchange(
            exchange,
            client_secret=client_secret,
            system_user_token=system_user_token,
            context_identifier=context_identifier,
            redact_context_identifier=redact_context_identifier,
        )
        written += _write_exchange(target, number, redacted)
    return written


def _bad(path: Path, what: str) -> ConfigurationError:
    return ConfigurationError(f"the recording file {path} {what}", hint="re-record, or fix the file by hand")


def _read_body(directory: Path, name: object, json_path: Path) -> bytes | None:
    if name is None:
        return None
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise _bad(json_path, f"names a body file {str(name)[:60]!r}, which is not a file of this directory")
    return _read_file_of(directory, directory / name)


def _read_file_of(directory: Path, path: Path) -> bytes:
    """A regular file of the recording, at most _MAX_BODY_FILE bytes.

    A tampered recording must not make a replay read elsewhere (a symlink out of the
    directory) or block forever (a FIFO).
    """
    try:
        if not path.resolve().is_relative_to(directory.resolve()):
            raise _bad(path, "is a link to a file outside the recording directory")
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise _bad(path, "is not a regular file")
        if info.st_size > _MAX_BODY_FILE:
            raise _bad(path, f"is larger than {_MAX_BODY_FILE} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise _bad(path, f"cannot be read: {exc.strerror or type(exc).__name__}") from None


def _str_map(value: object, path: Path, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _bad(path, f"has {what} that are not a JSON object of strings")
    return dict(value)


def _read_exchange(directory: Path, path: Path) -> Exchange:
    data = _read_file_of(directory, path)
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _bad(path, f"is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _bad(path, f"is not in the format {FORMAT}")
    request = document.get("request")
    if not isinstance(request, dict):
        raise _bad(path, "has no request object")
    response = document.get("response")
    error = document.get("error")
    if (response is None) == (error is None):
        raise _bad(path, "must have exactly one of response and error")
    recorded_at = None
    if document.get("recorded_at"):
        try:
            recorded_at = datetime.fromisoformat(str(document["recorded_at"]))
        except ValueError:
            raise _bad(path, "has a recorded_at that is not an ISO 8601 time") from None
        if recorded_at.tzinfo is None:
            recorded_at = recorded_at.replace(tzinfo=timezone.utc)
    status: int | None = None
    reason = ""
    response_headers: dict[str, str] = {}
    response_body = None
    recorded_error = None
    if isinstance(response, dict):
        status = response.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise _bad(path, "has a response status that is not an HTTP status code")
        reason = str(response.get("reason") or "")
        response_headers = _str_map(response.get("headers"), path, "response headers")
        response_body = _read_body(directory, response.get("body"), path) or b""
    elif isinstance(error, dict) and isinstance(error.get("type"), str):
        status_value = error.get("status")
        retryable = error.get("retryable")
        recorded_error = RecordedError(
            type=error["type"],
            message=str(error.get("message") or ""),
            context=error.get("context") if isinstance(error.get("context"), str) else None,
            status=status_value if isinstance(status_value, int) else None,
            retryable=retryable if isinstance(retryable, bool) else None,
        )
    else:
        raise _bad(path, "has a response or error that is not an object")
    jwt_part = document.get("jwt")
    jwt_header = jwt_claims = None
    if isinstance(jwt_part, dict) and isinstance(jwt_part.get("claims"), dict):
        jwt_claims = jwt_part["claims"]
        jwt_header = jwt_part.get("header") if isinstance(jwt_part.get("header"), dict) else {}
    return Exchange(
        url=str(request.get("url") or ""),
        method=str(request.get("method") or "POST"),
        request_headers=_str_map(request.get("headers"), path, "request headers"),
        request_body=_read_body(directory, request.get("body"), path),
        status=status,
        reason=reason,
        response_headers=response_headers,
        response_body=response_body,
        error=recorded_error,
        recorded_at=recorded_at,
        jwt_header=jwt_header,
        jwt_claims=jwt_claims,
        signed_at=request.get("signed_at") if isinstance(request.get("signed_at"), str) else None,
        source=str(document.get("source") or "recorded"),
        note=str(document.get("note") or ""),
    )


def _fill_text(text: str, values: Mapping[str, str], *, xml: bool = False) -> str:
    def swap(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return match.group(0)
        return _xml_escape(value) if xml else value

    return _PLACEHOLDER.sub(swap, text)


def _fill_body(data: bytes, values: Mapping[str, str]) -> bytes:
    if b"{{SUT_SOAP:" not in data:
        return data
    return _fill_text(data.decode("utf-8", errors="surrogateescape"), values, xml=True).encode(
        "utf-8", errors="surrogateescape"
    )


def _fill_json(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _fill_text(value, values)
    if isinstance(value, list):
        return [_fill_json(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _fill_json(item, values) for key, item in value.items()}
    return value


def load_recording(
    directory: str | os.PathLike[str],
    *,
    jwt: str | None = None,
    ticket: str | None = None,
    client_secret: str | None = None,
    context_identifier: str | None = None,
    system_user_token: str | None = None,
    signed_token: str | None = None,
) -> Recording:
    """Read a recording; fill the placeholders of its answers with the values given.

    Requests keep their placeholders (a replay matches them against what the client sends);
    answers get the given values now and, at replay, the rest from what the client sent.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigurationError(f"{root} is not a directory", hint="the path of a recording directory")
    files = sorted(
        (int(m.group(1)), p) for p in root.iterdir() if (m := _EXCHANGE_FILE.fullmatch(p.name)) and p.is_file()
    )
    if not files:
        raise ConfigurationError(f"{root} holds no NN-exchange.json file", hint="the path of a recording directory")
    values = _substitutions(
        jwt=jwt, ticket=ticket, client_secret=client_secret, context_identifier=context_identifier,
        system_user_token=system_user_token, signed_token=signed_token,
    )
    exchanges = []
    for _, path in files:
        exchange = _read_exchange(root, path)
        if values and exchange.response_body is not None:
            exchange = replace(
                exchange,
                response_body=_fill_body(exchange.response_body, values),
                response_headers={k: _fill_text(v, values) for k, v in exchange.response_headers.items()},
            )
        exchanges.append(exchange)
    return Recording(tuple(exchanges), root, values)


# --- recording ------------------------------------------------------------------------------


def _qualified(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _recorded_error(exc: BaseException) -> RecordedError:
    if isinstance(exc, SutSoapError):
        return RecordedError(
            type=_qualified(exc),
            message=exc.message,
            status=getattr(exc, "status", None),
            retryable=exc.retryable,
        )
    context = exc.__context__ or exc.__cause__
    return RecordedError(
        type=_qualified(exc),
        message=str(exc)[:500],
        context=None if context is None else _qualified(context),
    )


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class RecordingTransport:
    """A :class:`~sut_soap.Transport` that records every exchange (each POST), failures included.

    ``SystemUserClient(..., transport=RecordingTransport("tests/recordings/ok"))``. With a
    ``directory``, each exchange is redacted and written as soon as it completes (an answer
    that the client then rejects is on disk all the same); ``exchanges`` keeps the raw,
    unredacted exchanges in memory. A directory that already holds a recording is refused at
    construction unless ``overwrite=True``. Other requests (the JWKS GET) pass through
    unrecorded. ``timeout``, ``deadline`` and ``max_response_bytes`` are those of the
    :class:`~sut_soap.HttpTransport` it sends with (the client's ``timeout=`` does not apply
    to a transport passed in), over ``session`` when given. ``transport`` wraps another
    :class:`~sut_soap.Transport` instead (such as a logging one): it does the HTTP, this one
    records. ``client_secret`` and ``system_user_token`` are optional: the values in the
    envelope are found anyway; pass them to catch echoes too. ``note`` is stored with each
    exchange (say how it was made).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        session: requests.Session | None = None,
        *,
        overwrite: bool = False,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        deadline: float | None = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        client_secret: str | None = None,
        system_user_token: str | None = None,
        context_identifier: str | None = None,
        redact_context_identifier: bool = False,
        note: str = "",
        clock: Callable[[], datetime] | None = None,
        transport: Transport | None = None,
    ) -> None:
        if transport is not None and session is not None:
            raise ConfigurationError("give RecordingTransport either session= or transport=, not both")
        if transport is not None and not callable(getattr(transport, "request", None)):
            raise ConfigurationError("RecordingTransport's transport= must be a sut_soap.Transport")
        self._inner: Transport = (
            transport if transport is not None
            else HttpTransport(session, timeout=timeout, deadline=deadline, max_response_bytes=max_response_bytes)
        )
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None and not overwrite:
            _refuse_existing(self.directory)
        self._overwrite = overwrite
        self._note = note
        self._prepared = False
        self._clock = clock or _utc_now
        self._lock = threading.Lock()
        self._redaction: dict[str, Any] = {
            "client_secret": client_secret,
            "system_user_token": system_user_token,
            "context_identifier": context_identifier,
            "redact_context_identifier": redact_context_identifier,
        }
        self.exchanges: list[Exchange] = []
        self.saved: list[Path] = []

    @property
    def inner(self) -> Transport:
        """The transport that does the HTTP."""
        return self._inner

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> Response:
        """Send through the inner transport; record a POST's exchange (or its failure) and save it."""
        if method != "POST":
            return call_transport(
                self._inner, method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes
            )
        base = Exchange(
            url=url, request_body=body or b"", request_headers=dict(headers or {}), recorded_at=self._clock(),
            source=_SOURCE, note=self._note,
        )
        try:
            response = call_transport(
                self._inner, method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes
            )
        except Exception as exc:
            self._record(replace(base, error=_recorded_error(exc)))
            raise
        self._record(
            replace(
                base,
                status=response.status_code,
                reason=str(getattr(response, "reason", "") or ""),
                response_headers=dict(response.headers),
                response_body=response.content or b"",
            )
        )
        return response

    def prepare(self, urls: Iterable[str | None], *, allow_insecure_tls: bool = False) -> None:
        """Apply the inner transport's TLS and proxy policy, when it has one (see :meth:`HttpTransport.prepare`)."""
        prepare = getattr(self._inner, "prepare", None)
        if callable(prepare):
            prepare(urls, allow_insecure_tls=allow_insecure_tls)

    def ensure_pool(self, size: int) -> None:
        """Widen the inner transport's pool, when it has one (see :meth:`HttpTransport.ensure_pool`)."""
        ensure_pool = getattr(self._inner, "ensure_pool", None)
        if callable(ensure_pool):
            ensure_pool(size)

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)
            if self.directory is None:
                return
            if not self._prepared:
                _prepare_directory(self.directory, overwrite=self._overwrite)
                self._prepared = True
            redacted = redact_exchange(exchange, **self._redaction)
            self.saved += _write_exchange(self.directory, len(self.exchanges), redacted)

    def close(self) -> None:
        """Close the inner transport (a session you passed stays open)."""
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Write every exchange recorded so far to ``directory``, redacted; return the files."""
        with self._lock:
            exchanges = list(self.exchanges)
        return save_recording(directory, exchanges, overwrite=overwrite, **self._redaction)


# --- JWTs for tests ---------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign_jws(header: Mapping[str, Any], claims: Mapping[str, Any], key: rsa.RSAPrivateKey) -> str:
    signing_input = (
        _b64url(json.dumps(dict(header), separators=(",", ":")).encode("utf-8"))
        + "."
        + _b64url(json.dumps(dict(claims), separators=(",", ":")).encode("utf-8"))
    )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def _as_private_key(value: PrivateKeyInput | rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    if isinstance(value, rsa.RSAPrivateKey):
        return value
    return load_private_key(value)


def _new_ticket() -> str:
    return "7T:" + secrets.token_urlsafe(32)


def mint_test_jwt(
    private_key: PrivateKeyInput | rsa.RSAPrivateKey,
    *,
    context_identifier: str = "Cust12345",
    serial: str = "1234567",
    ticket: str | None = None,
    lifetime: float = 300.0,
    now: datetime | None = None,
    kid: str | None = "sut-soap-test",
    webapi_url: str | None = None,
    netserver_url: str | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A SuperOffice-shaped RS256 JWT signed with ``private_key`` (a test key, never a real one).

    Validates with ``SystemUserClient(public_key=<the key's public half>)`` for
    ``context_identifier``. ``ticket`` defaults to a fresh random ``7T:`` value. ``claims``
    adds or replaces claims by full name; a value of ``None`` removes the claim.
    """
    key = _as_private_key(private_key)
    issued = int((now or _utc_now()).timestamp())
    base_url = f"https://sod.superoffice.com/{context_identifier}"
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": f"spn:{serial}",
        "iat": issued,
        "nbf": issued,
        "exp": issued + round(lifetime),
        CLAIM_PREFIX + "ctx": context_identifier,
        CLAIM_PREFIX + "serial": serial,
        CLAIM_TICKET: ticket or _new_ticket(),
        CLAIM_PREFIX + "webapi_url": webapi_url or f"{base_url}/api/",
        CLAIM_PREFIX + "netserver_url": netserver_url or f"{base_url}/Remote/Services88/",
        CLAIM_PREFIX + "associateid": "5",
        CLAIM_PREFIX + "is_administrator": "False",
    }
    for name, value in (claims or {}).items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return _sign_jws(header, body, key)


@functools.lru_cache(maxsize=1)
def _stand_in_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _shift_times(claims: dict[str, Any], seconds: int) -> dict[str, Any]:
    if not seconds:
        return claims
    for name in _TIME_CLAIMS:
        value = claims.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            claims[name] = value + seconds
        elif isinstance(value, str) and value.isdigit():
            claims[name] = str(int(value) + seconds)
    return claims


# --- replaying ------------------------------------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _short(tag: str) -> str:
    namespace, local = _split_tag(tag)
    prefix = _NS_SHORT.get(namespace)
    if prefix is not None:
        return f"{prefix}:{local}"
    return f"{{{namespace}}}{local}" if namespace else local


def _xml_lines(body: bytes) -> list[tuple[str, str, str]] | None:
    """``(structure, text, local name)`` per element in document order; None if not XML."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return None
    try:
        root = etree.fromstring(body, parser=hardened_parser())
    except (etree.XMLSyntaxError, ValueError):
        return None
    if has_dtd(root):
        return None
    lines: list[tuple[str, str, str]] = []

    def walk(element: Any, depth: int) -> None:
        attributes = "".join(f' {_short(k)}="{v}"' for k, v in sorted(element.attrib.items()))
        text = (element.text or "").strip()
        lines.append(("  " * depth + _short(element.tag) + attributes, text, _split_tag(element.tag)[1]))
        for child in element:
            if isinstance(child.tag, str):
                walk(child, depth + 1)

    walk(root, 0)
    return lines


def _text_pattern(template: str, values: Mapping[str, str]) -> re.Pattern[str]:
    pieces: list[str] = []
    for index, part in enumerate(_PLACEHOLDER.split(template)):
        if index % 2 == 0:
            pieces.append(re.escape(part))
        elif part in values:
            pieces.append(re.escape(values[part]))
        elif part == "SIGNED_TOKEN":
            token = values.get("SYSTEM_USER_TOKEN")
            lead = re.escape(token) if token else r"(?s:.+)"
            pieces.append(lead + r"\.[0-9]{12}\.[A-Za-z0-9+/]+={0,2}")
        else:
            pieces.append(r"(?s:.+?)")
    return re.compile("".join(pieces))


def _masked(local_name: str, text: str) -> str:
    if local_name == "ApplicationToken":
        return "***" if text else ""
    if local_name == "SignedSystemToken":
        parts = text.rsplit(".", 2)
        return f"***.{parts[1]}.***" if len(parts) == 3 else "*** (not <token>.<yyyyMMddHHmm>.<signature>)"
    return text


def _render(structure: str, text: str) -> str:
    return f"{structure} {json.dumps(text, ensure_ascii=False)}" if text else structure


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _request_diff(
    recorded: Exchange, address: str, body: bytes, headers: Mapping[str, str], values: Mapping[str, str]
) -> str | None:
    """A unified diff between the recorded request and the one sent, or None when they match."""
    template_lines: list[str] = []
    sent_lines: list[str] = []
    ok = True

    def pair(template: str, sent: str, same: bool) -> None:
        nonlocal ok
        ok = ok and same
        template_lines.append(sent if same else template)
        sent_lines.append(sent)

    recorded_path = urlsplit(recorded.url).path
    sent_path = urlsplit(address).path
    pair(f"{recorded.method} {recorded_path}", f"POST {sent_path}", recorded_path.lower() == sent_path.lower())
    for name in _MATCHED_HEADERS:
        expected = _header(recorded.request_headers, name)
        if expected is None:
            continue
        actual = _header(headers, name)
        pair(f"{name}: {expected}", f"{name}: {actual}" if actual is not None else f"({name} not sent)",
             expected == actual)
    template_xml = _xml_lines(recorded.request_body or b"")
    sent_xml = _xml_lines(body)
    if template_xml is None:
        raise ConfigurationError("the recorded request is not well-formed XML", hint="re-record the exchange")
    if sent_xml is None:
        template_lines += [_render(s, t) for s, t, _ in template_xml]
        sent_lines.append(f"(not well-formed XML, {len(body)} bytes)")
        ok = False
    elif [s for s, _, _ in template_xml] != [s for s, _, _ in sent_xml]:
        template_lines += [_render(s, t) for s, t, _ in template_xml]
        sent_lines += [_render(s, _masked(n, t)) for s, t, n in sent_xml]
        ok = False
    else:
        for (structure, template_text, _), (_, sent_text, local) in zip(template_xml, sent_xml, strict=True):
            same = _text_pattern(template_text, values).fullmatch(sent_text) is not None
            sent_line = _render(structure, _masked(local, sent_text))
            pair(_render(structure, template_text), sent_line, same)
    if ok:
        return None
    diff = difflib.unified_diff(template_lines, sent_lines, "recorded request", "sent request", lineterm="")
    return "\n".join(diff)


class ReplayClient(SystemUserClient):
    """A :class:`~sut_soap.SystemUserClient` answered from a recording; ``replay`` is its transport."""

    replay: ReplayTransport


class ReplayTransport:
    """A :class:`~sut_soap.Transport` that answers from a recording and never opens a socket.

    Use it as ``SystemUserClient(..., transport=ReplayTransport(...))``. ``recording`` is a
    :class:`Recording` or a directory; the keyword values fill placeholders (see
    :func:`load_recording`). The JWT of a recorded success is ``jwt=`` when given, else it is
    signed again with ``jwt_key`` from the recorded claims (times moved forward by the time
    since the recording, measured with ``clock``), or minted by :func:`mint_test_jwt` when no
    claims were recorded. Exchanges are answered in order; ``repeat=True`` answers any further
    request with the last one. ``sent`` keeps every request; ``check_request=False`` turns
    the request check off. Recorded transport failures are raised again, and an answer larger
    than ``max_response_bytes`` fails as it would over the network.
    """

    def __init__(
        self,
        recording: Recording | str | os.PathLike[str],
        *,
        jwt: str | None = None,
        jwt_key: rsa.RSAPrivateKey | None = None,
        ticket: str | None = None,
        client_secret: str | None = None,
        context_identifier: str | None = None,
        system_user_token: str | None = None,
        signed_token: str | None = None,
        check_request: bool = True,
        repeat: bool = False,
        clock: Callable[[], datetime] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        given = _substitutions(
            jwt=jwt, ticket=ticket, client_secret=client_secret, context_identifier=context_identifier,
            system_user_token=system_user_token, signed_token=signed_token,
        )
        if not isinstance(recording, Recording):
            recording = load_recording(recording, **{k.lower(): v for k, v in given.items()})
        elif given:
            recording = Recording(recording.exchanges, recording.directory, {**recording.substitutions, **given})
        self.recording = recording
        values = recording.substitutions
        for number, exchange in enumerate(recording.exchanges, start=1):
            body = exchange.response_body or b""
            if b"{{SUT_SOAP:JWT}}" in body and "JWT" not in values and jwt_key is None:
                raise ConfigurationError(
                    f"exchange {number} of the recording answers with a redacted JWT",
                    hint="pass jwt= (e.g. mint_test_jwt(key)) or jwt_key= (a test RSA key), "
                    "and give the client that key's public half as public_key=",
                )
        self._jwt_key = jwt_key
        self._check = check_request
        self._repeat = repeat
        self._clock = clock or _utc_now
        self._lock = threading.Lock()
        self._position = 0
        self.sent: list[SentRequest] = []
        self.responses: list[HttpResponse] = []
        self.mismatches: list[str] = []

    @property
    def remaining(self) -> int:
        """How many recorded exchanges have not been replayed yet."""
        return max(0, len(self.recording.exchanges) - self._position)

    def assert_all_used(self) -> None:
        """Raise :class:`ReplayMismatch` if some recorded exchanges were never requested."""
        if self.remaining:
            raise ReplayMismatch(
                f"{self.remaining} of {len(self.recording.exchanges)} recorded exchanges were never requested"
            )

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> HttpResponse:
        """Answer a POST with the next recorded exchange after checking it; never touches the network.

        Raises:
            ReplayMismatch: a request that is not a POST (give the client ``public_key=``, as
                :func:`replay_client` does, so the JWT is checked offline), one more request
                than the recording holds, or a request that differs from the recorded one.
        """
        if method != "POST":
            raise ReplayMismatch(
                f"the client tried to reach {method} {url} during a replay; "
                "give the client public_key= (replay_client does) so the JWT is checked offline"
            )
        address = url
        headers = dict(headers or {})
        body = body or b""
        exchanges = self.recording.exchanges
        with self._lock:
            sent = SentRequest(address, body, dict(headers))
            self.sent.append(sent)
            position = self._position
            if position >= len(exchanges):
                if not (self._repeat and exchanges):
                    raise ReplayMismatch(
                        f"the client sent request {position + 1}, but the recording "
                        f"{self.recording.directory} holds only {len(exchanges)} exchange(s)"
                        " (pass repeat=True to answer again with the last one)"
                    )
                position = len(exchanges) - 1
            else:
                self._position += 1
        exchange = exchanges[position]
        if self._check and exchange.request_body is not None:
            diff = _request_diff(exchange, address, body, headers, self.recording.substitutions)
            if diff is not None:
                where = f"{self.recording.directory}, exchange {position + 1}"
                message_text = f"the request the client sent does not match the recording ({where}):\n{diff}"
                self.mismatches.append(message_text)
                raise ReplayMismatch(message_text + "\n(re-record, or pass check_request=False)")
        if exchange.error is not None:
            raise _rebuild_error(exchange.error)
        values = self._values(exchange, sent)
        content = _fill_body(exchange.response_body or b"", values)
        cap = min(self.max_response_bytes, max_bytes or self.max_response_bytes)
        if len(content) > cap:
            raise ProtocolError(f"the answer is larger than {cap} bytes; reading stopped", status=exchange.status)
        response = HttpResponse(
            exchange.status or 0,
            HeaderMap({k: _fill_text(v, values) for k, v in exchange.response_headers.items()}),
            content,
            reason=exchange.reason or "",
        )
        with self._lock:
            self.responses.append(response)
        return response

    def close(self) -> None:
        """Nothing to release: a replay holds no connection."""

    def _values(self, exchange: Exchange, sent: SentRequest) -> dict[str, str]:
        values = dict(self.recording.substitutions)
        for name, value in _request_values(sent.body).items():
            values.setdefault(name, value)
        body = exchange.response_body or b""
        if "JWT" not in values and b"{{SUT_SOAP:JWT}}" in body and self._jwt_key is not None:
            values.setdefault("TICKET", _new_ticket())
            values["JWT"] = self._mint(exchange, values, self._jwt_key)
        if "TICKET" not in values:
            decoded = _decode_jwt(values.get("JWT"))
            ticket = decoded[1].get(CLAIM_TICKET) if decoded else None
            values["TICKET"] = ticket if isinstance(ticket, str) and ticket else _new_ticket()
        return values

    def _mint(self, exchange: Exchange, values: Mapping[str, str], key: rsa.RSAPrivateKey) -> str:
        if exchange.jwt_claims is None:
            return mint_test_jwt(
                key,
                context_identifier=values.get("CONTEXT_IDENTIFIER", "Cust12345"),
                ticket=values["TICKET"],
                now=self._clock(),
            )
        claims = _fill_json(dict(exchange.jwt_claims), values)
        header = _fill_json(dict(exchange.jwt_header or {"alg": "RS256", "typ": "JWT"}), values)
        if exchange.recorded_at is not None:
            claims = _shift_times(claims, round((self._clock() - exchange.recorded_at).total_seconds()))
        return _sign_jws(header, claims, key)


def _rebuild_error(error: RecordedError) -> BaseException:
    module, _, name = error.type.rpartition(".")
    if module == "sut_soap.errors":
        cls = getattr(_errors, name, None)
        if cls in (TransportError, ProtocolError):
            rebuilt: BaseException = cls(error.message, status=error.status, retryable=error.retryable)
        else:
            rebuilt = TransportError(error.message, status=error.status, retryable=error.retryable)
        return rebuilt
    # A failure recorded from an HTTP library (recordings made before the Transport seam)
    # comes back as the TransportError the default transport maps it to, naming its type only.
    if "Timeout" in name:
        return TransportError(f"the endpoint did not answer in time (recorded {name})", retryable=True)
    read = "Read" in (error.context or "") or "Protocol" in (error.context or "") or name == "ChunkedEncodingError"
    if read:
        return TransportError(f"the connection broke while reading the answer (recorded {name})", retryable=True)
    if name in ("ConnectionError", "OSError", "ConnectionResetError", "ConnectionRefusedError"):
        return TransportError(f"cannot connect to the endpoint (recorded {name})", retryable=True)
    return TransportError(f"the transport failed: {name}", retryable=False)


def replay_client(
    recording: Recording | str | os.PathLike[str],
    *,
    jwt: str | None = None,
    public_key: Any = None,
    jwt_key: rsa.RSAPrivateKey | None = None,
    ticket: str | None = None,
    client_secret: str | None = None,
    context_identifier: str | None = None,
    system_user_token: str | None = None,
    private_key: PrivateKeyInput | None = None,
    endpoint: str | None = None,
    check_request: bool = True,
    repeat: bool = False,
    **client_options: Any,
) -> ReplayClient:
    """A :class:`~sut_soap.SystemUserClient` that answers from ``recording``, fully offline.

    Without ``jwt=``, a test key (``jwt_key``, else one generated per process) signs the
    recorded claims again and the client validates with its public half. With ``jwt=``, give
    ``public_key=`` to validate it. ``client_secret`` and ``private_key`` default to stand-ins
    (the signature is not checked in a replay); a given ``client_secret``,
    ``context_identifier`` or ``system_user_token`` must match what was recorded. The endpoint
    is the recorded URL. ``client_options`` go to ``SystemUserClient`` (``clock=``,
    ``leeway=``, ...); ``client.replay`` is the :class:`ReplayTransport`.
    """
    if jwt is not None and public_key is None:
        raise ConfigurationError("jwt= needs public_key= (the public half of the key that signed it)")
    if jwt is None:
        if public_key is not None and jwt_key is None:
            raise ConfigurationError("public_key= is for validating jwt=; give jwt_key= to sign with your own key")
        jwt_key = jwt_key or _stand_in_key()
        public_key = jwt_key.public_key()
    clock: Callable[[], datetime] | None = client_options.get("clock")
    transport = ReplayTransport(
        recording,
        jwt=jwt,
        jwt_key=jwt_key,
        ticket=ticket,
        client_secret=client_secret,
        context_identifier=context_identifier,
        system_user_token=system_user_token,
        check_request=check_request,
        repeat=repeat,
        clock=clock,
    )
    if endpoint is None:
        recorded_urls = [e.url for e in transport.recording.exchanges if e.url.startswith(("http://", "https://"))]
        endpoint = recorded_urls[0] if recorded_urls else _DEFAULT_ENDPOINT
    client = ReplayClient(
        client_secret=client_secret or _STAND_IN_SECRET,
        private_key=private_key if private_key is not None else _stand_in_key(),
        endpoint=endpoint,
        public_key=public_key,
        transport=transport,
        **client_options,
    )
    client.replay = transport
    return client


# --- sut-soap replay ------------------------------------------------------------------------

_EXIT_HELP = """\
exit codes:
  0  the client would have returned a ticket (or the answer was a success and the JWT check was skipped)
  1  the service said no (IsSuccessful=false or a SOAP fault)
  2  usage or configuration (no such recording, unreadable files, bad public key)
  3  transport or protocol (recorded network failure, HTTP error, malformed or hostile answer)
  4  the JWT failed validation
"""


def _recorded_context(exchange: Exchange) -> str | None:
    value = _element_value(exchange.request_body or b"", "ContextIdentifier")
    if value and "{{SUT_SOAP:" not in value:
        return value
    ctx = (exchange.jwt_claims or {}).get(CLAIM_PREFIX + "ctx")
    return ctx if isinstance(ctx, str) and ctx and "{{SUT_SOAP:" not in ctx else None


def _describe_answer(response: Any) -> str | None:
    try:
        answer = parse_answer(response)
    except SutSoapError:
        return None
    if answer.is_successful:
        return "IsSuccessful=true, with a Token"
    return f"IsSuccessful=false, ErrorMessage {answer.error_message!r}"


def _replay_exchange(exchange: Exchange, number: int, total: int, args: argparse.Namespace, out: TextIO) -> int:
    when = exchange.recorded_at.isoformat() if exchange.recorded_at else "at an unknown time"
    print(f"exchange {number} of {total}, {exchange.source}, {when}", file=out)
    if exchange.note:
        print(f"  note: {exchange.note}", file=out)
    if exchange.error is not None:
        print(f"  {exchange.method} {exchange.url} -> the transport failed: {exchange.error.type}", file=out)
    else:
        print(f"  {exchange.method} {exchange.url} -> HTTP {exchange.status} {exchange.reason}".rstrip(), file=out)

    body = exchange.response_body or b""
    token = _element_value(body, "Token")
    redacted_jwt = b"{{SUT_SOAP:JWT}}" in body
    key = _stand_in_key()
    public_key: Any = key.public_key()
    at = exchange.recorded_at or _utc_now()  # the client validates as at this time
    jwt: str | None = None
    mode = "none"
    if redacted_jwt and exchange.jwt_claims is not None:
        mode = "claims"
        if args.public_key:
            print("  note: --public-key is not used: the recording's JWT is redacted", file=out)
    elif redacted_jwt:
        mode = "skip"
        jwt = mint_test_jwt(key, context_identifier=args.context_identifier or _recorded_context(exchange)
                            or "Cust12345", now=at)
    elif token is not None:
        if args.public_key:
            mode = "full"
            public_key = args.public_key
        else:
            mode = "skip"
    context = args.context_identifier or _recorded_context(exchange) or "Cust12345"
    transport = ReplayTransport(
        Recording((exchange,), None, {}),
        jwt=jwt,
        jwt_key=key,
        check_request=False,
        clock=lambda: at,
        max_response_bytes=DEFAULT_MAX_RESPONSE_BYTES,
    )
    try:
        with SystemUserClient(
            client_secret=_STAND_IN_SECRET,
            private_key=key,
            endpoint=_DEFAULT_ENDPOINT,
            public_key=public_key,
            transport=transport,
            clock=lambda: at,
        ) as client:
            ticket = client.authenticate(context_identifier=context, system_user_token=_STAND_IN_SYSTEM_USER_TOKEN)
    except SutSoapError as error:
        _print_answer(transport, out)
        if mode == "skip" and isinstance(error, TokenValidationError) and error.check in ("key", "signature"):
            print("  JWT: not validated: the recording holds the JWT but no --public-key was given", file=out)
            print("  result: the answer is a success; the JWT check was skipped", file=out)
            return EXIT_OK
        _print_jwt_mode(mode, at, out)
        print(f"  result: {type(error).__name__}: {error.message}", file=out)
        if error.hint:
            print(f"    check: {error.hint}", file=out)
        return exit_code_for(error)
    _print_answer(transport, out)
    _print_jwt_mode(mode, at, out)
    if mode == "skip":
        print("  result: the answer is a success; the JWT check was skipped", file=out)
        return EXIT_OK
    print(
        f"  result: SystemUserTicket ticket=7T:*** tenant={ticket.context_identifier} serial={ticket.serial} "
        f"webapi_url={ticket.webapi_url} expires_at={ticket.expires_at.isoformat()}",
        file=out,
    )
    return EXIT_OK


def _print_answer(transport: ReplayTransport, out: TextIO) -> None:
    described = _describe_answer(transport.responses[-1]) if transport.responses else None
    if described is not None:
        print(f"  answer: {described}", file=out)


def _print_jwt_mode(mode: str, at: datetime, out: TextIO) -> None:
    if mode == "claims":
        print(
            "  JWT: redacted in the recording; its recorded header and claims were signed again with a "
            f"stand-in key (kid and signature not checked) and validated as at {at.isoformat()}",
            file=out,
        )
    elif mode == "full":
        print(f"  JWT: validated with --public-key as at {at.isoformat()}", file=out)
    elif mode == "skip":
        print("  JWT: not validated: the recording's JWT is redacted and its claims were not recorded", file=out)


def replay_main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """``sut-soap replay DIR [--public-key FILE]``: what the client would have done, offline."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = argparse.ArgumentParser(
        prog="sut-soap replay",
        description="Run a recorded exchange through the client's parsing and validation offline and print "
        "what the client would have returned or raised. Nothing is sent anywhere.",
        epilog=_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", metavar="DIR", help="a recording directory (NN-exchange.json files)")
    parser.add_argument(
        "--public-key", metavar="FILE",
        help="PEM key, certificate or JWKS that signed the JWT, for a recording that holds the JWT itself",
    )
    parser.add_argument(
        "--context-identifier", metavar="C",
        help="the tenant the client asked for, when the recording has it redacted (default: as recorded)",
    )
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code in (0, None) else EXIT_USAGE
    try:
        recording = load_recording(args.directory)
        code = EXIT_OK
        total = len(recording.exchanges)
        print(f"replaying {args.directory}: {total} exchange(s), offline", file=out)
        for number, exchange in enumerate(recording.exchanges, start=1):
            code = _replay_exchange(exchange, number, total, args, out)
    except SutSoapError as error:
        print(f"sut-soap replay: {error.message}", file=err)
        if error.hint:
            print(f"  check: {error.hint}", file=err)
        return exit_code_for(error)
    return code


# --- the secret scan ------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretFinding:
    """A secret-looking value in a file; ``excerpt`` shows only its first characters."""

    path: Path
    line: int
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} ({self.excerpt})"


_PEM_PRIVATE = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_XML_PRIVATE = re.compile(r"<(?:[\w.-]+:)?(D|P|Q|DP|DQ|InverseQ)>\s*[A-Za-z0-9+/=\s]{40,}</(?:[\w.-]+:)?\1>")
_SCAN_SIGNED = re.compile(r"\.[0-9]{12}\.[A-Za-z0-9+/]{100,}={0,2}")


def scan_for_secrets(
    root: str | os.PathLike[str], *, allowed_keys: Iterable[str | os.PathLike[str]] = ()
) -> list[SecretFinding]:
    """Find secret-looking values in every file under ``root``.

    Flags JWTs (three base64url segments whose header is JSON with ``alg``), ``7T:`` tickets,
    signed system tokens, PEM private keys, ``<RSAKeyValue>`` private members and DER private
    keys. Files in ``allowed_keys`` (documented test keys) may hold private keys.
    """
    allowed = {Path(p).resolve() for p in allowed_keys}
    findings: list[SecretFinding] = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        text = data.decode("utf-8", errors="replace")
        is_key_file = path.resolve() in allowed

        def flag(kind: str, match: re.Match[str], path: Path = path, text: str = text) -> None:
            line = text.count("\n", 0, match.start()) + 1
            findings.append(SecretFinding(path, line, kind, match.group(0)[:8] + "..."))

        for start, _ in _jwt_spans(text):
            line = text.count("\n", 0, start) + 1
            findings.append(SecretFinding(path, line, "JWT", text[start : start + 8] + "..."))
        for match in _TICKET_SHAPE.finditer(text):
            flag("7T: ticket", match)
        for match in _SCAN_SIGNED.finditer(text):
            flag("signed system token", match)
        if is_key_file:
            continue
        for match in _PEM_PRIVATE.finditer(text):
            flag("PEM private key", match)
        xml_key = _XML_PRIVATE.search(text)
        if xml_key is not None:
            flag("RSAKeyValue private key", xml_key)
        if b"\x00" in data[:4096] or text.count("\ufffd") > 0:
            try:
                serialization.load_der_private_key(data, password=None)
            except TypeError:  # an encrypted DER private key
                findings.append(SecretFinding(path, 1, "DER private key (encrypted)", "binary"))
            except ValueError:
                pass
            else:
                findings.append(SecretFinding(path, 1, "DER private key", "binary"))
    return findings
