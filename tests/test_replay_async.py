"""Replaying recordings in the async client: replay_client(..., asynchronous=True) and AsyncReplayTransport on
fixtures/recordings (SOAP and REST) with every internet socket disabled, on a real event loop; the request check
and its diffs, recorded failures raised again, repeat, and the options of replay_client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_socket
from jwt_factory import public_pem, rsa_key
from support import FIXTURE_OUTCOMES, RECORDINGS, error_texts, recorded_exchange

from sut_soap import (
    AsyncSystemUserClient,
    AuthenticationRejectedError,
    ConfigurationError,
    SutSoapError,
    SystemUserTicket,
    TokenValidationError,
    TransportError,
)
from sut_soap.testing import (
    AsyncReplayClient,
    AsyncReplayTransport,
    Recording,
    ReplayMismatch,
    mint_test_jwt,
    replay_client,
)

CTX = "Cust12345"
CLIENT_SECRET = "replay-async-canary-secret-41cd"
SYSTEM_USER_TOKEN = "Replay Async Sync-canary8W"
TICKET = "7T:replay-async-canary-ticket-98765"


@pytest.fixture(autouse=True)
def no_internet_socket() -> Iterator[None]:
    """Every AF_INET/AF_INET6 socket fails to be made; the event loop's own socketpair (AF_UNIX) is allowed."""
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()


def _client(name: str, **options: object) -> AsyncReplayClient:
    settings: dict[str, object] = {"client_secret": CLIENT_SECRET, "ticket": TICKET}
    settings.update(options)
    return replay_client(RECORDINGS / name, asynchronous=True, **settings)  # type: ignore[arg-type]


async def _authenticate(client: AsyncSystemUserClient, ctx: str = CTX) -> SystemUserTicket:
    return await client.authenticate(context_identifier=ctx, system_user_token=SYSTEM_USER_TOKEN)


@pytest.mark.asyncio
async def test_internet_sockets_are_blocked() -> None:
    """In this module, on the running loop, making an internet socket fails."""
    with pytest.warns(UserWarning, match="socket"), pytest.raises(pytest_socket.SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


@pytest.mark.asyncio
async def test_asynchronous_replay_client_is_an_async_client_on_an_async_replay() -> None:
    """replay_client(..., asynchronous=True) is an AsyncReplayClient whose transport and .replay are one AsyncReplayTransport."""
    client = _client("success")
    assert isinstance(client, AsyncSystemUserClient)
    assert isinstance(client.replay, AsyncReplayTransport)
    assert client.transport is client.replay
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(FIXTURE_OUTCOMES))
async def test_fixture_outcome(name: str) -> None:
    """Each fixture, SOAP or REST, replays in the async client to a ticket or exactly its documented error class."""
    error_class, check = FIXTURE_OUTCOMES[name]
    async with _client(name) as client:
        for ctx in [CTX, "Cust67890"] if name == "two-tenants" else [CTX]:
            if error_class is None:
                assert (await _authenticate(client, ctx)).context_identifier == ctx
                continue
            with pytest.raises(SutSoapError) as info:
                await _authenticate(client, ctx)
            assert type(info.value) is error_class
            if check is not None:
                assert isinstance(info.value, TokenValidationError) and info.value.check == check
            text = "\n".join(error_texts(info.value))
            assert CLIENT_SECRET not in text and SYSTEM_USER_TOKEN not in text and TICKET not in text
        client.replay.assert_all_used()


@pytest.mark.asyncio
async def test_success_gives_the_same_ticket_as_the_sync_replay() -> None:
    """The async replay of success gives the ticket the sync replay gives: same ticket, tenant, serial and URLs."""
    async with _client("success") as client:
        got = await _authenticate(client)
    with replay_client(RECORDINGS / "success", client_secret=CLIENT_SECRET, ticket=TICKET) as sync_client:
        expected = sync_client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    fields = ("ticket", "context_identifier", "serial", "webapi_url", "netserver_url", "associate_id")
    assert [getattr(got, f) for f in fields] == [getattr(expected, f) for f in fields]
    assert got.ticket == TICKET


@pytest.mark.asyncio
async def test_rest_fixture_replays_over_rest() -> None:
    """A recording of the REST endpoint makes a REST async client whose request is the documented JSON."""
    async with _client("rest-success") as client:
        assert client.protocol == "rest"
        await _authenticate(client)
    (sent,) = client.replay.sent
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.address.endswith("/Login/api/PartnerSystemUser/Authenticate")


@pytest.mark.asyncio
async def test_get_ticket_caches_the_replayed_ticket() -> None:
    """get_ticket on the async replay exchanges once; the second call is answered from the cache."""
    async with _client("success") as client:
        first = await client.get_ticket(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        second = await client.get_ticket(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert first is second and len(client.replay.sent) == 1


@pytest.mark.asyncio
async def test_request_for_another_tenant_fails_with_a_diff() -> None:
    """A request that differs from the recording is a ReplayMismatch with a diff naming the tenant sent, secrets masked."""
    async with _client("success") as client:
        with pytest.raises(ReplayMismatch) as info:
            await _authenticate(client, "Cust99999")
    text = str(info.value)
    assert "--- recorded request" in text and "+++ sent request" in text
    assert '"Cust99999"' in text and CLIENT_SECRET not in text
    assert client.replay.mismatches == [text.removesuffix("\n(re-record, or pass check_request=False)")]


@pytest.mark.asyncio
async def test_rest_mismatch_names_the_json_member() -> None:
    """On a REST recording, the diff shows the JSON member that differs."""
    async with _client("rest-success") as client:
        with pytest.raises(ReplayMismatch) as info:
            await _authenticate(client, "Cust99999")
    assert '"ContextIdentifier" "Cust99999"' in str(info.value)


@pytest.mark.asyncio
async def test_mismatch_escapes_the_callers_except_exception() -> None:
    """ReplayMismatch is not an Exception: an ``except Exception`` around the await does not swallow it."""
    async with _client("success") as client:
        with pytest.raises(ReplayMismatch):
            try:
                await _authenticate(client, "Cust99999")
            except Exception:  # what code under test might do
                pytest.fail("the mismatch was swallowed")


@pytest.mark.asyncio
async def test_check_request_false_accepts_another_tenant() -> None:
    """With check_request=False the recorded rejection answers a request for any tenant."""
    async with _client("rejection", check_request=False) as client:
        with pytest.raises(AuthenticationRejectedError, match="NeedsReapproval"):
            await _authenticate(client, "Cust99999")


@pytest.mark.asyncio
async def test_more_requests_than_recorded_is_a_mismatch() -> None:
    """A second exchange against a one-exchange recording is a ReplayMismatch saying how many were recorded."""
    async with _client("success") as client:
        await _authenticate(client)
        with pytest.raises(ReplayMismatch, match="holds only 1 exchange"):
            await _authenticate(client)


@pytest.mark.asyncio
async def test_repeat_answers_again_with_the_last_exchange() -> None:
    """repeat=True answers any further request with the last recorded exchange."""
    async with _client("success", repeat=True) as client:
        tickets = [(await _authenticate(client)).ticket for _ in range(3)]
    assert tickets == [TICKET] * 3 and len(client.replay.sent) == 3


@pytest.mark.asyncio
async def test_assert_all_used_names_what_was_never_requested() -> None:
    """On a two-exchange recording, assert_all_used fails after one request and passes after both."""
    async with _client("two-tenants", ticket=None) as client:
        await _authenticate(client, CTX)
        with pytest.raises(ReplayMismatch, match=r"^1 of 2 recorded exchanges were never requested$"):
            client.replay.assert_all_used()
        await _authenticate(client, "Cust67890")
        client.replay.assert_all_used()


@pytest.mark.asyncio
async def test_recorded_disconnect_is_raised_again_as_retryable() -> None:
    """A recorded dropped connection is raised again in the async client as a retryable TransportError."""
    async with _client("disconnect") as client:
        with pytest.raises(TransportError) as info:
            await _authenticate(client)
    assert info.value.retryable is True and info.value.status is None


@pytest.mark.asyncio
async def test_recorded_disconnect_is_retried_by_get_ticket_with_repeat() -> None:
    """get_ticket with a retry policy retries a recorded dropped connection (repeat=True answering again), then raises it."""
    from sut_soap import RetryPolicy

    waits: list[float] = []
    async with _client("disconnect", repeat=True, retry=RetryPolicy(attempts=3, sleep=waits.append)) as client:
        with pytest.raises(TransportError) as info:
            await client.get_ticket(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert info.value.retryable is True and len(client.replay.sent) == 3 and len(waits) == 2


@pytest.mark.asyncio
async def test_given_jwt_needs_its_public_key() -> None:
    """With jwt= the async replay validates with public_key= and returns that JWT's ticket."""
    key = rsa_key(6)
    with pytest.raises(ConfigurationError, match="public_key"):
        replay_client(RECORDINGS / "success", jwt=mint_test_jwt(key), asynchronous=True)
    jwt = mint_test_jwt(key, ticket="7T:given-async")
    async with replay_client(RECORDINGS / "success", jwt=jwt, public_key=public_pem(key), asynchronous=True) as client:
        assert (await _authenticate(client)).ticket == "7T:given-async"


@pytest.mark.asyncio
async def test_own_jwt_key_signs_the_recorded_claims() -> None:
    """jwt_key= re-signs the recorded claims with that key; the ticket's JWT verifies with its public half."""
    from sut_soap.tokens import StaticKeySource, TokenValidator

    key = rsa_key(5)
    async with _client("success", jwt_key=key) as client:
        got = await _authenticate(client)
    claims = TokenValidator(StaticKeySource([(None, key.public_key())])).validate(got.token, context_identifier=CTX)
    assert claims["http://schemes.superoffice.net/identity/ticket"] == TICKET


@pytest.mark.asyncio
async def test_client_without_public_key_cannot_fetch_the_jwks() -> None:
    """An async client on an AsyncReplayTransport without public_key= reaches for the JWKS: the replay says why."""
    key = rsa_key()
    transport = AsyncReplayTransport(RECORDINGS / "success", jwt=mint_test_jwt(key))
    async with AsyncSystemUserClient(
        client_secret=CLIENT_SECRET, private_key=key, endpoint=transport.recording.exchanges[0].url, transport=transport
    ) as client:
        with pytest.raises(ReplayMismatch, match="public_key"):
            await _authenticate(client)


@pytest.mark.asyncio
async def test_async_replay_transport_answers_an_inline_recording() -> None:
    """AsyncReplayTransport.request answers a POST from an in-memory Recording, and an oversized answer is refused."""
    from sut_soap import ProtocolError

    exchange = recorded_exchange(response_body=b"x" * 5000)
    transport = AsyncReplayTransport(Recording((exchange, exchange), Path("inline"), {}), check_request=False)
    response = await transport.request("POST", exchange.url, body=b"<x/>", max_bytes=6000)
    assert response.status_code == 200 and response.content == b"x" * 5000
    with pytest.raises(ProtocolError, match="larger than 100 bytes"):
        await transport.request("POST", exchange.url, body=b"<x/>", max_bytes=100)
    await transport.aclose()
