"""Calling the tenant's API with the ticket: one auth object for requests and httpx, one for asyncio.

:meth:`SystemUserClient.auth <sut_soap.SystemUserClient.auth>` returns a :class:`TenantAuth`
for one tenant; :meth:`AsyncSystemUserClient.auth <sut_soap.AsyncSystemUserClient.auth>` an
:class:`AsyncTenantAuth`, for ``httpx.AsyncClient(auth=...)`` and as an aiohttp client
middleware, on the same decisions. Give it to ``requests.Session().auth`` (or ``auth=`` of one request), or to
``httpx.Client(auth=...)``: each request gets ``Authorization: SOTicket <ticket>`` with the
tenant's current ticket (``get_ticket``, so cached) and ``SO-AppToken: <client secret>``, a 401
invalidates exactly that ticket and sends the request once more with a new one when its body can
be replayed, and neither header goes to another origin.

The package keeps the HTTP libraries apart, so that using one never loads the other:

- :mod:`~sut_soap.apiauth._decide`: every decision (where credentials go, what a 401 means, what
  a redirect strips), and the calls to the client; imports no HTTP library;
- :mod:`~sut_soap.apiauth._requests`: the requests adapter; duck-typed, imports nothing of requests;
- :mod:`~sut_soap.apiauth._aiohttp`: the aiohttp client middleware; duck-typed, imports nothing
  of aiohttp;
- :mod:`~sut_soap.apiauth._httpx`: the httpx adapters, :class:`httpx.Auth` subclasses (the sync
  one's ``auth_flow``, the async one's ``async_auth_flow``); the only module that imports httpx,
  and only when an auth object is built with httpx installed.

This is not the library's network seam (:mod:`sut_soap.transport`): these requests are the
caller's, sent by the caller's HTTP library; the library's own requests (the exchange, the JWKS,
the tenant state) still go through the client's transport.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, NoReturn, SupportsIndex

from .._fork import not_picklable
from ._aiohttp import AiohttpAdapter
from ._decide import AsyncCredentials, Credentials
from ._requests import RequestsAdapter

if TYPE_CHECKING:
    from ..async_client import AsyncSystemUserClient
    from ..client import SystemUserClient

__all__ = ["AsyncTenantAuth", "TenantAuth", "build", "build_async"]


class TenantAuth(RequestsAdapter):
    """Auth for one tenant's API: ``requests`` (``session.auth = auth``) and, with httpx installed, ``httpx``.

    Built by :meth:`~sut_soap.SystemUserClient.auth`; see the README's "Calling the tenant's API".
    Safe to share between threads; its ``repr`` shows no secret.

    Attributes:
        context_identifier: the tenant.
    """

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self.context_identifier = credentials.context_identifier

    @property
    def base_url(self) -> str:
        """The tenant's API URL, without a trailing slash: build request URLs from it.

        The ``base_url=`` given to :meth:`~sut_soap.SystemUserClient.auth`, else the ``Api`` of the
        tenant's state (:meth:`~sut_soap.SystemUserClient.tenant_state`, read on first use and kept
        until its ``ValidUntil``; the tenant moves between hosts, so read it again rather than keep
        it). Requests to any other origin are refused.

        Raises:
            TenantNotRunningError: the tenant's state says it is not running.
            SutSoapError: the state could not be read (``TransportError``, ``ProtocolError``).
        """
        return self._credentials.base_url

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        """Refuse pickling and copying: the object holds a client and its secret."""
        raise not_picklable("a TenantAuth")

    def __repr__(self) -> str:
        """The tenant and base URL; the client secret shows as ``***``."""
        return type(self).__name__ + repr(self._credentials)


def build(client: SystemUserClient, secret: Any, context_identifier: str, system_user_token: str,
          base_url: str | None) -> TenantAuth:
    """A :class:`TenantAuth`, an ``httpx.Auth`` as well when httpx can be imported."""
    credentials = Credentials(client, secret, context_identifier, system_user_token, base_url)
    try:
        adapter = import_module(f"{__name__}._httpx")
    except ImportError:  # no httpx: a requests auth only
        return TenantAuth(credentials)
    auth: TenantAuth = adapter.HttpxTenantAuth(credentials)
    return auth


class AsyncTenantAuth(AiohttpAdapter):
    """Auth for one tenant's API on asyncio: an aiohttp client middleware and, with httpx installed, an ``httpx.Auth``.

    Built by :meth:`~sut_soap.AsyncSystemUserClient.auth`; use it as
    ``aiohttp.ClientSession(middlewares=(auth,))`` (or ``middlewares=`` of one request) or as
    ``httpx.AsyncClient(auth=auth)``. Blocking HTTP libraries (``requests``, ``httpx.Client``)
    are refused with a :class:`~sut_soap.errors.ConfigurationError`. Share it between the tasks
    of the client's event loop; its ``repr`` shows no secret. See the README's "Calling the
    tenant's API".

    Attributes:
        context_identifier: the tenant.
    """

    def __init__(self, credentials: AsyncCredentials) -> None:
        self._credentials = credentials
        self.context_identifier = credentials.context_identifier

    async def base_url(self) -> str:
        """The tenant's API URL, without a trailing slash: ``await auth.base_url()``, then build request URLs from it.

        The ``base_url=`` given to :meth:`~sut_soap.AsyncSystemUserClient.auth`, else the ``Api``
        of the tenant's state (:meth:`~sut_soap.AsyncSystemUserClient.tenant_state`, read on first
        use and kept until its ``ValidUntil``; the tenant moves between hosts, so ask again rather
        than keep it). Requests to any other origin are refused.

        Raises:
            TenantNotRunningError: the tenant's state says it is not running.
            SutSoapError: the state could not be read (``TransportError``, ``ProtocolError``).
        """
        return await self._credentials.base_url()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        """Refuse pickling and copying: the object holds a client and its secret."""
        raise not_picklable("an AsyncTenantAuth")

    def __repr__(self) -> str:
        """The tenant and base URL; the client secret shows as ``***``."""
        return type(self).__name__ + repr(self._credentials)


def build_async(client: AsyncSystemUserClient, secret: Any, context_identifier: str, system_user_token: str,
                base_url: str | None) -> AsyncTenantAuth:
    """An :class:`AsyncTenantAuth`, an ``httpx.Auth`` as well when httpx can be imported."""
    credentials = AsyncCredentials(client, secret, context_identifier, system_user_token, base_url)
    try:
        adapter = import_module(f"{__name__}._httpx")
    except ImportError:  # no httpx: an aiohttp middleware only
        return AsyncTenantAuth(credentials)
    auth: AsyncTenantAuth = adapter.HttpxAsyncTenantAuth(credentials)
    return auth
