"""The defaults of :class:`~sut_soap.SystemUserClient`'s options, their checks, and what they build.

Kept out of ``client.py`` so the client reads as what it does with a tenant, not as the list of
ways a keyword argument can be wrong. Every check raises
:class:`~sut_soap.errors.ConfigurationError` naming the option, never its value (the client
secret and the key are options too). The ``DEFAULT_*`` constants and
:func:`default_refresh_ahead` are importable from :mod:`sut_soap.client` as well.
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._clock import Clock
from .cache import TicketCache
from .contract import JWKS_PATH
from .environments import jwks_url_for, validate_endpoint
from .errors import ConfigurationError
from .keysources import JwksKeySource, KeySource, key_source_from_public_key
from .retry import RetryPolicy
from .transport import DEFAULT_POOL_SIZE, AsyncTransport, HttpTransport, Transport

if TYPE_CHECKING:
    import requests
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_REJECTION_COOLDOWN",
    "DEFAULT_TICKET_LIFETIME",
    "check_cache",
    "check_cooldown",
    "check_deadline",
    "check_lifetime",
    "check_max_workers",
    "check_protocol",
    "check_timeout",
    "default_refresh_ahead",
    "effective_retry",
    "exchange_bound",
    "make_async_transport",
    "make_key_source",
    "make_transport",
]

#: SuperOffice keeps a ticket valid for 6 hours after its last use.
DEFAULT_TICKET_LIFETIME = 6 * 3600.0
#: Threads of ``get_tickets`` and connections in the pool of a session the client creates.
DEFAULT_MAX_WORKERS = DEFAULT_POOL_SIZE
#: Seconds an identical rejected exchange is not sent again by ``get_ticket`` (MSAL waits 60 s).
DEFAULT_REJECTION_COOLDOWN = 60.0

_MAX_WORKERS_LIMIT = 256
_MAX_TICKET_LIFETIME = 24 * 3600.0
_MAX_REJECTION_COOLDOWN = 24 * 3600.0
_MAX_DEADLINE = 3600.0
# What a fleet lock outlives its holder's deadline by: the work after the answer arrived.
_LEASE_MARGIN = 5.0


def default_refresh_ahead(ticket_lifetime: float) -> float:
    """Return the default ``refresh_ahead=`` for a ``ticket_lifetime`` in seconds.

    max(300 s, 10 % of the lifetime), at most half of it: 36 minutes for 6 hours.
    """
    return min(max(300.0, 0.1 * ticket_lifetime), 0.5 * ticket_lifetime)


def check_timeout(timeout: object) -> tuple[float, float]:
    """Return ``timeout=`` (a number, or a ``(connect, read)`` pair) as a pair of floats.

    Raises:
        ConfigurationError: not a positive number of seconds below 3600, or a pair of them.
    """
    values = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if len(values) != 2 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 3600 for v in values
    ):
        raise ConfigurationError(
            "timeout must be a positive number of seconds or a (connect, read) pair; unbounded waits are refused"
        )
    return (float(values[0]), float(values[1]))


def check_lifetime(ticket_lifetime: object, refresh_ahead: object) -> tuple[float, float]:
    """Return ``(ticket_lifetime, refresh_ahead)`` in seconds; None for ``refresh_ahead`` is the default.

    Raises:
        ConfigurationError: a lifetime not above 0 and at most 86400, or a ``refresh_ahead``
            that is negative or not below the lifetime.
    """
    if (
        isinstance(ticket_lifetime, bool)
        or not isinstance(ticket_lifetime, (int, float))
        or not 0 < ticket_lifetime <= _MAX_TICKET_LIFETIME
    ):
        raise ConfigurationError(
            "ticket_lifetime must be a number of seconds above 0 and at most 86400",
            hint="SuperOffice keeps a ticket valid for 6 hours (21600 s) after its last use",
        )
    lifetime = float(ticket_lifetime)
    if refresh_ahead is None:
        return lifetime, default_refresh_ahead(lifetime)
    if (
        isinstance(refresh_ahead, bool)
        or not isinstance(refresh_ahead, (int, float))
        or not 0 <= refresh_ahead < lifetime
    ):
        raise ConfigurationError("refresh_ahead must be a number of seconds from 0 to below ticket_lifetime")
    return lifetime, float(refresh_ahead)


def check_cooldown(value: object) -> float:
    """Return ``rejection_cooldown=`` in seconds.

    Raises:
        ConfigurationError: not a number from 0 (off) to 86400.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= _MAX_REJECTION_COOLDOWN
    ):
        raise ConfigurationError("rejection_cooldown must be a number of seconds from 0 (off) to 86400")
    return float(value)


def check_cache(cache: object, *, asynchronous: bool = False) -> TicketCache:
    """Return ``cache=`` once it has the three methods of a :class:`~sut_soap.TicketCache`.

    ``asynchronous``: the async client asks, which takes an :class:`~sut_soap.AsyncTicketCache`
    as well; the sync client refuses one.

    Raises:
        ConfigurationError: ``get``, ``set`` or ``delete`` is missing or not callable; an async
            store for the sync client.
    """
    if not all(callable(getattr(cache, name, None)) for name in ("get", "set", "delete")):
        raise ConfigurationError("cache must have get(key), set(key, entry, ttl) and delete(key) methods")
    if not asynchronous and is_async_store(cache):
        raise ConfigurationError(
            "cache is an async store (its get is a coroutine function): SystemUserClient cannot await it",
            hint="use it with AsyncSystemUserClient, or give SystemUserClient a sync store "
                 "(RedisTicketCache rather than AsyncRedisTicketCache)",
        )
    return cache  # type: ignore[return-value]


def is_async_store(cache: object) -> bool:
    """Whether ``cache`` is an :class:`~sut_soap.AsyncTicketCache`: its ``get`` is a coroutine function."""
    return inspect.iscoroutinefunction(getattr(cache, "get", None))


def check_protocol(protocol: object, wsdl: object) -> str:
    """Return ``protocol=`` (``"soap"`` or ``"rest"``), once ``wsdl=`` fits it.

    Raises:
        ConfigurationError: another value, or ``wsdl=`` with ``"rest"`` (the REST form has no WSDL).
    """
    if protocol not in ("soap", "rest") or not isinstance(protocol, str):
        raise ConfigurationError(
            "protocol must be 'soap' or 'rest'",
            hint="'soap' (the default) is the PartnerSystemUserService; 'rest' its JSON form at /Login/api/",
        )
    if protocol == "rest" and wsdl is not None:
        raise ConfigurationError("wsdl= applies to protocol='soap' only: the REST exchange has no WSDL")
    return protocol


def check_max_workers(max_workers: object, *, name: str = "max_workers") -> int:
    """Return ``get_tickets(max_workers=)`` (or the async ``concurrency=``, named by ``name``).

    Raises:
        ConfigurationError: not an integer from 1 to 256.
    """
    if (
        isinstance(max_workers, bool)
        or not isinstance(max_workers, int)
        or not 1 <= max_workers <= _MAX_WORKERS_LIMIT
    ):
        raise ConfigurationError(f"{name} must be an integer from 1 to {_MAX_WORKERS_LIMIT}")
    return max_workers


def effective_retry(retry: object, *, defaulted: bool, transport_given: bool) -> RetryPolicy | None:
    """Return the policy ``get_ticket`` retries with, or None when retrying is off.

    ``defaulted`` tells that ``retry=`` was not given (the client's default policy object).
    Off for ``retry=None``, for a policy of one attempt, and when a ``transport=`` was given
    without an explicit ``retry=``: a recording, a replay or a test double answers each
    exchange as it sees fit, and retrying unasked would send more exchanges than the caller made.

    Raises:
        ConfigurationError: ``retry`` is neither a :class:`~sut_soap.RetryPolicy` nor None.
    """
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError("retry must be a RetryPolicy or None")
    if retry is None or (defaulted and transport_given) or retry.attempts == 1:
        return None
    return retry


def make_transport(
    transport: Transport | None,
    session: requests.Session | None,
    *,
    timeout: tuple[float, float],
    deadline: float,
    clock: Clock,
) -> Transport:
    """Return the client's transport: ``transport=`` as given, else an HttpTransport over ``session=``.

    Raises:
        ConfigurationError: both were given, or ``transport`` has no ``request`` method (a zeep
            transport, say).
    """
    if transport is not None and session is not None:
        raise ConfigurationError("give either session= or transport=, not both")
    if transport is None:
        return HttpTransport(session, timeout=timeout, deadline=deadline, clock=clock)
    if not callable(getattr(transport, "request", None)):
        raise ConfigurationError(
            "transport must be a sut_soap.Transport: an object with request(method, url, ...) and close()",
            hint="wrap a requests.Session with session= instead; zeep transports are no longer accepted",
        )
    return transport


def make_async_transport(
    transport: AsyncTransport | None,
    *,
    timeout: tuple[float, float],
    deadline: float,
    clock: Clock,
) -> AsyncTransport:
    """Return the async client's transport: ``transport=`` as given, else an AiohttpTransport.

    Raises:
        ConfigurationError: ``transport`` has no ``async def request`` or no ``aclose`` (a sync
            :class:`~sut_soap.Transport`, say), or no transport was given and aiohttp is not
            installed.
    """
    if transport is None:
        try:
            from .transport import AiohttpTransport  # noqa: PLC0415 -- aiohttp loads only for the async client
        except ImportError:
            raise ConfigurationError(
                "the async client's default transport needs aiohttp, which is not installed",
                hint="pip install 'sut-soap[async]', or pass "
                     "transport=sut_soap.ThreadedAsyncTransport(sut_soap.HttpTransport())",
            ) from None
        transport_: AsyncTransport = AiohttpTransport(timeout=timeout, deadline=deadline, clock=clock)
        return transport_
    if not inspect.iscoroutinefunction(getattr(transport, "request", None)) or not callable(
        getattr(transport, "aclose", None)
    ):
        raise ConfigurationError(
            "transport must be a sut_soap.AsyncTransport: an object with async request(method, url, ...) and aclose()",
            hint="run a sync Transport in threads with sut_soap.ThreadedAsyncTransport(transport)",
        )
    return transport


def make_key_source(
    *,
    public_key: str | bytes | os.PathLike[str] | RSAPublicKey | None,
    jwks_url: str | None,
    environment: str | None,
    endpoint: str,
    transport: Transport,
    clock: Clock,
) -> tuple[KeySource, str | None]:
    """Return the key source JWTs are validated with, and the JWKS URL it fetches (None when pinned).

    ``public_key=`` pins a key; otherwise the keys come from ``jwks_url=``, else the
    environment's JWKS, else ``/login/.well-known/jwks`` on the explicit endpoint's host,
    fetched through the client's ``transport``.

    Raises:
        ConfigurationError: both ``public_key`` and ``jwks_url``, an unusable public key, or a
            JWKS URL that is not https (outside loopback).
    """
    if public_key is not None:
        if jwks_url is not None:
            raise ConfigurationError("give either public_key= or jwks_url=, not both")
        return key_source_from_public_key(public_key), None
    if jwks_url is not None:
        url = validate_endpoint(jwks_url, what="jwks_url")
    elif environment is not None:
        url = jwks_url_for(environment)
    else:
        parts = urlsplit(endpoint)
        url = f"{parts.scheme}://{parts.netloc}{JWKS_PATH}"
    return JwksKeySource(url, transport=transport, clock=clock), url


def exchange_bound(deadline: float) -> float:
    """Seconds a renewal may hold its tenant's fleet lock: the call's ``deadline`` and a margin.

    Every request and wait of the call ends within ``deadline``; the margin covers what runs
    after the answer (validation, storing the ticket), so the lock cannot run out under a
    holder that is still working.
    """
    return deadline + _LEASE_MARGIN


def check_deadline(deadline: object) -> float:
    """Return ``deadline=`` (seconds one call may take in all) as a float.

    Raises:
        ConfigurationError: not a positive number of seconds of at most 3600.
    """
    if (
        isinstance(deadline, bool)
        or not isinstance(deadline, (int, float))
        or not 0 < deadline <= _MAX_DEADLINE
    ):
        raise ConfigurationError(
            "deadline must be a positive number of seconds, at most 3600; unbounded calls are refused"
        )
    return float(deadline)
