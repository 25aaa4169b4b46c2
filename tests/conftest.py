"""Every test starts without the user's sut-soap settings or CA bundle from the environment; the per-test
``emu`` over a module's ``emulator`` fixture; ``either_client``, which makes sync and async clients alike;
real redis-server processes (one node, a cluster) for the session; callers of a tenant's API (requests or httpx)
and a header-recording server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_support import MISSING as REDIS_MISSING
from redis_support import REDIS_CLI, REDIS_SERVER, RedisCluster, RedisServer, Worker
from support import ApiCaller, Drivers, RecordingServer, reset_emulator

from sut_soap.testing.emulator import Emulator

_SUT_SOAP_VARIABLES = ("CLIENT_SECRET", "PRIVATE_KEY", "SYSTEM_USER_TOKEN", "CONTEXT_IDENTIFIER", "ENVIRONMENT", "ENDPOINT")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SUT_SOAP_VARIABLES:
        monkeypatch.delenv(f"SUT_SOAP_{name}", raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    """The module's ``emulator`` with no faults before or after the test, and no internal error."""
    yield from reset_emulator(emulator)


@pytest.fixture
def fresh_emu(emu: Emulator) -> Iterator[Emulator]:
    """The module's ``emulator`` reset() before and after the test: no revoked ticket, tenant state or count left."""
    emu.reset()
    yield emu
    emu.reset()


@pytest.fixture(params=["sync", "async"])
def either_client(request: pytest.FixtureRequest) -> Iterator[Drivers]:
    """Makes clients of one kind per run of the test, SystemUserClient then AsyncSystemUserClient, behind one interface.

    Call it with the client's options; each :class:`~support.Driver` is closed at teardown. A
    test that takes it runs once per client: the behaviour it checks is the same for both.
    """
    drivers = Drivers(request.param)
    yield drivers
    drivers.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server on loopback for the session (persistence off); skips without the binary."""
    if REDIS_SERVER is None:
        pytest.skip(REDIS_MISSING)
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server, emptied for this test."""
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real three-master Redis Cluster on loopback for the session; skips without the binaries."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip(REDIS_MISSING)
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_workers() -> Iterator[Callable[..., Worker]]:
    """Starts fleet worker processes (tests/redis_worker.py): ``redis_workers(url, endpoint, secret, *options)``; kills them at teardown."""
    made: list[Worker] = []

    def start(*args: str) -> Worker:
        worker = Worker(*args)
        made.append(worker)
        return worker

    yield start
    for worker in made:
        worker.close()


@pytest.fixture
def api_caller() -> Iterator[Callable[..., ApiCaller]]:
    """Makes ApiCallers (requests or httpx with an auth object) and closes each at teardown."""
    made: list[ApiCaller] = []

    def make(library: str, auth: Any, **options: Any) -> ApiCaller:
        caller = ApiCaller(library, auth, **options)
        made.append(caller)
        return caller

    yield make
    for caller in made:
        caller.close()


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    """A loopback server recording every request's headers, answering from its script (else 200 ``{}``)."""
    with RecordingServer() as server:
        yield server
