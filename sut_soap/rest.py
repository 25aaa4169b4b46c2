"""The REST form of the exchange: request bytes out, answer bytes in, no I/O.

SuperOffice documents a second way to make the same exchange ("How to get a system user ticket
credential"): ``POST https://{env}.superoffice.com/Login/api/PartnerSystemUser/Authenticate``
with ``Content-Type: application/json`` and ``Accept: application/json``, the JSON body

.. code-block:: json

    {
        "SignedSystemToken": "<token>.<yyyyMMddHHmm>.<base64 signature>",
        "ApplicationToken": "<client secret>",
        "ContextIdentifier": "Cust12345",
        "ReturnTokenType": "JWT"
    }

and an answer ``{"IsSuccessful": ..., "Token": ..., "ErrorMessage": ...}``. :func:`build_request`
writes that body byte for byte as the documentation shows it (member order, four-space
indent, ``"JWT"``), the values as UTF-8. :func:`parse_answer` reads the answer into the same
:class:`~sut_soap._answer.Answer` the SOAP layer returns, so the client decides what happens
next (rejection, JWT validation, the ticket) in one place for both protocols.

The answer is read as strictly as a SOAP answer: a redirect, an error status and
``Retry-After`` mean what they mean for SOAP (:func:`sut_soap._answer._status_error`, shared);
an HTTP 200 must be labelled ``application/json`` (UTF-8 or no charset), hold at most
:data:`MAX_ANSWER_BYTES` of UTF-8 (one leading UTF-8 byte-order mark is ignored, as the XML
parser of the SOAP side ignores it; any other encoding is refused) and parse as one JSON
object with no member named twice at any depth, no ``NaN``/``Infinity`` literals, no number
longer than 32 characters or outside a double's range, and no deeper nesting than Python's
``json`` accepts. ``IsSuccessful`` must be a JSON ``true`` or ``false``; ``Token`` and
``ErrorMessage`` a string or ``null``. Member names are matched without regard to case (the
.NET deserialisers SuperOffice's own packages use do the same, and ASP.NET answers in camelCase
by default), so ``Token`` and ``token`` in one answer are duplicates. Other members are
ignored. This module imports neither zeep nor the HTTP library.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._answer import MAX_TOKEN_CHARS, Answer, _excerpt, _header, _status_error, utf8_media_type
from ._text import sanitise
from .contract import PROBE_VALUE, REST_PATH, REST_TOKEN_TYPE
from .errors import ConfigurationError, ProtocolError

if TYPE_CHECKING:  # the transport package imports the HTTP library; this module never does
    from .transport import Response

__all__ = [
    "MAX_ANSWER_BYTES",
    "REST_HEADERS",
    "build_request",
    "parse_answer",
    "probe_request",
]

#: The HTTP headers of every REST request, as SuperOffice's documentation shows them.
REST_HEADERS: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"), ("Accept", "application/json"))
#: The largest answer body read (a JWT is at most 16 KiB; the rest is three member names).
MAX_ANSWER_BYTES = 64 * 1024
_MAX_NUMBER_CHARS = 32
_BOM = b"\xef\xbb\xbf"
_MEMBERS = {"issuccessful": "IsSuccessful", "token": "Token", "errormessage": "ErrorMessage"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def build_request(*, signed_token: str, client_secret: str, context_identifier: str) -> tuple[bytes, dict[str, str]]:
    """Return the REST request body (UTF-8 JSON) and its HTTP headers (Content-Type, Accept).

    The body carries the client secret and the signed token: it is a secret as a whole. The
    headers are a new dict on each call.

    Raises:
        ConfigurationError: a value that is not a string, or one UTF-8 cannot carry (a lone
            surrogate); the value is not in the message.
    """
    values = (signed_token, client_secret, context_identifier)
    if any(type(value) is not str for value in values):
        raise ConfigurationError("cannot build the REST request: every value must be a string")
    document = {
        "SignedSystemToken": signed_token,
        "ApplicationToken": client_secret,
        "ContextIdentifier": context_identifier,
        "ReturnTokenType": REST_TOKEN_TYPE,
    }
    try:
        body = json.dumps(document, indent=4, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError("cannot build the REST request: a value holds a lone surrogate") from None
    return body, dict(REST_HEADERS)


def probe_request() -> tuple[bytes, dict[str, str]]:
    """A REST request whose every value is :data:`~sut_soap.contract.PROBE_VALUE`, and its headers.

    No tenant accepts it, so sending it shows how the REST endpoint answers without sending a
    client secret, a system user token or a signature. The command line's ``doctor`` sends it.
    """
    return build_request(
        signed_token=f"{PROBE_VALUE}.000000000000.AAAA", client_secret=PROBE_VALUE, context_identifier=PROBE_VALUE
    )


class _Refused(Exception):
    """A JSON construct the answer may not hold; the message names the construct, never its text."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        counts = Counter(name for name, _ in pairs)
        twice = max(counts, key=counts.__getitem__)
        raise _Refused(f"the answer names the member {sanitise(twice, limit=40)!r} more than once")
    return document


def _integer(text: str) -> int:
    if len(text) > _MAX_NUMBER_CHARS:
        raise _Refused(f"the answer holds a number longer than {_MAX_NUMBER_CHARS} characters")
    return int(text)


def _real(text: str) -> float:
    if len(text) > _MAX_NUMBER_CHARS:
        raise _Refused(f"the answer holds a number longer than {_MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("the answer holds a number outside a double's range")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"the answer holds {name}, which JSON does not allow")


def _is_json(content_type: str | None) -> bool:
    return utf8_media_type(content_type) == "application/json"


def parse_answer(response: Response, *, secrets: Iterable[str] = ()) -> Answer:
    """Turn the HTTP response of a REST exchange into an :class:`~sut_soap._answer.Answer`, or raise.

    Args:
        response: the answer as a :class:`~sut_soap.Transport` returned it.
        secrets: values to replace by ``***`` in any excerpt or message (the client secret,
            the signed token, the system user token).

    Returns:
        The :class:`~sut_soap._answer.Answer`, as :func:`sut_soap.soap.parse_answer` returns
        it: ``is_successful`` with a ``token``, or not with an ``error_message``. A rejection
        is returned, not raised: the client raises it.

    Raises:
        TransportError: a 3xx, or any status but 200 (``retryable``, and ``retry_after`` when
            sent, for 429, 502, 503 and 504), as for SOAP.
        ProtocolError: an HTTP 200 whose body is empty, not labelled JSON, too large, not
            UTF-8, not one well-formed JSON object within the limits in the module docstring,
            or whose members are duplicated, missing or of the wrong type; ``IsSuccessful``
            true without a Token, or a Token over 16 KiB.
    """
    secrets = tuple(secrets)
    status = int(response.status_code)
    body = response.content or b""
    headers = getattr(response, "headers", None)
    if 300 <= status < 400:
        raise _status_error(status, b"", secrets, "a redirect, which is refused", path=REST_PATH)
    if status != 200:
        what = "with an empty body" if not body.strip() else "not a successful REST answer"
        raise _status_error(status, body, secrets, what, headers, path=REST_PATH)
    if not body.strip():
        raise ProtocolError("HTTP 200 with an empty body: no JSON answer", status=status)
    content_type = _header(headers, "Content-Type")
    if not _is_json(content_type):
        shown = sanitise(content_type, limit=60) if content_type else "none"
        raise ProtocolError(
            f"the answer is not labelled JSON (Content-Type {shown})", status=status, excerpt=_excerpt(body, secrets),
            hint="that the endpoint is SuperOffice's REST PartnerSystemUser/Authenticate and no proxy rewrote it",
        )
    document = _document(body, status)
    return _members(document, status, secrets)


def _document(body: bytes, status: int) -> dict[str, Any]:
    """The answer's one JSON object, read within the limits in the module docstring."""
    if len(body) > MAX_ANSWER_BYTES:
        raise ProtocolError(f"the JSON answer is larger than {MAX_ANSWER_BYTES} bytes", status=status)
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("the JSON answer is not UTF-8", status=status) from None
    try:
        document = json.loads(
            text, object_pairs_hook=_object, parse_int=_integer, parse_float=_real, parse_constant=_constant
        )
    except _Refused as refused:
        raise ProtocolError(str(refused), status=status) from None
    except RecursionError:
        raise ProtocolError("the JSON answer is nested too deeply", status=status) from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"the answer is not well-formed JSON (line {exc.lineno}, column {exc.colno})", status=status
        ) from None
    if not isinstance(document, dict):
        raise ProtocolError(f"the JSON answer is {_kind(document)} instead of an object", status=status)
    return document


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a number"


def _members(document: dict[str, Any], status: int, secrets: tuple[str, ...]) -> Answer:
    """IsSuccessful, Token and ErrorMessage of the answer object, checked as the module docstring says."""
    fields: dict[str, Any] = {}
    for key, value in document.items():
        name = _MEMBERS.get(key.lower())
        if name is None:
            continue
        if name in fields:
            raise ProtocolError(f"the JSON answer has more than one {name} (names differ only in case)", status=status)
        fields[name] = value

    flag = fields.get("IsSuccessful")
    if not isinstance(flag, bool):
        shown = "no IsSuccessful" if flag is None else f"IsSuccessful as {_kind(flag)}"
        raise ProtocolError(f"the JSON answer has {shown}; it must be true or false", status=status)

    token: str | None = None
    raw_token = fields.get("Token")
    if raw_token is not None:
        if not isinstance(raw_token, str):
            raise ProtocolError(f"the JSON answer's Token is {_kind(raw_token)}, not a string", status=status)
        token = raw_token.strip() or None
        if token is not None and len(token) > MAX_TOKEN_CHARS:
            raise ProtocolError(f"the Token is longer than {MAX_TOKEN_CHARS} characters", status=status)

    message: str | None = None
    raw_message = fields.get("ErrorMessage")
    if raw_message is not None:
        if not isinstance(raw_message, str):
            raise ProtocolError(f"the JSON answer's ErrorMessage is {_kind(raw_message)}, not a string", status=status)
        text = _SURROGATE.sub("\ufffd", raw_message)  # "\ud800" is valid JSON; no terminal can print it
        message = sanitise(text, secrets=(*secrets, *([token] if token else []))) or None

    if flag and token is None:
        raise ProtocolError("IsSuccessful is true but the answer carries no Token", status=status)
    return Answer(is_successful=flag, token=token, error_message=message)
