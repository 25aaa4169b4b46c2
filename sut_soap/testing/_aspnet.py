"""The REST side of the emulator: reading a JSON request and writing answers as an ASP.NET Core API does.

What the emulator decides (faults, the checks of the exchange, the JWT) is decided once, in
:class:`~sut_soap.testing.emulator.Emulator`; this module only reads the REST request into the
same request value the SOAP side reads, and writes the outcome as JSON. As ASP.NET Core's
model binding does: member names match without regard to case, a member given twice keeps its
last value, ``ReturnTokenType`` is the enum by name (any case) or number and defaults to
``Jwt``; a body that is not a JSON object of strings gets a 400 ProblemDetails, a content type
other than ``application/json`` a 415.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sut_soap._answer import utf8_media_type
from sut_soap.testing._wcf import _Reply, _Request

__all__: list[str] = []

_JSON = "application/json; charset=utf-8"
_PROBLEM = "application/problem+json; charset=utf-8"
_TOKEN_TYPES = {"jwt": "Jwt", "saml": "Saml", 0: "Jwt", 1: "Saml"}
_STRING_MEMBERS = {"signedsystemtoken": "SignedSystemToken", "applicationtoken": "ApplicationToken",
                   "contextidentifier": "ContextIdentifier"}
_TITLES = {
    400: ("https://tools.ietf.org/html/rfc9110#section-15.5.1", "One or more validation errors occurred."),
    415: ("https://tools.ietf.org/html/rfc9110#section-15.5.16", "Unsupported Media Type"),
    500: ("https://tools.ietf.org/html/rfc9110#section-15.6.1", "An error occurred while processing your request."),
}


def _problem(status: int, errors: dict[str, list[str]] | None = None, detail: str | None = None) -> _Reply:
    """An RFC 9457 ProblemDetails answer, shaped as ASP.NET Core writes one."""
    kind, title = _TITLES[status]
    document: dict[str, Any] = {"type": kind, "title": title, "status": status}
    if detail is not None:
        document["detail"] = detail
    if errors is not None:
        document["errors"] = errors
    document["traceId"] = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"
    return _Reply(status, json.dumps(document).encode("utf-8"), _PROBLEM)


def _invalid(member: str, text: str) -> _Reply:
    return _problem(400, {member: [text]})


def _json_media_type_ok(content_type: str | None) -> bool:
    """Whether ASP.NET Core's JSON input formatter takes a body of this content type."""
    media = utf8_media_type(content_type)
    return media is not None and (media in ("application/json", "text/json") or media.endswith("+json"))


def _unsupported_media_type() -> _Reply:
    return _problem(415)


def _parse_json_request(body: bytes) -> _Request | _Reply:
    """The REST request as the SOAP side's request value, or the 400 ASP.NET Core gives one it cannot bind."""
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _invalid("$", "The JSON value could not be converted to AuthenticationRequest.")
    if not isinstance(document, dict):
        return _invalid("$", "The JSON value could not be converted to AuthenticationRequest.")
    values: dict[str, str | None] = dict.fromkeys(_STRING_MEMBERS.values())
    token_type = "Jwt"  # noqa: S105 -- the enum's first value, what an absent member binds to
    for key, value in document.items():
        lowered = key.lower() if isinstance(key, str) else key
        if lowered == "returntokentype":
            kind = None
            if isinstance(value, str):
                kind = _TOKEN_TYPES.get(value.lower())
            elif isinstance(value, int) and not isinstance(value, bool):
                kind = _TOKEN_TYPES.get(value)
            if kind is None:
                return _invalid("$.ReturnTokenType", "The JSON value could not be converted to TokenType.")
            token_type = kind
            continue
        member = _STRING_MEMBERS.get(lowered)
        if member is None:
            continue
        if value is not None and not isinstance(value, str):
            return _invalid(f"$.{member}", "The JSON value could not be converted to System.String.")
        values[member] = value
    return _Request(
        application_token=values["ApplicationToken"],
        context_identifier=values["ContextIdentifier"],
        signed_token=values["SignedSystemToken"],
        token_type=token_type,
    )


def _json_answer(token: str | None, error_message: str | None) -> bytes:
    """The AuthenticationResponse as JSON, members in the order of the contract."""
    document = {"IsSuccessful": token is not None, "Token": token, "ErrorMessage": error_message}
    return json.dumps(document).encode("utf-8")
