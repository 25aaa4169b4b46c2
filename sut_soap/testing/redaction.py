"""Redaction: every secret of an exchange replaced by a placeholder before it is saved."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from xml.sax.saxutils import escape as _xml_escape

from sut_soap.contract import CLAIM_PREFIX, CLAIM_TICKET
from sut_soap.testing._raw import (
    _JWT_FRAGMENT,
    _TICKET_SHAPE,
    _decode_jwt,
    _element_pattern,
    _element_value,
    _jwt_spans,
    _latin,
    _request_values,
    _signed_spans,
    _unclosed_pattern,
    _utf8_as_latin,
)
from sut_soap.testing.exchanges import _PLACEHOLDER, Exchange, placeholder

__all__ = ["redact_exchange"]


_MIN_EXACT = 6
_DROP_HEADERS = frozenset(
    {
        "connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "te",
        "trailer", "upgrade", "set-cookie", "cookie", "authorization", "proxy-authorization",
        "proxy-authenticate", "proxy-connection",
    }
)
_SECRET_ELEMENTS = {"ApplicationToken": "CLIENT_SECRET", "SignedSystemToken": "SIGNED_TOKEN", "Token": "JWT"}


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
    found = _request_values(exchange.request_body or b"")
    known, jwt_header, jwt_claims = _values_of(exchange, found)
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
    # As written raw, in XML text or attributes, and inside a JSON string (REST bodies).
    out = [value, _xml_escape(value), _xml_escape(value, {'"': "&quot;", "'": "&apos;"}), json.dumps(value)[1:-1],
           json.dumps(value, ensure_ascii=False)[1:-1]]
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


def _values_of(
    exchange: Exchange, found: dict[str, str]
) -> tuple[list[tuple[str, str]], Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """The secrets the exchange itself carries, and its JWT header and claims with theirs as placeholders.

    ``found`` holds the values read from the request envelope. The JWT in the answer is known
    whole; its ticket and system user token claims are known and replaced in the claims.
    """
    known = [(value, name) for name, value in found.items() if name != "CONTEXT_IDENTIFIER"]
    token = _element_value(exchange.response_body or b"", "Token")
    if token is not None and "{{SUT_SOAP:" not in token:
        known.append((token, "JWT"))
    decoded = _decode_jwt(token)
    if decoded is None:
        return known, exchange.jwt_header, exchange.jwt_claims
    jwt_header, claims = decoded
    jwt_claims = dict(claims)
    for claim, name in ((CLAIM_TICKET, "TICKET"), (CLAIM_PREFIX + "system_token", "SYSTEM_USER_TOKEN")):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            known.append((value, name))
            jwt_claims[claim] = placeholder(name)
    return known, jwt_header, jwt_claims
