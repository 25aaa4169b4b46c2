"""Environments and endpoint rules: URLs per environment, endpoint checks, loopback, resolve_endpoint."""

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
        ("https:///Login/Services/PartnerSystemUserService.svc", "absolute https"),
        ("https://example.com:99999/x", "valid URL"),
        ("https://user@example.com/x", "credentials"),
        ("https://:pw@example.com/x", "credentials"),
    ],
)
def test_endpoint_refused(url: str, why: str) -> None:
    """Endpoints that would leak secrets (credentials even alone) or are not URLs (no host, bad port) are refused."""
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
     ("example.com", False), ("10.1.2.3", False), ("localhost.example.com", False),
     ("app.localhost", True), ("App.LocalHost", True), ("[LOCALHOST]", True),
     ("XLOCALHOST", False), ("localhostX", False), ("x127.0.0.1", False)],
)
def test_loopback_detection(host: str, expected: bool) -> None:
    """Only names and addresses of this machine count as loopback: *.localhost in any case, brackets stripped."""
    assert is_loopback_host(host) is expected


def test_environment_must_be_a_string() -> None:
    """A non-string environment is refused, listing the valid names."""
    with pytest.raises(ConfigurationError, match="sod, qaonline, online"):
        normalise_environment(None)  # type: ignore[arg-type]


def test_endpoint_errors_name_the_setting() -> None:
    """By default the error names the endpoint; what= renames it."""
    with pytest.raises(ConfigurationError, match=r"^endpoint is empty"):
        validate_endpoint("")
    with pytest.raises(ConfigurationError, match=r"^the JWKS URL is empty"):
        validate_endpoint("", what="the JWKS URL")


def test_printable_ascii_boundaries_in_urls() -> None:
    """'!' (0x21) is allowed in a URL, DEL (0x7f) is refused like other control characters."""
    assert validate_endpoint("https://example.com/a!b") == "https://example.com/a!b"
    assert validate_endpoint("https://example.com/a\x80b") == "https://example.com/a\x80b"
    with pytest.raises(ConfigurationError, match="control characters"):
        validate_endpoint("https://example.com/a\x7fb")


def test_plain_http_refusal_hints_at_https() -> None:
    """Refusing plain http tells the user to use https://."""
    with pytest.raises(ConfigurationError) as info:
        validate_endpoint("http://example.com/x")
    assert info.value.hint.startswith("use https://")
    assert "loopback" in info.value.hint


def test_resolve_endpoint_with_exactly_one_choice() -> None:
    """environment= alone gives the environment's URL; endpoint= alone is validated and returned."""
    assert resolve_endpoint(environment="sod", endpoint=None).startswith("https://sod.superoffice.com/")
    assert resolve_endpoint(environment=None, endpoint="https://x.example/y") == "https://x.example/y"
    with pytest.raises(ConfigurationError, match="plain http"):
        resolve_endpoint(environment=None, endpoint="http://x.example/y")


def test_resolve_endpoint_without_choice_hints_at_both() -> None:
    """With neither environment= nor endpoint=, the hint names both options."""
    with pytest.raises(ConfigurationError, match="no endpoint") as info:
        resolve_endpoint(environment=None, endpoint=None)
    assert "environment=" in info.value.hint
    assert "endpoint=" in info.value.hint
