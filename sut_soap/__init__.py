"""sut-soap: SuperOffice system user tickets over the PartnerSystemUserService SOAP endpoint.

Kept light on purpose: the client (and with it zeep) is imported on first use, so the
command line starts fast.
"""

from __future__ import annotations

from .errors import (
    AuthenticationRejectedError,
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    TenantNotRunningError,
    TokenValidationError,
    TransportError,
)

# Not typing.TYPE_CHECKING: importing typing costs the command line about 10 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._clock import Clock
    from .apiauth import AsyncTenantAuth, TenantAuth
    from .async_client import AsyncSystemUserClient
    from .async_redis_store import AsyncRedisTicketCache
    from .cache import AsyncTicketCache, CachedTicket, InMemoryTicketCache, LockingTicketCache, TicketCache
    from .client import SystemUserClient
    from .keys import load_private_key
    from .redis_store import RedisTicketCache
    from .retry import RetryPolicy
    from .signing import sign_system_user_token
    from .tenantstate import TenantState
    from .ticket import SystemUserTicket
    from .transport import (
        AsyncTransport,
        HeaderMap,
        HttpResponse,
        HttpTransport,
        Response,
        ThreadedAsyncTransport,
        Transport,
    )

__version__ = "0.1.0"

__all__ = [
    "AsyncRedisTicketCache",
    "AsyncSystemUserClient",
    "AsyncTenantAuth",
    "AsyncTicketCache",
    "AsyncTransport",
    "AuthenticationRejectedError",
    "CachedTicket",
    "Clock",
    "ConfigurationError",
    "HeaderMap",
    "HttpResponse",
    "HttpTransport",
    "InMemoryTicketCache",
    "LockingTicketCache",
    "ProtocolError",
    "RedisTicketCache",
    "Response",
    "RetryPolicy",
    "SoapFaultError",
    "SutSoapError",
    "SystemUserClient",
    "SystemUserTicket",
    "TenantAuth",
    "TenantNotRunningError",
    "TenantState",
    "ThreadedAsyncTransport",
    "TicketCache",
    "TokenValidationError",
    "Transport",
    "TransportError",
    "__version__",
    "load_private_key",
    "sign_system_user_token",
]

_LAZY = {
    "AsyncRedisTicketCache": "async_redis_store",
    "AsyncSystemUserClient": "async_client",
    "AsyncTenantAuth": "apiauth",
    "AsyncTicketCache": "cache",
    "AsyncTransport": "transport",
    "CachedTicket": "cache",
    "Clock": "_clock",
    "HeaderMap": "transport",
    "HttpResponse": "transport",
    "HttpTransport": "transport",
    "InMemoryTicketCache": "cache",
    "LockingTicketCache": "cache",
    "RedisTicketCache": "redis_store",
    "Response": "transport",
    "RetryPolicy": "retry",
    "SystemUserClient": "client",
    "SystemUserTicket": "ticket",
    "TenantAuth": "apiauth",
    "TenantState": "tenantstate",
    "ThreadedAsyncTransport": "transport",
    "TicketCache": "cache",
    "Transport": "transport",
    "load_private_key": "keys",
    "sign_system_user_token": "signing",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use, then keep the name in the package."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sut_soap' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (``__all__``), loaded or not."""
    return sorted(__all__)
