"""RecordingTransport and its asyncio twin: record what a client sends and receives, for saving as a recording."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sut_soap import __version__
from sut_soap._clock import SYSTEM_CLOCK, as_clock
from sut_soap._options import make_async_transport
from sut_soap.errors import (
    ConfigurationError,
    SutSoapError,
)
from sut_soap.testing.exchanges import Exchange, RecordedError
from sut_soap.testing.redaction import redact_exchange
from sut_soap.testing.storage import _prepare_directory, _refuse_existing, _write_exchange, save_recording
from sut_soap.transport import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
    AsyncTransport,
    HttpTransport,
    Response,
    Transport,
    acall_transport,
    call_transport,
)

if TYPE_CHECKING:
    import requests

__all__ = ["AsyncRecordingTransport", "RecordingTransport"]


_SOURCE = f"recorded by sut_soap.testing.RecordingTransport (sut-soap {__version__})"
_ASYNC_SOURCE = f"recorded by sut_soap.testing.AsyncRecordingTransport (sut-soap {__version__})"


def _qualified(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _recorded_error(exc: BaseException) -> RecordedError:
    if isinstance(exc, SutSoapError):
        return RecordedError(
            type=_qualified(exc),
            message=exc.message,
            status=getattr(exc, "status", None),
            retryable=exc.retryable,
            host=getattr(exc, "host", None),
            phase=getattr(exc, "phase", None),
        )
    context = exc.__context__ or exc.__cause__
    return RecordedError(
        type=_qualified(exc),
        message=str(exc)[:500],
        context=None if context is None else _qualified(context),
    )



class _Recorder:
    """The recording :class:`RecordingTransport` and :class:`AsyncRecordingTransport` share; see them for the arguments.

    The subclasses do the HTTP through their inner transport; this class turns each POST into
    an :class:`Exchange`, keeps it and, with a directory, writes it redacted.
    """

    _inner: object

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        *,
        overwrite: bool,
        client_secret: str | None,
        system_user_token: str | None,
        context_identifier: str | None,
        redact_context_identifier: bool,
        note: str,
        clock: Callable[[], datetime] | None,
        source: str,
    ) -> None:
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None and not overwrite:
            _refuse_existing(self.directory)
        self._overwrite = overwrite
        self._note = note
        self._source = source
        self._prepared = False
        self._clock = as_clock(clock).now
        self._lock = threading.Lock()
        self._redaction: dict[str, Any] = {
            "client_secret": client_secret,
            "system_user_token": system_user_token,
            "context_identifier": context_identifier,
            "redact_context_identifier": redact_context_identifier,
        }
        self.exchanges: list[Exchange] = []
        self.saved: list[Path] = []

    def _begin(self, url: str, body: bytes | None, headers: Mapping[str, str] | None) -> Exchange:
        """The exchange of a POST about to be sent: its request and the time."""
        return Exchange(
            url=url, request_body=body or b"", request_headers=dict(headers or {}), recorded_at=self._clock(),
            source=self._source, note=self._note,
        )

    @staticmethod
    def _failed(base: Exchange, exc: Exception) -> Exchange:
        return replace(base, error=_recorded_error(exc))

    @staticmethod
    def _answered(base: Exchange, response: Response) -> Exchange:
        return replace(
            base,
            status=response.status_code,
            reason=str(getattr(response, "reason", "") or ""),
            response_headers=dict(response.headers),
            response_body=response.content or b"",
        )

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

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Write every exchange recorded so far to ``directory``, redacted; return the files."""
        with self._lock:
            exchanges = list(self.exchanges)
        return save_recording(directory, exchanges, overwrite=overwrite, **self._redaction)


class RecordingTransport(_Recorder):
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
        super().__init__(
            directory, overwrite=overwrite, client_secret=client_secret, system_user_token=system_user_token,
            context_identifier=context_identifier, redact_context_identifier=redact_context_identifier,
            note=note, clock=clock, source=_SOURCE,
        )

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
        base = self._begin(url, body, headers)
        try:
            response = call_transport(
                self._inner, method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes
            )
        except Exception as exc:
            self._record(self._failed(base, exc))
            raise
        self._record(self._answered(base, response))
        return response

    def close(self) -> None:
        """Close the inner transport (a session you passed stays open)."""
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()


class AsyncRecordingTransport(_Recorder):
    """An :class:`~sut_soap.AsyncTransport` that records every exchange (each POST), failures included.

    The asyncio twin of :class:`RecordingTransport`, for
    ``AsyncSystemUserClient(..., transport=AsyncRecordingTransport("tests/recordings/ok"))``:
    the same recording format, redaction, options and attributes (``exchanges``, ``saved``,
    :meth:`save`), so what it records replays in either client (:func:`replay_client`). It
    sends with an :class:`~sut_soap.transport.AiohttpTransport` (the async client's default,
    ``sut-soap[async]``) made with ``timeout``, ``deadline`` and ``max_response_bytes``, or
    through ``transport``, any :class:`~sut_soap.AsyncTransport` of yours. With a
    ``directory``, each exchange is written, redacted, in a worker thread before its answer
    is returned, so the event loop never waits for the disk.

    Raises:
        ConfigurationError: ``transport`` is not an :class:`~sut_soap.AsyncTransport`; no
            ``transport`` and aiohttp is not installed; a ``directory`` that holds a recording
            without ``overwrite=True``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
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
        transport: AsyncTransport | None = None,
    ) -> None:
        if transport is None:
            transport = _aiohttp_transport(timeout, deadline, max_response_bytes)
        else:  # checked as the async client checks it (the other arguments are for a default it does not make)
            transport = make_async_transport(
                transport, timeout=DEFAULT_TIMEOUT, deadline=DEFAULT_DEADLINE, clock=SYSTEM_CLOCK
            )
        self._inner: AsyncTransport = transport
        super().__init__(
            directory, overwrite=overwrite, client_secret=client_secret, system_user_token=system_user_token,
            context_identifier=context_identifier, redact_context_identifier=redact_context_identifier,
            note=note, clock=clock, source=_ASYNC_SOURCE,
        )

    @property
    def inner(self) -> AsyncTransport:
        """The transport that does the HTTP."""
        return self._inner

    async def request(
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
            return await acall_transport(
                self._inner, method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes
            )
        base = self._begin(url, body, headers)
        try:
            response = await acall_transport(
                self._inner, method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes
            )
        except Exception as exc:
            await self._keep(self._failed(base, exc))
            raise
        await self._keep(self._answered(base, response))
        return response

    async def _keep(self, exchange: Exchange) -> None:
        if self.directory is None:
            self._record(exchange)
        else:
            await asyncio.to_thread(self._record, exchange)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()


def _aiohttp_transport(
    timeout: float | tuple[float, float], deadline: float | None, max_response_bytes: int
) -> AsyncTransport:
    """The async client's default transport, for recording."""
    try:
        from sut_soap.transport import AiohttpTransport  # noqa: PLC0415 -- aiohttp loads only when recording async
    except ImportError:
        raise ConfigurationError(
            "AsyncRecordingTransport's default transport needs aiohttp, which is not installed",
            hint="pip install 'sut-soap[async]', or pass transport= (any sut_soap.AsyncTransport)",
        ) from None
    transport: AsyncTransport = AiohttpTransport(
        timeout=timeout, deadline=deadline, max_response_bytes=max_response_bytes
    )
    return transport
