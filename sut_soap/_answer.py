"""What an exchange's answer means, whatever the protocol carried it: the value both read it into.

The SOAP layer (:mod:`sut_soap.soap`) and the REST layer (:mod:`sut_soap.rest`) each turn an HTTP
response into an :class:`Answer` or raise; what an HTTP status means when the body holds no
usable answer (a redirect, an error page, ``Retry-After``) is decided here, once, for both. No
I/O, no XML or JSON parsing, no third-party import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime

from ._clock import SYSTEM_CLOCK
from ._text import sanitise
from .contract import SERVICE_PATH
from .errors import TransportError

__all__ = ["MAX_TOKEN_CHARS", "Answer", "parse_retry_after", "utf8_media_type"]

MAX_TOKEN_CHARS = 16 * 1024
_EXCERPT_CHARS = 200
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_TAG = re.compile(r"<[^>]{0,300}>")


@dataclass(frozen=True)
class Answer:
    """The three fields of an AuthenticationResponse (``token`` is the JWT: a secret).

    Attributes:
        is_successful: the answer's ``IsSuccessful`` (``true``/``1`` or ``false``/``0``).
        token: the JWT, stripped; None when absent, empty or ``xsi:nil``. Always set when
            ``is_successful`` is true. Not validated here: see :mod:`sut_soap.tokens`.
        error_message: SuperOffice's ``ErrorMessage``, sanitised (one line, no control
            characters, the given secrets and the token replaced by ``***``), or None.
    """

    is_successful: bool
    token: str | None
    error_message: str | None

    def __repr__(self) -> str:
        token = "None" if self.token is None else "'***'"
        return f"Answer(is_successful={self.is_successful}, token={token}, error_message={self.error_message!r})"


def _excerpt(body: bytes, secrets: Iterable[str]) -> str:
    """The start of ``body`` as one line of text without markup or secrets, for an error message."""
    text = body[:4096].decode("utf-8", errors="replace")
    return sanitise(_TAG.sub(" ", text), secrets=secrets, limit=_EXCERPT_CHARS)


_RETRY_AFTER_SECONDS = re.compile(r"[0-9]{1,20}")


def _header(headers: object, name: str) -> str | None:
    if not isinstance(headers, Mapping) or not headers:
        return None
    value = headers.get(name)
    if value is None and not hasattr(headers, "lower_items"):  # a plain dict from a caller's transport
        lowered = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None)
    return value if isinstance(value, str) else None


def utf8_media_type(content_type: str | None) -> str | None:
    """The media type of a ``Content-Type`` value, lower-cased, if its ``charset`` is UTF-8 or absent; else None."""
    if not content_type:
        return None
    media, *params = (part.strip() for part in content_type.split(";"))
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return None
    return media.lower()


def parse_retry_after(value: str | None, *, date: str | None = None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP-date); None if unusable.

    An HTTP-date is measured against the answer's own ``Date`` when it has one, so a skewed local
    clock does not stretch or shrink the wait; a date in the past means 0.

    Args:
        value: the ``Retry-After`` header, or None.
        date: the answer's ``Date`` header, the reference for an HTTP-date.
        now: Unix seconds to measure an HTTP-date against when ``date`` is missing or
            unusable; default: the system clock.

    Returns:
        Seconds, >= 0; None when ``value`` is missing or is neither up to 20 digits nor an
        HTTP-date. Never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if _RETRY_AFTER_SECONDS.fullmatch(text):
        return float(text)
    when = _http_date(text)
    if when is None:
        return None
    reference = _http_date(date) if date is not None else None
    if reference is None:
        reference = SYSTEM_CLOCK.wall() if now is None else now
    return max(0.0, when - reference)


def _http_date(text: str) -> float | None:
    if not text or len(text) > 64:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    # Aware, years 1..9999, offsets under a day: timestamp() is timedelta arithmetic and cannot fail.
    return moment.timestamp()


def _status_error(
    status: int,
    body: bytes,
    secrets: Iterable[str],
    what: str,
    headers: Mapping[str, str] | None = None,
    *,
    path: str = SERVICE_PATH,
) -> TransportError:
    """The error for an HTTP ``status`` whose body is no usable answer; ``path`` is the service's, for the 404 hint.

    Retryable for 429, 502, 503 and 504, with ``retry_after`` from the answer's ``Retry-After``.
    """
    excerpt = _excerpt(body, secrets) if body.strip() else ""
    message = f"HTTP {status} from the endpoint, {what}"
    if excerpt:
        message += f": {excerpt}"
    hint = None
    if status in (401, 403):
        hint = "that the endpoint is the PartnerSystemUserService and that no proxy requires authentication"
    elif status == 404:
        hint = f"the endpoint URL (…{path}) and the environment"
    elif 300 <= status < 400:
        hint = "the endpoint URL: redirects are not followed so the client secret is never re-sent"
    retry_after = parse_retry_after(_header(headers, "Retry-After"), date=_header(headers, "Date"))
    return TransportError(
        message,
        status=status,
        excerpt=excerpt,
        hint=hint,
        retryable=status in _RETRYABLE_STATUS,
        retry_after=retry_after,
    )
