"""Recording with the async client: AsyncRecordingTransport against the emulator on a real loop, the same redaction
and format as RecordingTransport, and recordings made by either client replayed in the other."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jwt_factory import rsa_key

from sut_soap import AsyncSystemUserClient, ConfigurationError, SystemUserClient, TransportError
from sut_soap.testing import (
    AsyncRecordingTransport,
    RecordingTransport,
    load_recording,
    placeholder,
    replay_client,
    scan_for_secrets,
)
from sut_soap.testing.emulator import Emulator, Fault
from sut_soap.transport import HttpTransport, ThreadedAsyncTransport

pytestmark = pytest.mark.network

PARTNER_KEY = rsa_key(8)
CLIENT_SECRET = "recording-async-canary-secret-5b1e"
CTX = "Cust12345"
SYSTEM_USER_TOKEN = "Recording Async Sync-canary2K"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module, with the tenant CTX."""
    with Emulator(client_secret=CLIENT_SECRET, partner_public_key=PARTNER_KEY) as emu:
        emu.add_tenant(CTX, system_user_token=SYSTEM_USER_TOKEN, serial="1234567")
        yield emu


def _async_client(emu: Emulator, transport: object, **options: object) -> AsyncSystemUserClient:
    settings: dict[str, object] = {"public_key": emu.public_key}
    settings.update(options)
    return AsyncSystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint,
        transport=transport, **settings,  # type: ignore[arg-type]
    )


def _sync_client(emu: Emulator, transport: RecordingTransport) -> SystemUserClient:
    return SystemUserClient(
        client_secret=CLIENT_SECRET, private_key=PARTNER_KEY, endpoint=emu.endpoint,
        public_key=emu.public_key, transport=transport,
    )


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.asyncio
async def test_async_recording_replays_in_the_sync_client(emu: Emulator, tmp_path: Path) -> None:
    """A success recorded through the async client, saved redacted, replays in SystemUserClient to the same ticket."""
    recorder = AsyncRecordingTransport(tmp_path / "rec")
    async with _async_client(emu, recorder) as client:
        original = await client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    with replay_client(load_recording(tmp_path / "rec", jwt=original.token), client_secret=CLIENT_SECRET,
                       jwt=original.token, public_key=emu.public_key) as again:
        replayed = again.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        again.replay.assert_all_used()
    assert replayed == dataclasses.replace(original, obtained_at=replayed.obtained_at)


@pytest.mark.asyncio
async def test_sync_recording_replays_in_the_async_client(emu: Emulator, tmp_path: Path) -> None:
    """A success recorded through SystemUserClient replays in the async client to the same ticket."""
    with _sync_client(emu, RecordingTransport(tmp_path / "rec")) as client:
        original = client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    async with replay_client(tmp_path / "rec", client_secret=CLIENT_SECRET, jwt=original.token,
                             public_key=emu.public_key, asynchronous=True) as again:
        replayed = await again.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
        again.replay.assert_all_used()
    assert replayed == dataclasses.replace(original, obtained_at=replayed.obtained_at)


@pytest.mark.asyncio
async def test_async_recording_holds_placeholders_not_secrets(emu: Emulator, tmp_path: Path) -> None:
    """On disk, the async recording holds no client secret, system user token, signed token, JWT or ticket."""
    recorder = AsyncRecordingTransport(tmp_path / "rec")
    async with _async_client(emu, recorder) as client:
        got = await client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    raw = recorder.exchanges[0].request_body or b""
    signed = raw.split(b"<tns:SignedSystemToken>")[1].split(b"<")[0].decode()
    on_disk = b"\n".join(_files(tmp_path / "rec").values())
    for secret in (CLIENT_SECRET, SYSTEM_USER_TOKEN, signed, got.token, got.ticket):
        assert secret.encode() not in on_disk
    assert placeholder("JWT").encode() in on_disk and placeholder("SIGNED_TOKEN").encode() in on_disk
    assert scan_for_secrets(tmp_path / "rec") == []
    assert recorder.saved == sorted((tmp_path / "rec").iterdir())


@pytest.mark.asyncio
async def test_both_clients_record_the_same_request_files(emu: Emulator, tmp_path: Path) -> None:
    """The saved request (envelope and headers) of an async recording is byte for byte the sync one's."""
    with _sync_client(emu, RecordingTransport(tmp_path / "sync")) as client:
        client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    async with _async_client(emu, AsyncRecordingTransport(tmp_path / "async")) as aclient:
        await aclient.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    sync_files, async_files = _files(tmp_path / "sync"), _files(tmp_path / "async")
    assert sorted(sync_files) == sorted(async_files)
    assert sync_files["01-request.xml"] == async_files["01-request.xml"]
    sync_exchange = load_recording(tmp_path / "sync").exchanges[0]
    async_exchange = load_recording(tmp_path / "async").exchanges[0]
    assert sync_exchange.request_headers == async_exchange.request_headers
    assert "AsyncRecordingTransport" in async_exchange.source


@pytest.mark.asyncio
async def test_failed_exchange_is_recorded_and_replays_as_the_same_error(emu: Emulator, tmp_path: Path) -> None:
    """A dropped connection under the async client is an error entry that replays, in both clients, as a retryable TransportError."""
    emu.inject(Fault.DISCONNECT, times=1)
    async with _async_client(emu, AsyncRecordingTransport(tmp_path / "rec")) as client:
        with pytest.raises(TransportError):
            await client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    (exchange,) = load_recording(tmp_path / "rec").exchanges
    assert exchange.error is not None and exchange.error.type == "sut_soap.errors.TransportError"
    assert exchange.response_body is None
    with replay_client(tmp_path / "rec") as sync_again, pytest.raises(TransportError) as sync_error:
        sync_again.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    async with replay_client(tmp_path / "rec", asynchronous=True) as async_again:
        with pytest.raises(TransportError) as async_error:
            await async_again.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert sync_error.value.retryable is async_error.value.retryable is True


@pytest.mark.asyncio
async def test_jwks_fetch_passes_through_unrecorded(emu: Emulator, tmp_path: Path) -> None:
    """Without public_key= the async client fetches the JWKS through the recorder; only the POST is recorded."""
    recorder = AsyncRecordingTransport(tmp_path / "rec")
    fetches = emu.jwks_count
    async with _async_client(emu, recorder, public_key=None, jwks_url=emu.jwks_url) as client:
        await client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert emu.jwks_count == fetches + 1
    assert [e.url for e in recorder.exchanges] == [emu.endpoint]


@pytest.mark.asyncio
async def test_recording_wraps_another_async_transport(emu: Emulator, tmp_path: Path) -> None:
    """transport= sends through any AsyncTransport (here a sync HttpTransport in threads); inner is it, aclose closes it."""
    inner = ThreadedAsyncTransport(HttpTransport())
    recorder = AsyncRecordingTransport(transport=inner, note="threaded")
    assert recorder.inner is inner
    async with _async_client(emu, recorder) as client:
        await client.authenticate(context_identifier=CTX, system_user_token=SYSTEM_USER_TOKEN)
    assert [e.note for e in recorder.exchanges] == ["threaded"]
    saved = recorder.save(tmp_path / "later")
    assert [p.name for p in saved] == ["01-exchange.json", "01-request.xml", "01-response.xml"]


def test_a_sync_transport_is_refused() -> None:
    """AsyncRecordingTransport(transport=) refuses a sync Transport, saying to run it in threads."""
    with pytest.raises(ConfigurationError, match="ThreadedAsyncTransport"):
        AsyncRecordingTransport(transport=HttpTransport())  # type: ignore[arg-type]


def test_existing_recording_is_refused_without_overwrite(tmp_path: Path) -> None:
    """A directory that holds a recording is refused at construction unless overwrite=True."""
    directory = tmp_path / "rec"
    directory.mkdir()
    (directory / "01-exchange.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="overwrite"):
        AsyncRecordingTransport(directory)
    assert AsyncRecordingTransport(directory, overwrite=True).directory == directory


def test_default_transport_without_aiohttp_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aiohttp, AsyncRecordingTransport() is a ConfigurationError naming sut-soap[async] and transport=."""
    monkeypatch.setitem(sys.modules, "sut_soap.transport._aio", None)
    with pytest.raises(ConfigurationError) as info:
        AsyncRecordingTransport()
    assert "sut-soap[async]" in str(info.value) and "transport=" in str(info.value)


def test_default_transport_takes_the_recorders_options() -> None:
    """The default inner transport is an AiohttpTransport made with timeout, deadline and max_response_bytes."""
    from sut_soap.transport import AiohttpTransport

    recorder = AsyncRecordingTransport(timeout=2.0, deadline=7.0, max_response_bytes=4096)
    assert isinstance(recorder.inner, AiohttpTransport)
    assert (recorder.inner.timeout, recorder.inner.deadline, recorder.inner.max_response_bytes) == (2.0, 7.0, 4096)


def test_ensure_pool_reaches_the_inner_transport() -> None:
    """The recorder passes ensure_pool on (as get_tickets asks before a wide warm-up): the inner transport grows."""
    inner = ThreadedAsyncTransport(HttpTransport(), max_workers=2)
    AsyncRecordingTransport(transport=inner).ensure_pool(32)
    assert inner.max_workers == 32
