"""Finding values in raw request and answer bytes, by element and by shape (JWT, ticket, signed token)."""

from __future__ import annotations

import base64
import binascii
import functools
import html
import json
import re
from typing import Any

from sut_soap.errors import (
    SutSoapError,
)
from sut_soap.tokens import decode_unverified

__all__: list[str] = []

_TICKET_SHAPE = re.compile(r"7T:[A-Za-z0-9+/=_-]{10,}")
# A JWT header is a JSON object, so its base64url starts with "e" ("{" is 0x7B).
_JWT_SHAPE = re.compile(
    r"(?<![A-Za-z0-9_-])(e[A-Za-z0-9_-]{12,})\.([A-Za-z0-9_-]{2,})\.([A-Za-z0-9_-]*)(?![A-Za-z0-9_-])"
)
_JWT_FRAGMENT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{16,}(?:\.[A-Za-z0-9_-]*){0,2}")
_SIGNED_CORE = re.compile(r"\.[0-9]{12}\.[A-Za-z0-9+/]{40,}={0,2}")
_TOKEN_STOP = frozenset(" \t\r\n<>\"'&")



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


def _json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object (a REST request or answer), or None when it is not one."""
    head = body[:8].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"{"):
        return None
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _element_value(body: bytes, local_name: str) -> str | None:
    """The text of the first element with this local name, or of a REST body's member of that name (any case)."""
    document = _json_object(body)
    if document is not None:
        lowered = local_name.lower()
        value = next((v for k, v in document.items() if k.lower() == lowered), None)
        return value.strip() or None if isinstance(value, str) else None
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


