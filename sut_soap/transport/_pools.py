"""The transport's own way of sending: a route per origin, direct (``http.client``) or through a proxy (urllib3).

No requests session sits in between. An origin reached directly gets a pool of kept-alive
``http.client`` connections (:mod:`sut_soap.transport._direct`); one the environment puts
behind a proxy gets urllib3's ``ProxyManager``. What requests would have decided per
request is decided once:

- **Trust store**: one ``ssl.create_default_context()`` per transport, built at the first
  https request: the system's CA certificates (OpenSSL's default paths, which honour
  ``SSL_CERT_FILE``/``SSL_CERT_DIR``), or only the CA bundle ``REQUESTS_CA_BUNDLE`` or
  ``CURL_CA_BUNDLE`` names when one is set (read when the transport is built; it must exist
  and load). Only where the system store is empty (no CA certificate in its file and no
  file in its directory: a slim container without ``ca-certificates``) certifi's bundle is
  loaded instead, so such a host still verifies rather than failing every handshake.
  Hostnames are checked; TLS 1.2 at least.
- **Proxies**: resolved once per origin (scheme and host, on :meth:`HttpTransport.prepare`
  or the first request to it) from the environment with requests' own reading of
  ``*_proxy``/``all_proxy``/``no_proxy`` (CIDRs and suffixes included), then one urllib3
  ``ProxyManager`` per proxy (``CONNECT`` for https, as requests does; credentials in the
  proxy URL become ``Proxy-Authorization``). ``.netrc`` is never read.
- **Pools**: ``maxsize`` connections kept per origin: a thread beyond it opens a connection
  of its own rather than waiting (a wait no deadline could cut), which is then closed
  instead of pooled; :meth:`HttpTransport.ensure_pool` builds larger pools.
- **No retries, no redirects**: neither way retries or follows a 3xx; it comes back as it is.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

import certifi
import requests.utils
import urllib3
import urllib3.util

from .. import __version__
from ..errors import ConfigurationError, TransportError
from ._direct import ACCEPT_ENCODING, DirectPool
from ._values import HeaderMap, Sent
from ._watched import watch_pools

__all__ = [
    "DIRECT_HEADERS",
    "PROXY_HEADERS",
    "USER_AGENT",
    "Pools",
    "Route",
    "UrllibHeaders",
    "environment_bundle",
    "invalid_url",
    "merge_headers",
    "missing_bundle",
    "proxy_from_environment",
    "system_trust_context",
]

#: What the transport sends as ``User-Agent`` unless a request sets one.
USER_AGENT = f"sut-soap/{__version__}"
#: The default headers of a direct connection, which decodes exactly gzip and deflate.
DIRECT_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING}
#: The default headers through a proxy: urllib3 reads the answer, and decodes what it says it accepts.
PROXY_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept-Encoding": urllib3.util.make_headers(accept_encoding=True)["accept-encoding"],
}
#: Never retry, never follow a redirect: one instance for every request (urllib3 would build one per call).
NO_RETRY = urllib3.Retry(total=False, redirect=False)
_BASE_NAMES = {"user-agent": "User-Agent", "accept-encoding": "Accept-Encoding"}


def merge_headers(headers: Mapping[str, str] | None, base: Mapping[str, str] = DIRECT_HEADERS) -> dict[str, str]:
    """The default headers ``base`` with ``headers`` over them, a name in any case replacing the default's."""
    merged = dict(base)
    if headers:
        for name, value in headers.items():
            default = _BASE_NAMES.get(name.lower())
            if default is not None and default != name:
                merged.pop(default, None)
            merged[name] = value
    return merged


class UrllibHeaders(HeaderMap):
    """A :class:`HeaderMap` over urllib3's own case-insensitive headers, without copying them.

    A header sent twice reads as its values joined by ``", "`` (as requests shows it).
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def __getitem__(self, name: str) -> str:
        """The value of header ``name``, in any case; ``KeyError`` when absent."""
        return self._headers[name]

    def __contains__(self, name: object) -> bool:
        """Whether header ``name`` is present, in any case."""
        return isinstance(name, str) and name in self._headers

    def __iter__(self) -> Any:
        """The header names, as the server sent them."""
        return iter(self._headers)

    def __len__(self) -> int:
        """The number of distinct headers."""
        return len(self._headers)


def environment_bundle() -> tuple[str, str] | None:
    """The CA bundle the environment names, as ``(variable, path)``: REQUESTS_CA_BUNDLE, else CURL_CA_BUNDLE."""
    variable = next((v for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(v)), None)
    return None if variable is None else (variable, os.environ[variable])


def missing_bundle(bundle: str, source: str) -> ConfigurationError:
    """The error for a CA bundle named by ``source`` that does not exist."""
    return ConfigurationError(
        f"{source} names a CA bundle that does not exist: {bundle[:200]}",
        hint="point it at a PEM file (or directory) of trusted CA certificates, or unset it",
    )


def _store_is_empty(context: ssl.SSLContext) -> bool:
    """Whether the system store gave no CA certificate: none loaded from its file, none in its directory."""
    if context.cert_store_stats()["x509_ca"]:
        return False
    directory = ssl.get_default_verify_paths().capath
    return not (directory and os.path.isdir(directory) and os.listdir(directory))


def system_trust_context(bundle: tuple[str, str] | None) -> ssl.SSLContext:
    """The TLS context of the transport's own pools: ``bundle`` (variable, path) only, else the system store.

    Raises:
        ConfigurationError: the bundle does not exist or holds no certificate OpenSSL can load.
    """
    if bundle is None:
        context = ssl.create_default_context()
        if _store_is_empty(context):
            context.load_verify_locations(cafile=certifi.where())
        return context
    variable, path = bundle
    if not os.path.exists(path):
        raise missing_bundle(path, variable)
    try:
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"{variable} names a CA bundle with no certificate that can be loaded: {path[:200]}",
            hint="point it at a PEM file (or directory) of trusted CA certificates, or unset it",
        ) from exc


def proxy_from_environment(url: str) -> str | None:
    """The proxy the environment names for ``url``, as requests would pick it (``no_proxy`` respected)."""
    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def invalid_url(host: str) -> TransportError:
    """The error for a URL that is not an absolute http or https URL (never retried)."""
    return TransportError(f"HTTP request to {host} failed: InvalidURL", retryable=False, host=host, phase="connect")


#: What a route sends with: ``(method, target, body, headers, (connect, read) timeout) -> Sent``.
Sender = Callable[[str, str, "bytes | None", "Mapping[str, str] | None", "tuple[Any, Any]"], Sent]


class Route:
    """How to reach one origin: what sends to it, and the URL form it takes (absolute through a proxy)."""

    __slots__ = ("absolute", "host", "pool", "send")

    def __init__(self, send: Sender, host: str, *, absolute: bool, pool: DirectPool | None = None) -> None:
        self.send = send
        self.host = host
        self.absolute = absolute
        self.pool = pool


def _direct_sender(pool: DirectPool) -> Sender:
    def send(
        method: str, target: str, body: bytes | None, headers: Mapping[str, str] | None, timeout: tuple[Any, Any]
    ) -> Sent:
        return pool.send(method, target, body, merge_headers(headers), timeout)

    return send


def _proxy_sender(manager: urllib3.ProxyManager) -> Sender:
    def send(
        method: str, target: str, body: bytes | None, headers: Mapping[str, str] | None, timeout: tuple[Any, Any]
    ) -> Sent:
        raw = manager.urlopen(
            method, target, body=body, headers=merge_headers(headers, PROXY_HEADERS),
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]), retries=NO_RETRY, redirect=False,
            assert_same_host=False, preload_content=False,
        )

        def release() -> None:
            raw.close()
            raw.release_conn()

        return Sent(raw, raw.status, UrllibHeaders(raw.headers), raw.reason or "", release)

    return send


class Pools:
    """The pools of one generation (one ``maxsize``): a route per origin, built on first use.

    ``proxies`` (origin -> proxy URL or None) and ``context`` (the TLS context, built once) are
    shared with the transport, so a new generation (a larger pool, a forked child) reads no
    environment variable again.
    """

    def __init__(
        self, size: int, context: Callable[[], ssl.SSLContext], proxies: dict[tuple[str, str], str | None]
    ) -> None:
        self.size = size
        self._context = context
        self._proxies = proxies
        self._routes: dict[tuple[str, str], Route] = {}
        self._pools: list[DirectPool] = []
        self._managers: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()

    def route(self, parts: SplitResult, url: str) -> Route:
        """The route to the origin of ``url`` (``parts`` is its ``urlsplit``)."""
        route = self._routes.get((parts.scheme, parts.netloc))
        return route if route is not None else self._add(parts, url)

    def _add(self, parts: SplitResult, url: str) -> Route:
        key = (parts.scheme, parts.netloc)
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise invalid_url(parts.hostname or "the endpoint") from None
        if parts.scheme not in ("http", "https") or not host:
            raise invalid_url(host or "the endpoint")
        with self._lock:
            route = self._routes.get(key)
            if route is not None:
                return route
            if key not in self._proxies:
                self._proxies[key] = proxy_from_environment(url)
            proxy = self._proxies[key]
            if proxy is not None:
                route = Route(_proxy_sender(self._proxy_manager(proxy)), host, absolute=True)
            else:
                context = self._context() if parts.scheme == "https" else None
                pool = DirectPool(host, port, maxsize=self.size, context=context)
                route = Route(_direct_sender(pool), host, absolute=False, pool=pool)
                self._pools.append(pool)
            self._routes[key] = route
            return route

    def _proxy_manager(self, proxy: str) -> urllib3.ProxyManager:
        manager = self._managers.get(proxy)
        if manager is not None:
            return manager
        user, password = requests.utils.get_auth_from_url(proxy)
        auth = urllib3.util.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
        context = self._context()
        try:
            manager = urllib3.ProxyManager(
                proxy, num_pools=32, proxy_headers=auth, proxy_ssl_context=context,
                maxsize=self.size, block=False, ssl_context=context,
            )
        except urllib3.exceptions.ProxySchemeUnknown:
            raise ConfigurationError(
                f"the proxy the environment names is not an http or https proxy ({urlsplit(proxy).scheme}://...)",
                hint="set HTTPS_PROXY/HTTP_PROXY to an http:// or https:// proxy, or pass session= "
                     "with a requests session set up for it",
            ) from None
        watch_pools(manager)
        self._managers[proxy] = manager
        return manager

    def close(self) -> None:
        """Close every pool of this generation (connections in use are closed when given back)."""
        with self._lock:
            pools, managers = self._pools, list(self._managers.values())
            self._pools, self._managers, self._routes = [], {}, {}
        for pool in pools:
            pool.close()
        for manager in managers:
            manager.clear()
