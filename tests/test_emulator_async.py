"""The emulator's faults and refusals seen through AsyncSystemUserClient on its default transport (aiohttp), on a real
loop: the ones tests/test_both_clients.py does not already run over both clients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from jwt_factory import rsa_key

from sut_soap import (
    AsyncSystemUserClient,
    AuthenticationRejectedError,
    ProtocolError,
    SoapFaultError,
    TokenValidationError,
    TransportError,
)
from sut_soap.testing.emulator import Emulator, Fault, Reason

pytestmark = pytest.mark.network

PARTNER_KEY = rsa_key(9)
CLIENT_SECRET = "emulator-async-canary-secret-c3"
CTX = "Cust12345"
TOKEN = "Emulator Async Sync-canary7J"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with the tenant CTX."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        yield emu


def _client(emu: Emulator, **options: Any) -> AsyncSystemUserClient:
    settings: dict[str, Any] = {"client_secret": CLIENT_SECRET, "private_key": PARTNER_KEY, "endpoint": emu.endpoint}
    settings.update(options)
    return AsyncSystemUserClient(**settings)


async def _authenticate(emu: Emulator, context: str = CTX, **options: Any) -> None:
    async with _client(emu, **options) as client:
        await client.authenticate(context_identifier=context, system_user_token=TOKEN)


@pytest.mark.asyncio
async def test_soap_fault_500_is_a_soap_fault_error(emu: Emulator) -> None:
    """SOAP_FAULT_500 is a SoapFaultError with status 500 and the fault's code, after one exchange."""
    emu.inject(Fault.SOAP_FAULT_500, message="boom", times=1)
    with pytest.raises(SoapFaultError) as info:
        await _authenticate(emu)
    assert info.value.status == 500 and info.value.fault_code
    assert emu.exchange_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", [Fault.EMPTY_BODY, Fault.TRUNCATED_BODY])
async def test_broken_answers_are_protocol_errors(emu: Emulator, fault: Fault) -> None:
    """An empty or truncated answer read by aiohttp is a ProtocolError."""
    emu.inject(fault, times=1)
    with pytest.raises(ProtocolError):
        await _authenticate(emu)


@pytest.mark.asyncio
async def test_expired_token_fails_the_expiry_check(emu: Emulator) -> None:
    """EXPIRED_TOKEN's JWT is refused by the async client's validator with check 'expiry'."""
    emu.inject(Fault.EXPIRED_TOKEN, times=1)
    with pytest.raises(TokenValidationError) as info:
        await _authenticate(emu)
    assert info.value.check == "expiry"


@pytest.mark.asyncio
async def test_dripped_answer_is_cut_at_the_deadline(emu: Emulator) -> None:
    """An answer dripped one byte per 0.2 s ends in a retryable TransportError at the 1 s deadline."""
    emu.inject(Fault.DRIP, seconds=0.2, times=1)
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        await _authenticate(emu, deadline=1.0)
    assert time.monotonic() - started < 2.0 and info.value.retryable is True


@pytest.mark.asyncio
async def test_dripped_jwks_is_cut_at_the_deadline(emu: Emulator) -> None:
    """A JWKS dripped one byte per 0.05 s holds the async client's fetch; the call fails retryably at its 1 s deadline."""
    emu.inject(Fault.JWKS_DRIP, seconds=0.05, times=1)
    exchanges, fetches = emu.exchange_count, emu.jwks_count
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        await _authenticate(emu, deadline=1.0)
    assert time.monotonic() - started < 2.0 and info.value.retryable is True
    assert (emu.exchange_count, emu.jwks_count) == (exchanges + 1, fetches + 1)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("options", "context", "reason"),
    [
        ({"client_secret": "not-the-application-token"}, CTX, Reason.INVALID_APPLICATION_TOKEN),
        ({}, "Cust00001", Reason.UNKNOWN_TENANT),
        ({"private_key": rsa_key(10)}, CTX, Reason.INVALID_SIGNATURE),
        ({"clock": lambda: datetime.now(timezone.utc) - timedelta(hours=2)}, CTX, Reason.INVALID_TIMESTAMP),
    ],
    ids=["application-token", "tenant", "signature", "timestamp"],
)
async def test_refusals_are_rejections_with_the_emulators_reason(
    emu: Emulator, options: dict[str, Any], context: str, reason: Reason
) -> None:
    """A wrong client secret, tenant, key or clock is an AuthenticationRejectedError carrying the emulator's reason."""
    with pytest.raises(AuthenticationRejectedError) as info:
        await _authenticate(emu, context, **options)
    assert info.value.error_message.startswith(reason)
    assert info.value.retryable is False
