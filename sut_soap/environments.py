"""SuperOffice CRM Online environments and the endpoint rules.

Each environment has its own login host: ``sod`` (development), ``qaonline`` (stage; older
material calls it ``stage``) and ``online`` (production). The service WSDL's own
``soap:address`` points at internal SuperOffice hosts and is never used: the endpoint is
always derived from the environment or given explicitly, and must be HTTPS unless it is a
loopback address (the bundled emulator and local test servers).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .contract import JWKS_PATH, REST_PATH, SERVICE_PATH
from .errors import ConfigurationError

__all__ = [
    "ENVIRONMENTS",
    "endpoint_for",
    "is_loopback_host",
    "jwks_url_for",
    "normalise_environment",
    "resolve_endpoint",
    "rest_endpoint_for",
    "validate_endpoint",
]

ENVIRONMENTS: dict[str, str] = {
    "sod": "https://sod.superoffice.com",
    "qaonline": "https://qaonline.superoffice.com",
    "online": "https://online.superoffice.com",
}
_ALIASES = {"stage": "qaonline"}



def normalise_environment(environment: str) -> str:
    """Return the canonical environment name for ``environment`` (``stage`` -> ``qaonline``).

    Case and surrounding whitespace are ignored.

    Raises:
        ConfigurationError: not a string, or not sod, qaonline, stage or online.
    """
    if not isinstance(environment, str):
        raise ConfigurationError("environment must be a string: one of sod, qaonline, online")
    name = environment.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in ENVIRONMENTS:
        raise ConfigurationError(
            f"unknown environment {environment[:40]!r}",
            hint="use sod (development), qaonline (stage) or online (production), or pass endpoint=",
        )
    return name


def endpoint_for(environment: str) -> str:
    """Return the PartnerSystemUserService URL of a SuperOffice environment.

    Raises:
        ConfigurationError: an unknown environment.
    """
    return ENVIRONMENTS[normalise_environment(environment)] + SERVICE_PATH


def rest_endpoint_for(environment: str) -> str:
    """Return the URL of the REST form of the exchange (``.../Login/api/PartnerSystemUser/Authenticate``).

    Raises:
        ConfigurationError: an unknown environment.
    """
    return ENVIRONMENTS[normalise_environment(environment)] + REST_PATH


def jwks_url_for(environment: str) -> str:
    """Return the JWKS URL holding the keys that sign the environment's JWTs.

    Raises:
        ConfigurationError: an unknown environment.
    """
    return ENVIRONMENTS[normalise_environment(environment)] + JWKS_PATH


def is_loopback_host(host: str) -> bool:
    """Tell whether ``host`` names this machine (localhost, 127.0.0.0/8 or ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_endpoint(url: str, *, what: str = "endpoint") -> str:
    """Check that ``url`` is an absolute https URL (http only on loopback); return it unchanged.

    Args:
        url: the URL to check.
        what: how to name it in errors, such as ``"the JWKS URL"``.

    Raises:
        ConfigurationError: empty, whitespace or control characters, unparseable (a bad port
            included), not http(s) or without a host, credentials (``user:password@``), a
            ``#fragment``, or plain http to a host that is not loopback.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{what} is empty")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise ConfigurationError(f"{what} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        raise ConfigurationError(f"{what} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"{what} must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"{what} must not carry credentials (user:password@)")
    if parts.fragment:
        raise ConfigurationError(f"{what} must not have a #fragment")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigurationError(
            f"{what} uses plain http to {host}: the client secret and signed token would travel unencrypted",
            hint="use https:// (plain http is only allowed to loopback, such as the bundled emulator)",
        )
    return url


def resolve_endpoint(*, environment: str | None, endpoint: str | None, path: str = SERVICE_PATH) -> str:
    """Return the service URL from exactly one of ``environment`` or ``endpoint``.

    ``path`` is the service's path below an environment's base URL: the SOAP service's by
    default, :data:`~sut_soap.contract.REST_PATH` for the REST form.

    Raises:
        ConfigurationError: both or neither given, an unknown environment, or an endpoint
            that :func:`validate_endpoint` refuses.
    """
    if environment is not None and endpoint is not None:
        raise ConfigurationError("give either environment= or endpoint=, not both")
    if endpoint is not None:
        return validate_endpoint(endpoint)
    if environment is None:
        raise ConfigurationError(
            "no endpoint", hint="pass environment='sod' | 'qaonline' | 'online' or endpoint='https://...'"
        )
    return ENVIRONMENTS[normalise_environment(environment)] + path
