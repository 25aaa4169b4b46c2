"""The tenant's state: SuperOffice's tenant state API, read through the client's transport and cached.

SuperOffice asks applications to check a tenant's state before calling its API, because a
tenant moves between hosts (``sod2`` today, ``sod3`` tomorrow) and is sometimes offline
("Check tenant status" in SuperOffice's developer documentation):

``GET https://{env}.superoffice.com/api/state/{ContextIdentifier}`` answers JSON such as

.. code-block:: json

    {"ContextIdentifier": "Cust12345", "Endpoint": "https://online2.superoffice.com/Cust12345",
     "State": "Running", "IsRunning": true, "ValidUntil": "2026-02-23T09:52:01.9342965Z",
     "Api": "https://online2.superoffice.com/Cust12345/api"}

``IsRunning`` is true for ``Running`` and ``OnlineMaintenance``; the other documented states
(``Unknown``, ``Provisioning``, ``Deleted``, ``Suspended``, ``OfflineMaintenance``,
``ProvisioningFailed``, ``Deleting``, ``DeleteFailed``, ``MigrationPending``) mean its API is
not available. ``ValidUntil`` is when to ask again; until then the answer is kept.

:class:`TenantStates` is the sync client's reader (:class:`AsyncTenantStates` the async
client's, the same memory and parsing, the GET awaited): it sends the GET through the client's
:class:`~sut_soap.Transport` (the one network seam: the same deadline, size cap and TLS rules as
an exchange), reads the answer as strictly as the REST exchange's (:mod:`sut_soap.rest`: an
HTTP 200 labelled JSON, one JSON object within the same limits, member names matched without
regard to case), and keeps one :class:`TenantState` per tenant until its ``ValidUntil`` (at most
:data:`MAX_STATE_SECONDS`, at most :data:`DEFAULT_MAX_STATES` tenants, on the client's clock).
An answer is refused with a :class:`~sut_soap.errors.ProtocolError` naming what to check when
it is not such an object, a member has the wrong type, its ``ContextIdentifier`` is not the
tenant asked for, ``ValidUntil`` has no time zone, or a URL it gives is not https (http only on
loopback) or points outside the host family the state came from (``*.superoffice.com`` for
SuperOffice; the same loopback host for the emulator): the state decides where the auth object
of :meth:`~sut_soap.SystemUserClient.auth` sends the ticket and the client secret.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from . import _deadline, _fork
from ._answer import _header, _status_error, utf8_media_type
from ._clock import Clock
from ._text import sanitise
from .contract import STATE_PATH
from .environments import ENVIRONMENTS, is_loopback_host
from .errors import ProtocolError, TenantNotRunningError, TransportError
from .rest import _document

if TYPE_CHECKING:
    from .transport import AsyncTransport, Transport

__all__ = [
    "DEFAULT_MAX_STATES", "MAX_STATE_BYTES", "MAX_STATE_SECONDS", "AsyncTenantStates", "TenantState", "TenantStates",
    "state_base", "state_url",
]

#: The most tenants whose state a client keeps.
DEFAULT_MAX_STATES = 10_000
#: The longest a state is kept, whatever its ``ValidUntil`` says.
MAX_STATE_SECONDS = 86_400.0
#: The largest answer read (the documented answer is six short members).
MAX_STATE_BYTES = 64 * 1024
# States whose end needs nobody to act: the error says the same call may pass later.
_TRANSIENT = frozenset({"OfflineMaintenance", "Provisioning", "MigrationPending"})
_HINT = "that the environment (or endpoint) is SuperOffice's and no proxy rewrote its tenant state API's answer"
_MEMBERS = {
    "contextidentifier": "ContextIdentifier", "endpoint": "Endpoint", "state": "State", "isrunning": "IsRunning",
    "validuntil": "ValidUntil", "api": "Api",
}
_STATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})", re.ASCII
)
_MAX_URL = 2048
_ACCEPT = {"Accept": "application/json"}
# How long past the read's deadline a waiting task is given: the GET ends at the deadline by
# itself, with a more precise error than this cut can give.
_GRACE = 0.1

_log = logging.getLogger("sut_soap.client")


@dataclass(frozen=True)
class TenantState:
    """One tenant's state as SuperOffice's tenant state API gave it; immutable.

    Attributes:
        context_identifier: the tenant, as the answer spelled it.
        state: the state's name, such as ``Running``, ``OnlineMaintenance`` or ``OfflineMaintenance``.
        running: the answer's ``IsRunning``: whether the tenant's API can be called.
        endpoint: the root URL of the tenant's installation (``Endpoint``), such as
            ``https://online2.superoffice.com/Cust12345``; None when a tenant that is not running
            has none.
        api_url: the tenant's API (``Api``), such as ``https://online2.superoffice.com/Cust12345/api``,
            without a trailing slash; None when a tenant that is not running has none.
        valid_until: when to ask again (``ValidUntil``), timezone-aware UTC.
    """

    context_identifier: str
    state: str
    running: bool
    endpoint: str | None
    api_url: str | None
    valid_until: datetime


def state_url(base_url: str, context_identifier: str) -> str:
    """The state API's URL for a tenant below an environment's base URL (``https://sod.superoffice.com``)."""
    return base_url.rstrip("/") + STATE_PATH + quote(context_identifier, safe="")


def _refused(message: str, status: int) -> ProtocolError:
    return ProtocolError(message, status=status, hint=_HINT)


def _valid_until(value: object, status: int) -> datetime:
    """``ValidUntil`` as an aware UTC datetime: ISO 8601 with a zone, up to 9 fraction digits (.NET writes 7)."""
    match = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _refused("the tenant state's ValidUntil is not an ISO 8601 time with a time zone", status)
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    try:
        sign = -1 if zone[0] == "-" else 1
        offset = timedelta(0) if zone == "Z" else sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        moment = datetime(year, month, day, hour, minute, second, int(fraction[:6].ljust(6, "0")),
                          tzinfo=timezone(offset))
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise _refused("the tenant state's ValidUntil is not a valid date and time", status) from None


def _same_family(host: str, source: str) -> bool:
    """Whether a URL the state gives (``host``) may be trusted by the state's own host (``source``)."""
    if host == source:
        return True
    if is_loopback_host(source):
        return False  # the emulator's state points back at itself, never elsewhere
    def superoffice(name: str) -> bool:
        return name == "superoffice.com" or name.endswith(".superoffice.com")
    return superoffice(host) and superoffice(source)


def _url(fields: dict[str, Any], name: str, status: int, *, source: str, required: bool) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise _refused(f"the tenant state says the tenant is running but has no {name}", status)
        return None
    if not isinstance(value, str) or len(value) > _MAX_URL:
        raise _refused(f"the tenant state's {name} is not a URL", status)
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        _ = parts.port
    except ValueError:
        raise _refused(f"the tenant state's {name} is not a valid URL", status) from None
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value) or not host or parts.username or parts.password:
        raise _refused(f"the tenant state's {name} is not a usable URL", status)
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(host)):
        raise _refused(
            f"the tenant state's {name} is not https ({sanitise(parts.scheme, limit=10) or 'no scheme'}): "
            "the ticket and client secret would travel unencrypted", status,
        )
    if not _same_family(host, source):
        raise _refused(
            f"the tenant state's {name} points at {sanitise(host, limit=80)}, outside {sanitise(source, limit=80)}",
            status,
        )
    return value.rstrip("/")


def parse_state(response: Any, *, context_identifier: str, source_host: str) -> TenantState:
    """Read the state API's answer for ``context_identifier`` into a :class:`TenantState`, or raise.

    Args:
        response: the :class:`~sut_soap.transport.Response` of the GET.
        context_identifier: the tenant asked for; the answer must name it (case aside).
        source_host: the host the state was read from (lower case); the URLs it gives must be
            on the same host, or both under ``superoffice.com``.

    Raises:
        TransportError: a redirect or any status but 200 (retryable for 429, 502, 503, 504).
        ProtocolError: anything but an HTTP 200 JSON object with the members and types the module
            docstring lists, for this tenant, with acceptable URLs.
    """
    status = int(response.status_code)
    body = response.content or b""
    headers = getattr(response, "headers", None)
    if 300 <= status < 400:
        raise _status_error(status, b"", (), "a redirect, which is not followed", path=STATE_PATH)
    if status != 200:
        raise _status_error(status, body, (), "not a tenant state", headers, path=STATE_PATH)
    media = utf8_media_type(_header(headers, "Content-Type"))
    if media is None or not (media in ("application/json", "text/json") or media.endswith("+json")):
        raise _refused("the tenant state answer is not labelled JSON (UTF-8)", status)
    try:
        document = _document(body, status)
    except ProtocolError as error:
        raise _refused(error.message.replace("the JSON answer", "the tenant state answer"), status) from None
    fields: dict[str, Any] = {}
    for key, value in document.items():
        name = _MEMBERS.get(key.lower())
        if name is not None:
            if name in fields:
                raise _refused(f"the tenant state has more than one {name} (names differ only in case)", status)
            fields[name] = value

    ctx = fields.get("ContextIdentifier")
    if not isinstance(ctx, str) or ctx.casefold() != context_identifier.casefold():
        raise _refused(f"the tenant state is not for the tenant {context_identifier} asked for", status)
    running = fields.get("IsRunning")
    if not isinstance(running, bool):
        raise _refused("the tenant state's IsRunning is not true or false", status)
    name = fields.get("State")
    if not isinstance(name, str) or _STATE_NAME.fullmatch(name) is None:
        raise _refused("the tenant state's State is not a state name", status)
    valid_until = _valid_until(fields.get("ValidUntil"), status)
    endpoint = _url(fields, "Endpoint", status, source=source_host, required=running)
    api = _url(fields, "Api", status, source=source_host, required=running)
    return TenantState(
        context_identifier=ctx, state=name, running=running, endpoint=endpoint, api_url=api, valid_until=valid_until
    )


def not_running(state: TenantState, now: datetime) -> TenantNotRunningError:
    """The error for a tenant whose state says it is not running."""
    wait = max(0.0, (state.valid_until - now).total_seconds())
    return TenantNotRunningError(
        f"tenant {state.context_identifier} is not running: its state is {state.state}",
        context_identifier=state.context_identifier,
        state=state.state,
        tenant_state=state,
        retry_after=wait,
        retryable=state.state in _TRANSIENT,
    )


def state_base(environment: str | None, endpoint: str) -> str:
    """Where the tenant state API lives: the environment's base URL, else the endpoint's scheme and host."""
    if environment is not None:
        return ENVIRONMENTS[environment]
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


class _StateMemory:
    """What both readers share: the kept states, the answer read into one, the error of a tenant not running.

    Args:
        transport: the client's transport (a :class:`~sut_soap.Transport` or an
            :class:`~sut_soap.AsyncTransport`: the subclass sends through it).
        base_url: the environment's base URL (``https://sod.superoffice.com``), or the scheme and
            host of an explicit endpoint.
        clock: the client's :class:`~sut_soap.Clock`: wall time against ``ValidUntil``, monotonic
            time for how long a state is kept.
        deadline: seconds one read may take in all.
        max_entries: the most tenants kept (least recently read dropped first).
    """

    def __init__(
        self, transport: Any, base_url: str, clock: Clock, *, deadline: float,
        max_entries: int = DEFAULT_MAX_STATES,
    ) -> None:
        self._transport = transport
        self.base_url = base_url.rstrip("/")
        self._host = (urlsplit(self.base_url).hostname or "").lower()
        self._clock = clock
        self._deadline = deadline
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[TenantState, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._reading: dict[str, Any] = {}  # tenant -> the read in progress (its lock, or its task)
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        """In a forked child: new locks and no read in progress; the states stay."""
        self._lock = threading.Lock()
        self._reading = {}

    def forget(self, context_identifier: str) -> None:
        """Drop the tenant's kept state, so the next ``get`` reads it again."""
        with self._lock:
            self._entries.pop(context_identifier.casefold(), None)

    def __len__(self) -> int:
        """The number of tenants whose state is kept (expired ones not yet dropped included)."""
        return len(self._entries)

    def _running(self, state: TenantState) -> TenantState:
        if not state.running:
            raise not_running(state, self._clock.now())
        return state

    def _kept(self, key: str) -> TenantState | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            if self._clock.monotonic() >= item[1]:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return item[0]

    def _keep(self, response: Any, context_identifier: str, key: str, started: float) -> TenantState:
        """Read the GET's ``response`` (sent at ``started``, monotonic) and keep the state until its ValidUntil."""
        state = parse_state(response, context_identifier=context_identifier, source_host=self._host)
        keep = min(MAX_STATE_SECONDS, (state.valid_until - self._clock.now()).total_seconds())
        _log.debug(
            "tenant state for %s: %s in %.1f ms, kept %.0f s",
            context_identifier, state.state, (self._clock.monotonic() - started) * 1000, max(keep, 0.0),
        )
        if keep > 0:
            with self._lock:
                self._entries[key] = (state, self._clock.monotonic() + keep)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return state


class TenantStates(_StateMemory):
    """The sync client's tenant states: read through its transport, kept until ``ValidUntil``, one GET per tenant.

    Args:
        transport: the client's :class:`~sut_soap.Transport`.
        base_url, clock, deadline, max_entries: as for the shared memory above.
    """

    _transport: Transport

    def get(self, context_identifier: str) -> TenantState:
        """The tenant's state, kept or read now; :class:`~sut_soap.errors.TenantNotRunningError` if not running."""
        key = context_identifier.casefold()
        state = self._kept(key)
        if state is None:
            budget = _deadline.open_budget(self._deadline, self._clock.monotonic)
            try:
                with self._one_read(key):
                    state = self._kept(key)
                    if state is None:
                        state = self._read(context_identifier, key)
            finally:
                _deadline.leave(budget)
        return self._running(state)

    @contextmanager
    def _one_read(self, key: str) -> Iterator[None]:
        with self._lock:
            slot = self._reading.setdefault(key, [threading.Lock(), 0])
            slot[1] += 1
        try:
            left = _deadline.remaining()
            if not slot[0].acquire(timeout=max(0.0, left if left is not None else self._deadline)):
                raise TransportError(
                    "another thread's read of the tenant state did not finish within the deadline", retryable=True
                )
            try:
                yield
            finally:
                slot[0].release()
        finally:
            with self._lock:
                slot[1] -= 1
                if slot[1] == 0:
                    self._reading.pop(key, None)

    def _read(self, context_identifier: str, key: str) -> TenantState:
        from .transport import call_transport  # noqa: PLC0415 -- TenantState alone loads no HTTP library

        started = self._clock.monotonic()
        response = call_transport(
            self._transport, "GET", state_url(self.base_url, context_identifier), headers=_ACCEPT,
            max_bytes=MAX_STATE_BYTES,
        )
        return self._keep(response, context_identifier, key, started)


class AsyncTenantStates(_StateMemory):
    """The async client's tenant states: the same memory and reading, one GET per tenant across tasks.

    The first task that misses a tenant starts the GET in a task of its own (through the
    client's :class:`~sut_soap.AsyncTransport`, within its budget); every task asking meanwhile
    awaits that one, shielded, so cancelling one caller cancels only its wait.

    Args:
        transport: the client's :class:`~sut_soap.AsyncTransport`.
        base_url, clock, deadline, max_entries: as for the shared memory above.
    """

    _transport: AsyncTransport

    async def get(self, context_identifier: str) -> TenantState:
        """The tenant's state, kept or read now; :class:`~sut_soap.errors.TenantNotRunningError` if not running."""
        key = context_identifier.casefold()
        state = self._kept(key)
        if state is None:
            budget = _deadline.open_budget(self._deadline, self._clock.monotonic)
            try:
                state = await self._one_read(context_identifier, key)
            finally:
                _deadline.leave(budget)
        return self._running(state)

    async def _one_read(self, context_identifier: str, key: str) -> TenantState:
        task: asyncio.Task[TenantState] | None = self._reading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._read(context_identifier, key))
            self._reading[key] = task
            task.add_done_callback(functools.partial(self._landed, key))
        left = _deadline.remaining()
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(0.0, left or 0.0) + _GRACE)
        except asyncio.TimeoutError:
            raise TransportError(
                "the read of the tenant state did not finish within the deadline", retryable=True
            ) from None

    def _landed(self, key: str, task: asyncio.Task[TenantState]) -> None:
        self._reading.pop(key, None)  # no other read of the tenant can have started: this one was in the way
        if not task.cancelled():
            task.exception()  # retrieved: the caller that started it may be gone, the others share it

    async def _read(self, context_identifier: str, key: str) -> TenantState:
        from .transport import acall_transport  # noqa: PLC0415 -- TenantState alone loads no HTTP library

        started = self._clock.monotonic()
        response = await acall_transport(
            self._transport, "GET", state_url(self.base_url, context_identifier), headers=_ACCEPT,
            max_bytes=MAX_STATE_BYTES,
        )
        return self._keep(response, context_identifier, key, started)
