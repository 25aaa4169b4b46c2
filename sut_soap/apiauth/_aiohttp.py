"""The aiohttp side of the async auth object: a client middleware, ``aiohttp.ClientSession(middlewares=(auth,))``.

aiohttp (3.12 and later) calls each client middleware with the ``ClientRequest`` of every hop
it sends and a ``handler`` that sends it; the middleware returns the response, and may call the
handler again to resend the same request (``aiohttp.client_middlewares``). For each hop aiohttp
builds a new request from the caller's headers, so what a middleware adds to one hop never
reaches the next: the two headers follow no redirect by themselves. So, per hop:

- to the tenant's API origin: the two headers, with the tenant's current ticket (awaited);
- a 401 that :func:`~sut_soap.apiauth._decide.after_401` says to resend: the ticket is
  invalidated (awaited), the 401 released, and the same request sent once more with the new
  ticket. aiohttp rewinds a file body itself; a body it cannot send again (an async iterator,
  a stream, a file whose position cannot be told) is ``consumed`` by then, and its 401 comes
  back with one WARNING;
- to another origin: a request the caller sends there is refused before anything is sent
  (:class:`~sut_soap.errors.ConfigurationError`), as with requests and httpx; a hop of a
  redirect that aiohttp follows away from the tenant (this middleware saw the redirect) is sent
  untouched, without either header. That memory is a :mod:`contextvars` variable, so it belongs
  to the task sending the request and is used by its next request only.

Nothing here imports aiohttp: the adapter only uses what aiohttp hands it (duck-typed), so
the async auth object can be built, and used with httpx, without aiohttp installed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from ..errors import ConfigurationError
from ._decide import AsyncCredentials, Origin, Verdict, after_401, origin_of, ticket_in

if TYPE_CHECKING:
    from aiohttp import ClientRequest, ClientResponse

    Handler = Callable[[ClientRequest], Awaitable[ClientResponse]]

__all__ = ["AiohttpAdapter"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Where a redirect this middleware returned points, away from the tenant, and the tenant's
# origin: the next request of the same task to that place is the redirect's hop.
_followed: ContextVar[tuple[Origin, Origin | None] | None] = ContextVar("sut_soap_auth_redirect", default=None)


def replayable(body: object) -> bool:
    """Whether aiohttp can send the body of a request it already sent once more: none, or a payload not consumed."""
    return isinstance(body, bytes) or getattr(body, "consumed", True) is False


class AiohttpAdapter:
    """Makes the async auth object an aiohttp client middleware: ``auth(request, handler)``."""

    _credentials: AsyncCredentials

    def __call__(self, request: ClientRequest, handler: Handler | None = None) -> Awaitable[ClientResponse]:
        """As an aiohttp middleware: send ``request`` with the tenant's ticket; handle its 401 once.

        Raises:
            ConfigurationError: called as a blocking auth (requests calls ``auth(request)``), or
                the request is not to the tenant's API origin (nothing is sent).
            SutSoapError: getting the ticket or the tenant's state failed.
        """
        if handler is None:
            raise ConfigurationError(
                "the auth object of an AsyncSystemUserClient is for httpx.AsyncClient and aiohttp: "
                "a blocking HTTP library cannot await its ticket",
                hint="use SystemUserClient.auth() with requests or httpx.Client",
            )
        return self._middleware(request, handler)

    async def _middleware(self, request: ClientRequest, handler: Handler) -> ClientResponse:
        url = str(request.url)
        expected = _followed.get()
        if expected is not None:
            _followed.set(None)
            if origin_of(url) == expected[0]:
                response = await handler(request)
                _remember_redirect(response, expected[1])
                return response
        headers, ticket = await self._credentials.for_url(url)
        request.headers.update(headers)
        response = await handler(request)
        verdict = after_401(
            status=response.status,
            sent_ticket=ticket if ticket_in(request.headers.get("Authorization")) == ticket else None,
            resent=False, at_tenant=True, replayable=replayable(request.body),
        )
        if verdict is not Verdict.PASS:
            try:
                again = await self._credentials.refused(
                    ticket, method=request.method, url=url, resend=verdict is Verdict.RESEND
                )
            except BaseException:
                response.release()
                raise
            if again is not None:
                response.release()
                request.headers.update(again[0])
                response = await handler(request)
        _remember_redirect(response, origin_of(url))  # for_url checked that url is at the tenant's origin
        return response


def _remember_redirect(response: Any, tenant: Origin | None) -> None:
    """When ``response`` redirects away from the ``tenant``, mark its target as the next hop (sent untouched)."""
    location = response.headers.get("Location") if response.status in _REDIRECTS else None
    if not location:
        return
    try:
        target = origin_of(urljoin(str(response.url), location))
    except ValueError:  # aiohttp refuses such a Location itself
        return
    if target is not None and target != tenant:
        _followed.set((target, tenant))
