"""The httpx side of the auth object: ``httpx.Client(auth=auth)``; the only module that imports httpx.

httpx takes an ``auth=`` that is an :class:`httpx.Auth` instance as such and wraps any other
callable in a ``FunctionAuth`` that only edits the request (``Client._build_auth``): without
this subclass the object would be called like a requests auth and no 401 would ever be
handled. So :meth:`~sut_soap.SystemUserClient.auth` returns an instance of this class whenever
httpx can be imported, and of its requests-only base otherwise; httpx is not a dependency.

:meth:`HttpxTenantAuth.auth_flow` is httpx's generator protocol: it yields the request with the
two headers, receives the response (after any redirects httpx followed), and on a 401 that
:func:`~sut_soap.apiauth._decide.after_401` says to resend yields it once more with the new
ticket. Only a body httpx holds in memory (``content=`` bytes or text, ``data=``, ``json=``:
an ``httpx.ByteStream``) is sent again; an iterator, a file or a multipart stream is not.

Redirects: with ``follow_redirects=True`` httpx builds each hop inside the client, copying
every header and stripping only ``Authorization`` when the origin changes (and not even that
for an http -> https upgrade of the same host; ``Client._redirect_headers``). An auth flow
is not consulted between hops, so it cannot keep ``SO-AppToken`` from following a redirect to
another origin. :meth:`HttpxTenantAuth.redirect_guard` can: as a request event hook
(``event_hooks={"request": [auth.redirect_guard]}``) it runs before every hop is sent and drops
both headers from a request to another origin. Without it, the flow logs one WARNING when it
sees that a followed redirect took the client secret to another origin. httpx's default is
not to follow redirects, which is safe.

``httpx.AsyncClient`` is refused: this object's ticket calls block, and an event loop must not
wait on them. :class:`HttpxAsyncTenantAuth`, the async client's auth object, has an
``async_auth_flow`` that awaits the async client's calls with the same decisions and steps (and
an async ``redirect_guard``); it refuses ``httpx.Client`` in turn.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Generator

import httpx

from ..errors import ConfigurationError
from . import AsyncTenantAuth, TenantAuth
from ._decide import SECRET_HEADERS, Origin, Verdict, after_401, origin_of, shown_origin, ticket_in

__all__ = ["HttpxAsyncTenantAuth", "HttpxTenantAuth"]

_log = logging.getLogger("sut_soap.auth")


class HttpxTenantAuth(TenantAuth, httpx.Auth):
    """A :class:`~sut_soap.apiauth.TenantAuth` that is also an :class:`httpx.Auth` (see the module docstring)."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send ``request`` with the tenant's ticket and the client secret; on a 401, at most once more."""
        url = str(request.url)
        headers, ticket = self._credentials.for_url(url)
        request.headers.update(headers)
        response = yield request
        verdict = _verdict(request, response, ticket, url)
        if verdict is Verdict.PASS:
            return
        again = self._credentials.refused(ticket, method=request.method, url=url, resend=verdict is Verdict.RESEND)
        if again is None:
            return
        request.headers.update(again[0])
        response = yield request
        _warn_if_followed_away(response, url)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Refuse ``httpx.AsyncClient``: this auth object blocks; use the async client's."""
        yield await _refuse_async()

    def redirect_guard(self, request: httpx.Request) -> None:
        """An httpx request event hook: drop the ticket and client secret from a request to another origin.

        Use it with ``follow_redirects=True``:
        ``httpx.Client(auth=auth, follow_redirects=True, event_hooks={"request": [auth.redirect_guard]})``.
        """
        _guard(request, self._credentials.origin())


class HttpxAsyncTenantAuth(AsyncTenantAuth, httpx.Auth):
    """An :class:`~sut_soap.apiauth.AsyncTenantAuth` that is also an :class:`httpx.Auth`, for ``httpx.AsyncClient``."""

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send ``request`` with the tenant's ticket and the client secret; on a 401, at most once more."""
        url = str(request.url)
        headers, ticket = await self._credentials.for_url(url)
        request.headers.update(headers)
        response = yield request
        verdict = _verdict(request, response, ticket, url)
        if verdict is Verdict.PASS:
            return
        again = await self._credentials.refused(
            ticket, method=request.method, url=url, resend=verdict is Verdict.RESEND
        )
        if again is None:
            return
        request.headers.update(again[0])
        response = yield request
        _warn_if_followed_away(response, url)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Refuse ``httpx.Client``: this auth object awaits its ticket; use the sync client's."""
        yield _refuse_sync()

    async def redirect_guard(self, request: httpx.Request) -> None:
        """An ``httpx.AsyncClient`` request event hook: drop the ticket and client secret from a request elsewhere.

        Use it with ``follow_redirects=True``:
        ``httpx.AsyncClient(auth=auth, follow_redirects=True, event_hooks={"request": [auth.redirect_guard]})``.
        """
        _guard(request, await self._credentials.origin())


def _verdict(request: httpx.Request, response: httpx.Response, ticket: str, url: str) -> Verdict:
    """What the response to ``request`` (sent to ``url`` with ``ticket``) means; warns of a followed redirect away."""
    _warn_if_followed_away(response, url)
    final = response.request
    return after_401(
        status=response.status_code,
        sent_ticket=ticket if ticket_in(final.headers.get("Authorization")) == ticket else None,
        resent=False,
        at_tenant=origin_of(str(final.url)) == origin_of(url),
        replayable=isinstance(request.stream, httpx.ByteStream),
    )


def _guard(request: httpx.Request, tenant: Origin | None) -> None:
    """Drop the secret headers from ``request`` unless it goes to the ``tenant``'s origin."""
    if origin_of(str(request.url)) == tenant:
        return
    for name in SECRET_HEADERS:
        if name != "Authorization" or ticket_in(request.headers.get(name)) is not None:
            request.headers.pop(name, None)


def _warn_if_followed_away(response: httpx.Response, url: str) -> None:
    start = origin_of(url)
    for hop in (*response.history, response):
        elsewhere = origin_of(str(hop.request.url))
        if elsewhere != start and SECRET_HEADERS[1] in hop.request.headers:
            _log.warning(
                "httpx followed a redirect from %s to %s with the SO-AppToken header: the client secret "
                "reached another origin; add auth.redirect_guard to the client's request event hooks",
                shown_origin(start), shown_origin(elsewhere),
            )
            return


def _refuse_sync() -> httpx.Request:
    raise ConfigurationError(
        "the auth object of an AsyncSystemUserClient is for httpx.AsyncClient: httpx.Client cannot await its ticket",
        hint="use httpx.AsyncClient, or SystemUserClient.auth() with httpx.Client",
    )


async def _refuse_async() -> httpx.Request:
    raise ConfigurationError(
        "the auth object of a SystemUserClient is for httpx.Client: it blocks while it gets a ticket",
        hint="use httpx.Client, or AsyncSystemUserClient.auth() with httpx.AsyncClient or aiohttp",
    )
