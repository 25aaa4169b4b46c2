"""The requests side of the auth object: ``requests.Session().auth = auth``.

requests calls an auth object with each ``PreparedRequest`` once, when it prepares it, and
runs the request's response hooks on every response :meth:`requests.Session.send` receives
(each hop of a followed redirect included, but not a request an auth sends itself). So, in the
manner of requests' own ``HTTPDigestAuth``:

- ``__call__`` adds the two headers (refusing another origin) and registers a response hook
  bound to this one call, which remembers where a file body started;
- the hook, on a 401 that :func:`~sut_soap.apiauth._decide.after_401` says to resend, rewinds a
  file body, copies the request, gives it the new ticket and sends it once through the same
  connection adapter (so the resent response runs no hooks: a second 401 goes back as it is);
- on a redirect to another origin it removes both headers from the request requests copies
  the next hop from: requests itself strips only ``Authorization`` when the host changes
  (``Session.rebuild_auth`` and ``should_strip_auth``) and copies every other header, so
  ``SO-AppToken`` would otherwise follow. The request is the one already sent, so what went
  over the wire is unchanged; ``response.history[i].request`` shows it without them.

Nothing here imports requests: the adapter only uses what requests hands it (duck-typed), so
using the auth object with httpx alone never loads requests.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from ._decide import SECRET_HEADERS, Credentials, Verdict, after_401, strips_on_redirect, ticket_in

if TYPE_CHECKING:
    import requests

__all__ = ["RequestsAdapter"]


class _Call:
    """One call's memory: where its body started, whether it was resent."""

    __slots__ = ("position", "resent")

    def __init__(self, position: int | None) -> None:
        self.position = position
        self.resent = False


def _position(body: object) -> int | None:
    tell = getattr(body, "tell", None)
    if not callable(tell) or not callable(getattr(body, "seek", None)):
        return None
    try:
        position = tell()
    except (OSError, ValueError):  # a pipe or a closed file: not rewindable
        return None
    return position if isinstance(position, int) else None


def _replayable(body: object, call: _Call) -> bool:
    return body is None or isinstance(body, (bytes, str)) or call.position is not None


def _strip(request: Any) -> None:
    for name in SECRET_HEADERS:
        if name != "Authorization" or ticket_in(request.headers.get(name)) is not None:
            request.headers.pop(name, None)


class RequestsAdapter:
    """Makes the auth object a requests auth: callable on a ``PreparedRequest``, with a 401 hook."""

    _credentials: Credentials

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add ``Authorization: SOTicket <ticket>`` and ``SO-AppToken`` to ``request``; handle its 401 once.

        Raises:
            ConfigurationError: the request is not to the tenant's API origin (nothing is sent).
            SutSoapError: getting the ticket or the tenant's state failed.
        """
        headers, _ = self._credentials.for_url(str(request.url))
        request.headers.update(headers)
        call = _Call(_position(request.body))

        def hook(response: requests.Response, **kwargs: Any) -> requests.Response:
            return self._on_response(call, response, **kwargs)

        request.register_hook("response", hook)  # type: ignore[no-untyped-call]
        return request

    def _on_response(self, call: _Call, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        _guard_redirect(response, request)
        sent = ticket_in(request.headers.get("Authorization"))
        url = str(request.url)
        verdict = after_401(
            status=response.status_code, sent_ticket=sent, resent=call.resent,
            at_tenant=response.status_code == 401 and self._credentials.at_tenant(url),
            replayable=_replayable(request.body, call),
        )
        if verdict is Verdict.PASS or sent is None:
            return response
        call.resent = True  # whatever happens now, this call is not resent again
        try:
            again = self._credentials.refused(sent, method=str(request.method), url=url,
                                              resend=verdict is Verdict.RESEND)
        except BaseException:
            response.close()
            raise
        if again is None:
            return response
        response.content  # noqa: B018 -- read the 401 to the end, so its connection can be reused
        response.close()
        if call.position is not None:
            request.body.seek(call.position)  # type: ignore[union-attr]
        retry = request.copy()
        retry.headers.update(again[0])
        # requests follows a redirect of the answer from the original request: it must carry the new ticket too.
        request.headers.update(again[0])
        answer: requests.Response = response.connection.send(retry, **kwargs)
        answer.history.append(response)
        answer.request = retry
        _guard_redirect(answer, request, retry)
        return answer


def _guard_redirect(response: requests.Response, *requests_: Any) -> None:
    """On a redirect to another origin, drop the secret headers from the request(s) the next hop copies."""
    if not response.is_redirect:
        return
    location = response.headers.get("location", "")
    with contextlib.suppress(ValueError):
        target = urljoin(str(response.url), location)
        if not strips_on_redirect(str(response.url), target):
            return
    for request in requests_:
        _strip(request)
