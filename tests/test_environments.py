"""Environments and endpoint rules."""

from __future__ import annotations

import pytest

from sut_soap.environments import (
    endpoint_for,
    is_loopback_host,
    jwks_url_for,
    normalise_environment,
    resolve_endpoint,
    validate_endpoint,
)
from sut_soap.errors import ConfigurationError


@pytest.mark.parametrize(
    ("env", "host"),
    [("sod", "sod"), ("qaonline", "qaonline"), ("stage", "qaonline"), ("online", "online"), (" Online ", "online")],
)
def test_environment_urls(env: str, host: str) -> None:
    """Each environment (and the stage alias) maps to its documented service and JWKS URLs."""
    assert endpoint_for(env) == f"https://{host}.superoffice.com/Login/Services/PartnerSystemUserService.svc"
    assert jwks_url_for(env) == f"https://{host}.superoffice.com/login/.well-known/jwks"


def test_unknown_environment_refused() -> None:
    """An unknown environment name is a ConfigurationError naming the choices."""
    with pytest.raises(ConfigurationError, match="sod"):
        normalise_environment("production")


@pytest.mark.parametrize(
    "url",
    [
        "https://online.superoffice.com/Login/Services/PartnerSystemUserService.svc",
        "http://127.0.0.1:8080/Login/Services/PartnerSystemUserService.svc",
        "http://localhost:1/x",
        "http://[::1]:9/x",
        "http://127.5.6.7/x",
    ],
)
def test_endpoint_accepted(url: str) -> None:
    """https anywhere and plain http on loopback are accepted unchanged."""
    assert validate_endpoint(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://online.superoffice.com/Login/Services/PartnerSystemUserService.svc", "plain http"),
        ("http://10.0.0.1/x", "plain http"),
        ("ftp://online.superoffice.com/x", "absolute https"),
        ("online.superoffice.com/x", "absolute https"),
        ("https://user:pw@online.superoffice.com/x", "credentials"),
        ("https://online.superoffice.com/x#frag", "fragment"),
        ("https://online.superoffice.com/x y", "whitespace"),
        ("", "empty"),
        ("https://[::1/x", "valid URL"),
    ],
)
def test_endpoint_refused(url: str, why: str) -> None:
    """Endpoints that would leak secrets or are not URLs are refused before any I/O."""
    with pytest.raises(ConfigurationError, match=why):
        validate_endpoint(url)


def test_resolve_requires_exactly_one() -> None:
    """Exactly one of environment= and endpoint= must be given."""
    with pytest.raises(ConfigurationError, match="either"):
        resolve_endpoint(environment="sod", endpoint="https://x.example/y")
    with pytest.raises(ConfigurationError, match="no endpoint"):
        resolve_endpoint(environment=None, endpoint=None)


@pytest.mark.parametrize(
    ("host", "expected"),
    [("localhost", True), ("127.0.0.1", True), ("::1", True), ("[::1]", True),
     ("example.com", False), ("10.1.2.3", False), ("localhost.example.com", False)],
)
def test_loopback_detection(host: str, expected: bool) -> None:
    """Only names and addresses of this machine count as loopback."""
    assert is_loopback_host(host) is expected


def test_environment_must_be_a_string() -> None:
    """A non-string environment is refused, listing the valid names."""
    with pytest.raises(ConfigurationError, match="sod, qaonline, online"):
        normalise_environment(None)  # type: ignore[arg-type]
