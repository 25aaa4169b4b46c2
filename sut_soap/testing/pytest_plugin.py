"""pytest fixtures for testing code that uses sut-soap against the bundled emulator.

Installed with sut-soap and registered through the ``pytest11`` entry point, so the fixtures
are there in any test suite without a ``conftest.py`` line (``-p no:sut_soap`` turns the
plugin off). Importing it costs nothing: the emulator, zeep and the keys load when a test
first asks for a fixture.

``superoffice_emulator``
    A running :class:`~sut_soap.testing.Emulator` on loopback, started once per test session
    and :meth:`~sut_soap.testing.Emulator.reset` after every test (faults, recorded requests,
    counters, added tenants and rotated keys undone), so tests do not see each other's faults.
``superoffice_tenant``
    The tenant registered in it (an :class:`~sut_soap.testing.Tenant`: ``context_identifier``,
    ``system_user_token``, ``serial``).
``superoffice_partner_key``
    The partner application's RSA private key whose public half the emulator checks
    signatures with (session-scoped, generated for the session, never written to disk).
``superoffice_client_secret``
    The client secret the emulator expects (a throwaway value).
``superoffice_client``
    A :class:`~sut_soap.SystemUserClient` bound to the emulator, closed after the test.
``superoffice_async_client``
    An :class:`~sut_soap.AsyncSystemUserClient` bound to the emulator, for tests marked
    ``@pytest.mark.asyncio``: an async fixture of pytest-asyncio (strict or auto mode), made
    on the event loop of pytest-asyncio's ``asyncio_default_fixture_loop_scope`` (the test's
    own, by default) and closed with ``await client.aclose()`` after the test. It needs
    ``sut-soap[async]`` (aiohttp) and pytest-asyncio; the plugin itself needs neither. Without
    pytest-asyncio (not installed, or ``-p no:asyncio``) a test asking for it fails with one
    line saying to install pytest-asyncio, and nothing else changes. A test on a wider loop
    (``@pytest.mark.asyncio(loop_scope="module")``) should get its client on that loop: set
    ``asyncio_default_fixture_loop_scope`` to the same scope, or override the fixture.

The fixture names share the ``superoffice_`` prefix so they do not shadow a suite's own
``client`` or ``tenant`` fixtures. To change one, override it in your ``conftest.py``; for
example a ``superoffice_client`` built with your own options::

    @pytest.fixture
    def superoffice_client(superoffice_emulator, superoffice_partner_key, superoffice_client_secret):
        with SystemUserClient(client_secret=superoffice_client_secret, private_key=superoffice_partner_key,
                              endpoint=superoffice_emulator.endpoint, refresh_ahead=60) as client:
            yield client

Under anyio's pytest plugin instead of pytest-asyncio, write the async fixture in your
``conftest.py`` the same way, as a plain ``@pytest.fixture`` ``async def`` with
``async with AsyncSystemUserClient(...) as client: yield client``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from sut_soap.client import SystemUserClient
    from sut_soap.testing.emulator import Emulator, Tenant

__all__ = [
    "pytest_configure",
    "superoffice_client",
    "superoffice_client_secret",
    "superoffice_emulator",
    "superoffice_partner_key",
    "superoffice_tenant",
]

CONTEXT_IDENTIFIER = "Cust12345"
SYSTEM_USER_TOKEN = "Plugin Sync-1a2B3c4D5e"  # noqa: S105 -- a throwaway value the emulator knows
SERIAL = "1234567"


@pytest.fixture(scope="session")
def superoffice_partner_key() -> rsa.RSAPrivateKey:
    """The partner's RSA-2048 private key, registered with the emulator for this session."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def superoffice_client_secret() -> str:
    """The client secret (ApplicationToken) the emulator expects; random per session."""
    return "plugin-" + secrets.token_urlsafe(18)


@pytest.fixture(scope="session")
def _superoffice_emulator_session(
    superoffice_partner_key: rsa.RSAPrivateKey, superoffice_client_secret: str
) -> Iterator[Emulator]:
    """One emulator for the whole session, with the default tenant, stopped at the end."""
    from sut_soap.testing.emulator import Emulator

    emulator = Emulator(superoffice_client_secret, superoffice_partner_key)
    emulator.add_tenant(CONTEXT_IDENTIFIER, system_user_token=SYSTEM_USER_TOKEN, serial=SERIAL)
    with emulator:
        yield emulator


@pytest.fixture
def superoffice_emulator(_superoffice_emulator_session: Emulator) -> Iterator[Emulator]:
    """The session's running emulator, reset after this test."""
    try:
        yield _superoffice_emulator_session
    finally:
        _superoffice_emulator_session.reset()


@pytest.fixture
def superoffice_tenant(superoffice_emulator: Emulator) -> Tenant:
    """The tenant registered in the emulator (context identifier, system user token, serial)."""
    return superoffice_emulator.tenants[CONTEXT_IDENTIFIER]


@pytest.fixture
def superoffice_client(
    superoffice_emulator: Emulator,
    superoffice_partner_key: rsa.RSAPrivateKey,
    superoffice_client_secret: str,
) -> Iterator[SystemUserClient]:
    """A SystemUserClient bound to the emulator (its endpoint and JWKS), closed after the test."""
    from sut_soap.client import SystemUserClient

    with SystemUserClient(
        client_secret=superoffice_client_secret,
        private_key=superoffice_partner_key,
        endpoint=superoffice_emulator.endpoint,
    ) as client:
        yield client


class _WithoutPytestAsyncio:
    """The plugin's stand-in for ``superoffice_async_client`` when pytest-asyncio is not active."""

    @pytest.fixture
    def superoffice_async_client(self) -> NoReturn:
        """Fail the test in one line: the async fixture needs pytest-asyncio."""
        pytest.fail(
            "superoffice_async_client is an async fixture of pytest-asyncio, which is not installed or not "
            "active (-p no:asyncio): pip install pytest-asyncio, and mark the test @pytest.mark.asyncio",
            pytrace=False,
        )


def pytest_configure(config: pytest.Config) -> None:
    """Add ``superoffice_async_client``: pytest-asyncio's async fixture when its plugin is loaded, else the stand-in."""
    if config.pluginmanager.has_plugin("asyncio"):
        from sut_soap.testing import _asyncio_fixtures

        plugin: object = _asyncio_fixtures
    else:
        plugin = _WithoutPytestAsyncio()
    config.pluginmanager.register(plugin, "sut_soap.async_client_fixture")
