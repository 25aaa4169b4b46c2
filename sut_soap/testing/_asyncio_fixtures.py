"""The pytest plugin's async fixture, registered by :mod:`sut_soap.testing.pytest_plugin` when pytest-asyncio is active.

A module of its own because ``pytest_asyncio.fixture`` must decorate it: the plugin imports it
only once pytest-asyncio's plugin is loaded, so a suite without pytest-asyncio never imports
it (and gets the plugin's explanation instead of an unrun coroutine).
"""

from __future__ import annotations

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

    try:
        client = AsyncSystemUserClient(
            client_secret=superoffice_client_secret,
            private_key=superoffice_partner_key,
            endpoint=superoffice_emulator.endpoint,
        )
    except ConfigurationError as error:  # aiohttp missing: say what to install, not where it was found missing
        pytest.fail(f"superoffice_async_client cannot be made: {error}", pytrace=False)
    async with client:
        yield client
