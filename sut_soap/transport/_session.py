"""Sending through a caller's ``requests.Session`` (``HttpTransport(session=...)``), and its TLS checks.

The session is used as it is: its proxies, CA bundle, adapters and ``trust_env``. What the
transport adds: its requests ``HTTPAdapter`` pools make connections the deadline's watchdog
can cut, redirects are never followed, the body is read with the same cap, and a session
that skips certificate checks towards a remote https host is refused unless opted in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters

from ..environments import is_loopback_host
from ..errors import ConfigurationError
from ._pools import environment_bundle, missing_bundle
from ._watched import watch_pools

__all__ = [
    "check_ca_bundle", "check_verification", "https_hosts", "renew_adapters", "send", "watch_adapters",
]

_log = logging.getLogger("sut_soap.transport")


def watch_adapters(session: requests.Session) -> None:
    """Make the requests ``HTTPAdapter`` pools of ``session`` watched ones (other adapters are left alone)."""
    for adapter in session.adapters.values():
        if isinstance(adapter, requests.adapters.HTTPAdapter):
            watch_pools(adapter.poolmanager)
            for manager in adapter.proxy_manager.values():
                watch_pools(manager)


def renew_adapters(session: requests.Session) -> None:
    """In a forked child: each requests ``HTTPAdapter`` of ``session`` gets new pools, as unpickling it would."""
    adapters = {id(adapter): adapter for adapter in session.adapters.values()}
    for adapter in adapters.values():
        if isinstance(adapter, requests.adapters.HTTPAdapter):
            renewed: Any = adapter  # requests' own pickling methods, missing from its type stubs
            renewed.__setstate__(renewed.__getstate__())
    watch_adapters(session)


def send(
    session: requests.Session, method: str, url: str, *, body: bytes | None, headers: dict[str, str], timeout: Any
) -> requests.Response:
    """One request through ``session``: no redirects, the body left unread."""
    return session.request(
        method, url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
    )


def https_hosts(urls: Iterable[str]) -> list[str]:
    """The hosts among ``urls`` reached over https, loopback excepted."""
    hosts = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname and not is_loopback_host(parts.hostname):
            hosts.append(parts.hostname)
    return hosts


def check_ca_bundle(session: requests.Session, urls: Iterable[str]) -> None:
    """Refuse a CA bundle that does not exist now rather than fail (or fall back) at the first request."""
    if not any(urlsplit(url).scheme == "https" for url in urls):
        return
    if isinstance(session.verify, str):
        bundle, source = session.verify, "the session's verify="
    elif session.verify is True and session.trust_env and (named := environment_bundle()) is not None:
        source, bundle = named
    else:
        return
    if not os.path.exists(bundle):
        raise missing_bundle(bundle, source)


def check_verification(session: requests.Session, urls: Iterable[str], *, allow_insecure_tls: bool) -> None:
    """Refuse a session that skips certificate checks towards a remote https host, unless opted in."""
    if session.verify is not False:
        return
    hosts = https_hosts(urls)
    if not hosts:
        return
    if not allow_insecure_tls:
        raise ConfigurationError(
            f"the session has verify=False: the certificate of {hosts[0]} would not be checked, so anyone "
            "on the path could read the client secret and the signed token",
            hint="leave verify on (or give verify= a CA bundle); allow_insecure_tls=True accepts the risk",
        )
    _log.warning(
        "TLS certificate verification is OFF for %s (allow_insecure_tls=True): the client secret and "
        "signed tokens can be read by anyone who can intercept the connection", ", ".join(sorted(set(hosts))),
    )

