"""The pytest plugin's async fixture, registered by :mod:`sut_soap.testing.pytest_plugin` when pytest-asyncio is active.

A module of its own because ``pytest_asyncio.fixture`` must decorate it: the plugin imports it
only once pytest-asyncio's plugin is loaded, so a suite without pytest-asyncio never imports
it (and gets the plugin's explanation instead of an unrun coroutine).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from sut_soap.async_client import AsyncSystemUserClient
    from sut_soap.testing.emulator import Emulator

__all__ = ["superoffice_async_client"]


@pytest_asyncio.fixture
async def superoffice_async_client(
    superoffice_emulator: Emulator,
    superoffice_partner_key: rsa.RSAPrivateKey,
    superoffice_client_secret: str,
) -> AsyncIterator[AsyncSystemUserClient]:
    """An AsyncSystemUserClient bound to the emulator, made and closed (``aclose``) on the test's event loop."""
    from sut_soap.async_client import AsyncSystemUserClient
    from sut_soap.errors import ConfigurationError

    client: AsyncSystemUserClient | None = None
    # The one ConfigurationError possible here is aiohttp missing; it is said after the block, so
    # the report shows no exception chain.
    with contextlib.suppress(ConfigurationError):
        client = AsyncSystemUserClient(
            client_secret=superoffice_client_secret,
            private_key=superoffice_partner_key,
            endpoint=superoffice_emulator.endpoint,
        )
    if client is None:
        pytest.fail(
            "superoffice_async_client needs aiohttp (the async client's default transport), which is not "
            "installed: pip install 'sut-soap[async]', or override the fixture with a transport= of yours",
            pytrace=False,
        )
    async with client:
        yield client
