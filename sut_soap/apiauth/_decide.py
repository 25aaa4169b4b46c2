"""What the auth object decides for a call of the tenant's API, whatever HTTP library sends it.

No HTTP library is imported here: the requests adapter (:mod:`sut_soap.apiauth._requests`) and
the httpx adapter (:mod:`sut_soap.apiauth._httpx`) each translate their library's request and
response into the few facts these decisions need (a URL, the ticket a request carried, whether
its body can be sent again) and do what they are told.

- **Where credentials go** (:meth:`Credentials.for_url`): only to the tenant's API origin
  (scheme, host and port of ``base_url``: the one given, else the ``Api`` of the tenant's
  state), never anywhere else; a request elsewhere is refused before anything is sent.
- **What a request carries**: ``Authorization: SOTicket <ticket>`` with the tenant's current
  ticket from :meth:`~sut_soap.SystemUserClient.get_ticket` (cached) and
  ``SO-AppToken: <client secret>``.
- **A 401** (:func:`after_401`): only for a request that carried a ticket of ours, to the
  tenant's origin, not yet resent. That ticket is invalidated, exactly that one
  (``invalidate(tenant, ticket=T)``: when many requests get 401 on ``T`` at once, the first
  forgets it and the others leave the new one alone, so they cause one exchange in all); then
  the request is resent once with the new ticket if its body can be sent again, else the 401
  goes back to the caller with one WARNING. A 401 on the resent request goes back as it is.
- **A redirect** (:func:`strips_on_redirect`): the two headers never follow one to another origin.

What needs no I/O (the refusal of another origin, the headers, the WARNING, the check of the
new ticket) is decided once, in ``_Tenant``; the sync half (:class:`Credentials`) calls the sync
client, the async half (:class:`AsyncCredentials`) awaits the async client's ``get_ticket``,
``invalidate`` and ``tenant_state``, and both adapters of each reuse every function here.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from ..contract import APP_TOKEN_HEADER, TICKET_SCHEME
from ..environments import validate_endpoint
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..async_client import AsyncSystemUserClient
    from ..client import SystemUserClient

__all__ = [
    "SECRET_HEADERS",
    "AsyncCredentials",
    "Credentials",
    "Origin",
    "Verdict",
    "after_401",
    "origin_of",
    "shown_origin",
    "strips_on_redirect",
    "ticket_in",
]

#: The headers that carry secrets; neither may reach another origin.
SECRET_HEADERS = ("Authorization", APP_TOKEN_HEADER)
_PREFIX = TICKET_SCHEME + " "
_DEFAULT_PORTS = {"http": 80, "https": 443}

_log = logging.getLogger("sut_soap.auth")


class Origin(NamedTuple):
    """A URL's origin: scheme, host (lower case) and port (the scheme's default when none is given)."""

    scheme: str
    host: str
    port: int | None


def origin_of(url: str) -> Origin | None:
    """The origin of ``url``, or None when it has none (relative, unparseable, a bad port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        return None
    return Origin(scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme))


def shown_origin(origin: Origin | None) -> str:
    """An origin as ``scheme://host:port`` for a message (never a path or query, which may carry data)."""
    if origin is None:
        return "a URL without an origin"
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    return f"{origin.scheme}://{host}" + (f":{origin.port}" if origin.port is not None else "")


def ticket_in(authorization: object) -> str | None:
    """The ticket an ``Authorization`` header value carries (``SOTicket <ticket>``), else None."""
    if not isinstance(authorization, str) or not authorization.startswith(_PREFIX):
        return None
    return authorization[len(_PREFIX) :] or None


def strips_on_redirect(from_url: str, to_url: str) -> bool:
    """Whether a redirect from ``from_url`` to ``to_url`` must drop :data:`SECRET_HEADERS` (another origin)."""
    source = origin_of(from_url)
    return source is None or origin_of(to_url) != source


class Verdict(enum.Enum):
    """What to do with a response, as :func:`after_401` decides."""

    PASS = "pass"  # noqa: S105 -- a verdict, not a password
    """Return it as it is: not a 401, not our ticket, elsewhere, or already resent."""
    RESEND = "resend"
    """Invalidate the ticket it carried, get a ticket once, send the request again once."""
    GIVE_BACK = "give_back"
    """Invalidate the ticket it carried, return the 401 (the body cannot be sent again), one WARNING."""


def after_401(*, status: int, sent_ticket: str | None, resent: bool, at_tenant: bool, replayable: bool) -> Verdict:
    """Decide what a response means for the ticket and the request.

    Args:
        status: the response's HTTP status.
        sent_ticket: the ticket the request that got the response carried, if it is ours
            (:func:`ticket_in`).
        resent: whether this call was already sent again once.
        at_tenant: whether the response came from the tenant's API origin (after a followed
            redirect it may not have).
        replayable: whether the request's body can be sent again as it was (none, bytes, text,
            a seekable file rewound to where it started; never a generator or a stream).
    """
    if status != 401 or sent_ticket is None or resent or not at_tenant:
        return Verdict.PASS
    return Verdict.RESEND if replayable else Verdict.GIVE_BACK


class _Tenant:
    """What both halves of the auth object know and decide without I/O: the tenant, the headers, the refusals.

    Args:
        client: the client that gets and invalidates tickets (sync or async: the subclass calls it).
        secret: the client's secret holder (its ``reveal()`` gives the value to send).
        context_identifier: the tenant.
        system_user_token: the tenant's system user token.
        base_url: the tenant's API base URL, or None for the ``Api`` of its state.
    """

    def __init__(
        self, client: Any, secret: Any, context_identifier: str, system_user_token: str, base_url: str | None,
    ) -> None:
        self._client = client
        self._secret = secret
        self.context_identifier = context_identifier
        self._token = system_user_token
        self._base_url = None if base_url is None else validate_endpoint(base_url, what="base_url").rstrip("/")

    def _api_of(self, state: Any) -> str:
        """The ``Api`` of the tenant's ``state``; a state without one is a ConfigurationError."""
        api: str | None = state.api_url
        if api is None:  # tenant_state refuses a running state without Api; a caller's double may not
            raise ConfigurationError(f"the tenant state of {self.context_identifier} names no API URL")
        return api

    def _check_origin(self, url: str, base_url: str) -> None:
        """Refuse a request to ``url`` unless it is at the origin of ``base_url``.

        Raises:
            ConfigurationError: ``url`` is not at the tenant's API origin (nothing is sent).
        """
        allowed = origin_of(base_url)
        target = origin_of(url)
        if target != allowed:
            raise ConfigurationError(
                f"refusing to send the ticket of {self.context_identifier} to {shown_origin(target)}: "
                f"the tenant's API is at {shown_origin(allowed)}",
                hint="build request URLs from auth.base_url (the tenant moves between hosts), "
                     "or pass base_url= to client.auth()",
            )

    def _headers(self, ticket: str) -> tuple[dict[str, str], str]:
        """The two headers carrying ``ticket`` and the client secret, and the ticket."""
        return {"Authorization": _PREFIX + ticket, APP_TOKEN_HEADER: self._secret.reveal()}, ticket

    def _resends(self, *, method: str, url: str, resend: bool) -> bool:
        """After the refused ticket was invalidated: whether to get a new one and resend (else one WARNING)."""
        if not resend:
            _log.warning(
                "HTTP 401 from %s for %s %s: the ticket is invalidated; the request's body is a stream or "
                "generator that cannot be sent again, so the 401 is returned unsent: send the request again",
                shown_origin(origin_of(url)), method, self.context_identifier,
            )
        return resend

    def _again(self, fresh: tuple[dict[str, str], str], refused: str, *, method: str,
               url: str) -> tuple[dict[str, str], str] | None:
        """The new headers to resend with, or None when the store handed back the very ticket refused."""
        where = shown_origin(origin_of(url))
        if fresh[1] == refused:
            _log.debug("HTTP 401 from %s for %s: the ticket store gave the refused ticket back; not resent",
                       where, self.context_identifier)
            return None
        _log.debug("HTTP 401 from %s for %s %s: ticket invalidated, sending once more with a new one",
                   where, method, self.context_identifier)
        return fresh

    def __repr__(self) -> str:
        shown = self._base_url if self._base_url is not None else "<tenant state>"
        return f"(context_identifier={self.context_identifier!r}, base_url={shown!r}, client_secret='***')"


class Credentials(_Tenant):
    """The sync half of the auth object: the calls to a :class:`~sut_soap.SystemUserClient`.

    Args:
        client: the :class:`~sut_soap.SystemUserClient` that gets and invalidates tickets.
        secret, context_identifier, system_user_token, base_url: as for the shared part above.
    """

    _client: SystemUserClient

    @property
    def base_url(self) -> str:
        """The base URL given, else the tenant state's ``Api`` (kept until its ``ValidUntil``)."""
        if self._base_url is not None:
            return self._base_url
        return self._api_of(self._client.tenant_state(self.context_identifier))

    def origin(self) -> Origin | None:
        """The one origin credentials are sent to."""
        return origin_of(self.base_url)

    def at_tenant(self, url: str) -> bool:
        """Whether ``url`` is at the tenant's API origin."""
        return origin_of(url) == self.origin()

    def for_url(self, url: str) -> tuple[dict[str, str], str]:
        """The two headers for a request to ``url`` and the ticket they carry; refuse any other origin.

        Raises:
            ConfigurationError: ``url`` is not at the tenant's API origin (nothing is sent).
            SutSoapError: whatever :meth:`~sut_soap.SystemUserClient.get_ticket` or
                ``tenant_state`` raised (a tenant that is not running included).
        """
        self._check_origin(url, self.base_url)
        return self.fresh()

    def fresh(self) -> tuple[dict[str, str], str]:
        """The two headers with the tenant's current ticket, and that ticket."""
        return self._headers(self._client.get_ticket(
            context_identifier=self.context_identifier, system_user_token=self._token
        ).ticket)

    def refused(self, ticket: str, *, method: str, url: str, resend: bool) -> tuple[dict[str, str], str] | None:
        """The tenant's API refused ``ticket`` (HTTP 401): invalidate exactly it; the new headers if resending.

        Returns:
            The headers and ticket to send the request again with, or None: not resending (one
            WARNING says why), or the client handed back the very ticket that was refused.
        """
        self._client.invalidate(self.context_identifier, ticket=ticket)
        if not self._resends(method=method, url=url, resend=resend):
            return None
        return self._again(self.fresh(), ticket, method=method, url=url)


class AsyncCredentials(_Tenant):
    """The async half of the auth object: the same decisions, awaiting an :class:`~sut_soap.AsyncSystemUserClient`.

    Args:
        client: the :class:`~sut_soap.AsyncSystemUserClient` that gets and invalidates tickets.
        secret, context_identifier, system_user_token, base_url: as for :class:`Credentials`.
    """

    _client: AsyncSystemUserClient

    async def base_url(self) -> str:
        """The base URL given, else the tenant state's ``Api`` (kept until its ``ValidUntil``)."""
        if self._base_url is not None:
            return self._base_url
        return self._api_of(await self._client.tenant_state(self.context_identifier))

    async def origin(self) -> Origin | None:
        """The one origin credentials are sent to."""
        return origin_of(await self.base_url())

    async def for_url(self, url: str) -> tuple[dict[str, str], str]:
        """As :meth:`Credentials.for_url`, awaiting the async client."""
        self._check_origin(url, await self.base_url())
        return await self.fresh()

    async def fresh(self) -> tuple[dict[str, str], str]:
        """The two headers with the tenant's current ticket, and that ticket."""
        return self._headers((await self._client.get_ticket(
            context_identifier=self.context_identifier, system_user_token=self._token
        )).ticket)

    async def refused(self, ticket: str, *, method: str, url: str,
                      resend: bool) -> tuple[dict[str, str], str] | None:
        """As :meth:`Credentials.refused`; the invalidation is awaited, so the store has forgotten the ticket."""
        await self._client.invalidate(self.context_identifier, ticket=ticket)
        if not self._resends(method=method, url=url, resend=resend):
            return None
        return self._again(await self.fresh(), ticket, method=method, url=url)
