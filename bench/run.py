"""sut-soap benchmarks (``make bench``): plain output, figures for the issue notes.

Measured on loopback against the bundled emulator, which runs in another process so that the
client's CPU can be measured on its own (sections 1-4):
1. one exchange: ``authenticate()`` next to a minimal hand-written client (string template +
   requests + lxml + PyJWT, ``bench/handwritten.py``) and next to the floor of an exchange (one
   RSA-2048 PKCS#1 v1.5 signature + one RS256 verification + one bare ``http.client``
   keep-alive round trip), all interleaved in the same run: wall time and client CPU per
   exchange, their ratios, and the emulator's CPU per exchange;
   1b. the same exchange over SOAP and over REST (``protocol="rest"``), interleaved: client CPU
   and wall time per exchange of each, and their ratio;
2. the cost split of one exchange, measured inside real exchanges: the library's steps
   (signing, envelope building, HTTP, answer parsing, JWT validation) are wrapped with wall and
   thread-CPU timers for the run, for both clients, interleaved; per-step medians, "the rest"
   (the whole minus the steps, per exchange) and the sum against the measured whole;
3. ``get_ticket()`` on a warm cache against one exchange, and 50 threads on one cold tenant;
4. ``get_tickets()`` for 1,000 tenants with 50 ms of emulator latency against one by one (one
   by one is measured on ``BENCH_ONE_BY_ONE`` of them, default 200, and scaled to 1,000, as the
   output says; ``BENCH_ONE_BY_ONE=1000`` measures all), with the client's and the emulator's CPU;
5. start-up: ``import sut_soap`` and ``sut-soap --help`` against a bare interpreter;
6. memory of a client holding 10,000 cached tickets (in a subprocess): each tenant's own
   SuperOffice-shaped JWT, validated and cached by ``get_ticket`` (only the SOAP call is
   replaced), everything the client keeps per tenant counted (tracemalloc, after gc);
7. exchanges per second with the emulator in the client's process;
8. the emulator under 512 concurrent clients, each on its own new connection (other languages'
   test suites hit it this way): how many were served, how many dropped;
9. deadline: how long a dripping server holds a call: ``authenticate()`` with ``deadline=`` 2, 5
   and 30 s and ``timeout=(1, 1)`` against an answer sent one byte every 0.1 s (``Fault.DRIP``,
   the emulator in the client's process; only wall time matters), the three at once;
10. a fleet on one Redis (``python bench/run.py --only redis`` runs it alone; it starts its own
   redis-server and emulator): 4 processes x the same 1,000 cold tenants against 1 process,
   exchanges counted; get_ticket from Redis (process-cold) and from the local tier; a lease
   holder SIGKILLed mid-exchange; Redis stopped mid-run (failed calls, cost once the breaker is open);
11. the async transport's HTTP library (``python bench/run.py --only async-http`` runs it alone): 1,000 POSTs of
   real envelopes at 50 ms emulator latency, 64 and 256 at once on one event loop, with aiohttp, httpx and
   sut-soap's AiohttpTransport side by side: wall time and client CPU.
12. the async client (``python bench/run.py --only async`` runs it alone; its own emulator process):
   1,000 cold tenants at 50 ms, ``await get_tickets(concurrency=64)`` (signing on the loop, and in
   a thread, interleaved) against sync ``get_tickets(max_workers=64)`` and one by one, in the same
   run; the event loop's lag (max, p99) during the warm-up; 1,000 tasks on one cold tenant,
   exchanges counted; a warm ``await get_ticket``.
13. calling the tenant's API (``python bench/run.py --only api`` runs it alone; the emulator in the
   client's process): with requests, httpx, httpx.AsyncClient and aiohttp through ``client.auth()``,
   50 requests at once that all get 401 on one revoked ticket (exchanges, requests and resends
   counted), and a warm request with hand-set headers against one through the auth object.
Targets are printed with the measured figures at the end. ``BENCH_EXCHANGES`` sets the number
of exchanges in sections 1, 2 and 7 (default 300). The bench measures the checkout it is in
(its parent directory goes first on ``sys.path``, and into ``PYTHONPATH`` for the processes it
starts), whichever ``sut_soap`` the interpreter has installed.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's sut_soap, not the one the venv was installed from
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402
from handwritten import HEADERS as HANDWRITTEN_HEADERS  # noqa: E402
from handwritten import HandwrittenClient  # noqa: E402

import sut_soap  # noqa: E402
import sut_soap.client  # noqa: E402
from sut_soap import AsyncSystemUserClient, SystemUserClient, SystemUserTicket, TransportError  # noqa: E402
from sut_soap.signing import sign_system_user_token  # noqa: E402
from sut_soap.testing.emulator import Emulator, Fault  # noqa: E402
from sut_soap.testing.minting import sign_jwt, superoffice_claims  # noqa: E402

SECRET = "bench-secret"
CTX = "Cust12345"
TOKEN = "Bench Sync-abc"
EXCHANGES = int(os.environ.get("BENCH_EXCHANGES", "300"))
CONCURRENT_CLIENTS = 512
WARM_TENANTS = 1000
WARM_LATENCY = 0.05
WARM_WORKERS = (16, 32, 64)  # 16 is get_tickets' default
ONE_BY_ONE = min(WARM_TENANTS, int(os.environ.get("BENCH_ONE_BY_ONE", "200")))
FLOOR_RATIO_GOAL = 2.0
WALL_RATIO_GOAL = 0.75
WARMUP_GOAL = 35.0
WARMUP_DEFAULT_GOAL = 10.0
MEMORY_GOAL_KIB = 2.5  # per cached ticket at 10,000 tenants (tracemalloc)
EMULATOR_CPU_GOAL_MS = 1.3  # 50 s of sequential latency / 35 = 1.43 s for 1,000 exchanges, with room for the rest
DRIP_DEADLINES = (2.0, 5.0, 30.0)
DRIP_SECONDS = 0.1  # well within the 1 s read timeout: only the deadline can end the call
DRIP_OVERSHOOT_MS = 100.0

# The emulator process: the tenant of sections 1-3, 1,000 tenants answering after 50 ms for
# section 4, and a line protocol on stdin ("stats" -> exchanges and connections so far).
EMULATOR_PROCESS = """
import sys
from sut_soap.testing.emulator import Emulator, Fault
key = open(sys.argv[1], "rb").read()
secret, ctx, token, warm, latency = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
with Emulator(client_secret=secret, partner_public_key=key) as emu:
    emu.add_tenant(ctx, system_user_token=token, serial="1234567")
    for i in range(warm):
        emu.add_tenant(f"Warm{i:04d}", system_user_token=f"Warm Sync-{i:04d}")
        emu.inject(Fault.LATENCY, tenant=f"Warm{i:04d}", seconds=latency)
    for i in range(60):
        emu.add_tenant(f"Cold{i:04d}", system_user_token=f"Cold Sync-{i:04d}")
        emu.inject(Fault.LATENCY, tenant=f"Cold{i:04d}", seconds=0.1)
    print(emu.endpoint, flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(emu.exchange_count, emu.connection_count, flush=True)
"""


@dataclass
class DripCall:
    """One call against a dripping server: its wall time and how it ended."""

    deadline: float
    elapsed: float
    outcome: str  # the exception's type (and a TransportError's phase), or "returned"
    cut: bool  # ended by a TransportError

    @property
    def overshoot_ms(self) -> float:
        return (self.elapsed - self.deadline) * 1000


@dataclass
class Results:
    """Figures the summary compares with the targets."""

    exchange_wall_ms: float = float("nan")
    handwritten_wall_ms: float = float("nan")
    exchange_cpu_ms: float = float("nan")
    floor_cpu_ms: float = float("nan")
    warm_get_us: float = float("nan")
    memory_kib_per_ticket: float = float("nan")
    warmup_speedup: dict[int, float] = field(default_factory=dict)
    warmup_extrapolated: bool = False
    warmup_emulator_cpu_ms: float = float("nan")
    cold_exchanges: int = -1
    concurrent_dropped: int = -1
    drip_calls: dict[float, DripCall] = field(default_factory=dict)
    async_rows: list[tuple[str, float, str, bool, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Timing:
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def add(self, wall_ms: float, cpu_ms: float) -> None:
        self.wall_ms.append(wall_ms)
        self.cpu_ms.append(cpu_ms)

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_ms)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_ms)

    def p95(self) -> float:
        w = sorted(self.wall_ms)
        return w[max(0, int(len(w) * 0.95) - 1)]


def timed(fn: Callable[[], object], into: Timing) -> None:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    c1, w1 = time.process_time(), time.perf_counter()
    into.add((w1 - w0) * 1000, (c1 - c0) * 1000)


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` used so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class EmulatorProcess:
    """The emulator in a child process, so client CPU is the client's alone."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        key_file = Path(tempfile.mkdtemp(prefix="sut-soap-bench-")) / "partner.pub.pem"
        key_file.write_bytes(pem)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", EMULATOR_PROCESS, str(key_file), SECRET, CTX, TOKEN,
             str(WARM_TENANTS), str(WARM_LATENCY)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        base = urlsplit(self.endpoint)
        self.jwks_url = f"{base.scheme}://{base.netloc}/login/.well-known/jwks"

    def stats(self) -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        exchanges, connections = self.proc.stdout.readline().split()
        return int(exchanges), int(connections)

    def cpu_seconds(self) -> float:
        """CPU time the emulator process used so far (Linux /proc; NaN elsewhere)."""
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@contextmanager
def sut_client(emu: EmulatorProcess, key: rsa.RSAPrivateKey, **kwargs: object) -> Iterator[SystemUserClient]:
    with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=emu.endpoint, **kwargs) as client:  # type: ignore[arg-type]
        client.authenticate(context_identifier=CTX, system_user_token=TOKEN)  # JWKS fetched, connection open
        yield client


class Floor:
    """The floor of one exchange, each part on its own: what no client of this protocol can avoid.

    One RSA-2048 PKCS#1 v1.5 SHA-256 signature (the signed system token), one RS256 verification
    (of a JWT the emulator issued, with its published key) and one loopback round trip of a real
    request envelope over a bare ``http.client`` keep-alive connection (the emulator does a full
    exchange for it).
    """

    def __init__(self, emu: EmulatorProcess, key: rsa.RSAPrivateKey, client: SystemUserClient,
                 hand: HandwrittenClient) -> None:
        signed = sign_system_user_token(TOKEN, key)
        self.body, headers = client.build_envelope(context_identifier=CTX, signed_system_token=signed)
        self.headers = {**headers, "Content-Length": str(len(self.body))}
        self.target = urlsplit(emu.endpoint)
        self.conn = http.client.HTTPConnection(self.target.hostname or "127.0.0.1", self.target.port)
        self.key = key
        self.data = f"{TOKEN}.202601010000".encode()
        jwt = client.authenticate(context_identifier=CTX, system_user_token=TOKEN).token
        head, payload, signature = jwt.split(".")
        self.jwt_input = f"{head}.{payload}".encode("ascii")
        self.jwt_signature = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        kid = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
        self.jwt_key = hand.keys[kid]

    def sign(self) -> bytes:
        return self.key.sign(self.data, padding.PKCS1v15(), hashes.SHA256())

    def verify(self) -> None:
        self.jwt_key.verify(self.jwt_signature, self.jwt_input, padding.PKCS1v15(), hashes.SHA256())

    def round_trip(self) -> bytes:
        self.conn.request("POST", self.target.path, body=self.body, headers=self.headers)
        return self.conn.getresponse().read()

    def close(self) -> None:
        self.conn.close()


def exchange_against_handwritten(emu: EmulatorProcess, key: rsa.RSAPrivateKey, results: Results) -> None:
    hand = HandwrittenClient(endpoint=emu.endpoint, jwks_url=emu.jwks_url, client_secret=SECRET, private_key=key)
    with sut_client(emu, key) as client:
        floor = Floor(emu, key, client, hand)
        ours, theirs = Timing(), Timing()
        sign, verify, trip = Timing(), Timing(), Timing()
        fns = (
            (lambda: client.authenticate(context_identifier=CTX, system_user_token=TOKEN), ours),
            (lambda: hand.authenticate(CTX, TOKEN), theirs),
            (floor.round_trip, trip),
            (floor.sign, sign),
            (floor.verify, verify),
        )
        for _ in range(10):
            for fn, _timing in fns:
                fn()
        ex0, _ = emu.stats()
        emu_cpu0 = emu.cpu_seconds()
        for i in range(EXCHANGES):  # interleaved, alternating who goes first
            for fn, timing in fns if i % 2 else fns[::-1]:
                timed(fn, timing)
        emu_cpu = emu.cpu_seconds() - emu_cpu0
        ex1, _ = emu.stats()
        floor.close()
    hand.close()
    floor_wall, floor_cpu = sign.wall + verify.wall + trip.wall, sign.cpu + verify.cpu + trip.cpu
    results.exchange_wall_ms, results.handwritten_wall_ms = ours.wall, theirs.wall
    results.exchange_cpu_ms, results.floor_cpu_ms = ours.cpu, floor_cpu
    print(f"1. one exchange, emulator in another process, {EXCHANGES} each, interleaved (medians):")
    for label, t in (("sut-soap authenticate()", ours), ("hand-written (template+requests+lxml+PyJWT)", theirs),
                     ("  floor: RSA-2048 PKCS#1 v1.5 signature", sign), ("  floor: RS256 verification", verify),
                     ("  floor: bare http.client keep-alive round trip", trip)):
        print(f"   {label:<48} wall {t.wall:7.3f} ms (p95 {t.p95():7.3f})  client CPU {t.cpu:7.3f} ms")
    print(f"   {'  floor: the three medians added up':<48} wall {floor_wall:7.3f} ms {'':<13} "
          f"client CPU {floor_cpu:7.3f} ms")
    print(f"   ratio sut-soap / hand-written: wall {ours.wall / theirs.wall:5.3f}  "
          f"client CPU {ours.cpu / theirs.cpu:5.3f}  (extra client CPU {ours.cpu - theirs.cpu:+.3f} ms per exchange)")
    print(f"   ratio to the floor: sut-soap client CPU {ours.cpu / floor_cpu:5.3f}, "
          f"wall {ours.wall / floor_wall:5.3f} | "
          f"hand-written client CPU {theirs.cpu / floor_cpu:5.3f}, wall {theirs.wall / floor_wall:5.3f}")
    print(f"   emulator CPU per exchange (one at a time): {emu_cpu / (ex1 - ex0) * 1000:.3f} ms "
          f"({ex1 - ex0} exchanges, /proc ticks)")


def soap_against_rest(emu: EmulatorProcess, key: rsa.RSAPrivateKey) -> None:
    """1b: authenticate() over SOAP and over REST against the same emulator process, interleaved."""
    from sut_soap.contract import REST_PATH, SERVICE_PATH

    rest_endpoint = emu.endpoint[: -len(SERVICE_PATH)] + REST_PATH
    with sut_client(emu, key) as soap, SystemUserClient(
        client_secret=SECRET, private_key=key, endpoint=rest_endpoint, protocol="rest"
    ) as rest:
        rest.authenticate(context_identifier=CTX, system_user_token=TOKEN)  # JWKS fetched, connection open
        timings = {"SOAP": Timing(), "REST": Timing()}
        fns = (
            (lambda: soap.authenticate(context_identifier=CTX, system_user_token=TOKEN), timings["SOAP"]),
            (lambda: rest.authenticate(context_identifier=CTX, system_user_token=TOKEN), timings["REST"]),
        )
        for _ in range(10):
            for fn, _timing in fns:
                fn()
        for i in range(EXCHANGES):
            for fn, timing in fns if i % 2 else fns[::-1]:
                timed(fn, timing)
    soap_t, rest_t = timings["SOAP"], timings["REST"]
    print(f"1b. one exchange, SOAP vs REST, emulator in another process, {EXCHANGES} each, interleaved (medians):")
    for label, t in (("SOAP  (envelope template, hardened lxml)", soap_t), ("REST  (json, strict reader)", rest_t)):
        print(f"   {label:<48} wall {t.wall:7.3f} ms (p95 {t.p95():7.3f})  client CPU {t.cpu:7.3f} ms")
    print(f"   ratio REST / SOAP: wall {rest_t.wall / soap_t.wall:5.3f}  client CPU {rest_t.cpu / soap_t.cpu:5.3f}  "
          f"(client CPU {rest_t.cpu - soap_t.cpu:+.3f} ms per exchange)")


STEPS = ("signing", "envelope", "HTTP", "parsing", "JWT validation")
STEP_LABELS = {
    "signing": "signing (RSA-2048 PKCS#1 v1.5)",
    "envelope": "envelope building (zeep-made template | template)",
    "HTTP": "HTTP POST + read (http.client | requests)",
    "parsing": "answer parsing (hardened lxml | lxml find)",
    "JWT validation": "JWT validation (RS256 + claims | PyJWT)",
}


class StepTimer:
    """Wall and thread-CPU timers around a client's steps, adding up per exchange under way."""

    def __init__(self) -> None:
        self.current: dict[str, list[float]] | None = None
        self.calls: dict[str, int] = dict.fromkeys(STEPS, 0)

    def wrap(self, step: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed_step(*args: Any, **kwargs: Any) -> Any:
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                c1, w1 = time.thread_time(), time.perf_counter()
                record = self.current
                if record is not None:
                    spent = record.setdefault(step, [0.0, 0.0])
                    spent[0] += w1 - w0
                    spent[1] += c1 - c0
                    self.calls[step] += 1

        return timed_step


@contextmanager
def wrapped(timer: StepTimer, targets: list[tuple[str, object, str]]) -> Iterator[list[str]]:
    """Wrap ``getattr(owner, name)`` as ``step`` for the block; yields the steps that were not found."""
    undo: list[tuple[object, str, object, bool]] = []
    missing = []
    for step, owner, name in targets:
        original = getattr(owner, name, None)
        if not callable(original):
            missing.append(step)
            continue
        own = name in getattr(owner, "__dict__", {})
        saved = getattr(owner, "__dict__", {}).get(name)
        try:
            setattr(owner, name, timer.wrap(step, original))
        except (AttributeError, TypeError):  # __slots__ or a read-only attribute: not measurable this way
            missing.append(step)
            continue
        undo.append((owner, name, saved, own))
    try:
        yield missing
    finally:
        for owner, name, original, own in reversed(undo):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


@dataclass
class Split:
    """Per-exchange step times (µs) of one client: steps, the rest, the whole."""

    wall: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*STEPS, "rest", "whole")})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*STEPS, "rest", "whole")})
    process_cpu: list[float] = field(default_factory=list)

    def run(self, timer: StepTimer, fn: Callable[[], object]) -> None:
        record: dict[str, list[float]] = {}
        timer.current = record
        w0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        try:
            fn()
        finally:
            p1, c1, w1 = time.process_time(), time.thread_time(), time.perf_counter()
            timer.current = None
        for step in STEPS:
            wall, cpu = record.get(step, (0.0, 0.0))
            self.wall[step].append(wall * 1e6)
            self.cpu[step].append(cpu * 1e6)
        whole_wall, whole_cpu = (w1 - w0) * 1e6, (c1 - c0) * 1e6
        self.wall["whole"].append(whole_wall)
        self.cpu["whole"].append(whole_cpu)
        self.wall["rest"].append(whole_wall - sum(self.wall[s][-1] for s in STEPS))
        self.cpu["rest"].append(whole_cpu - sum(self.cpu[s][-1] for s in STEPS))
        self.process_cpu.append((p1 - p0) * 1e6)

    def median(self, kind: str, step: str) -> float:
        return statistics.median((self.wall if kind == "wall" else self.cpu)[step])


def cost_split(emu: EmulatorProcess, key: rsa.RSAPrivateKey) -> None:
    hand = HandwrittenClient(endpoint=emu.endpoint, jwks_url=emu.jwks_url, client_secret=SECRET, private_key=key)
    ours_timer, theirs_timer = StepTimer(), StepTimer()
    with sut_client(emu, key) as client:
        ours_targets: list[tuple[str, object, str]] = [
            ("signing", sut_soap.client, "sign_system_user_token"),
            ("envelope", client, "_build"),  # the protocol's builder and reader, chosen at construction
            ("HTTP", sut_soap.client, "call_transport"),
            ("parsing", client, "_parse"),
            ("JWT validation", client._validator, "validate"),
        ]
        theirs_targets: list[tuple[str, object, str]] = [
            ("signing", hand, "sign"), ("envelope", hand, "envelope"), ("HTTP", hand, "post"),
            ("parsing", hand, "parse"), ("JWT validation", hand, "validate"),
        ]
        ours, theirs = Split(), Split()
        runs = (
            (ours, ours_timer, lambda: client.authenticate(context_identifier=CTX, system_user_token=TOKEN)),
            (theirs, theirs_timer, lambda: hand.authenticate(CTX, TOKEN)),
        )
        with wrapped(ours_timer, ours_targets) as ours_missing, wrapped(theirs_timer, theirs_targets):
            for _ in range(10):
                for _split, _timer, fn in runs:
                    fn()
            for i in range(EXCHANGES):
                for split, timer, fn in runs if i % 2 else runs[::-1]:
                    split.run(timer, fn)
    hand.close()
    print(f"2. cost split inside {EXCHANGES} real exchanges each (interleaved, emulator in another process): "
          f"the library's functions wrapped with timers; medians in µs, CPU of the calling thread:")
    print(f"   {'step':<48} {'sut-soap CPU':>12} {'wall':>8} {'share':>6}   {'hand-written CPU':>16} {'wall':>8}")
    whole = ours.median("cpu", "whole")
    for step in (*STEPS, "rest"):
        label = STEP_LABELS.get(step, "the rest (whole - steps, per exchange)")
        unseen = step in STEPS and (step in ours_missing or ours_timer.calls[step] == 0)
        note = "   (not seen in sut-soap: counted in the rest)" if unseen else ""
        print(f"   {label:<48} {ours.median('cpu', step):12.0f} {ours.median('wall', step):8.0f} "
              f"{ours.median('cpu', step) / whole:6.0%}   {theirs.median('cpu', step):16.0f} "
              f"{theirs.median('wall', step):8.0f}{note}")
    rows = (*STEPS, "rest")
    print(f"   {'sum of the medians above':<48} {sum(ours.median('cpu', s) for s in rows):12.0f} "
          f"{sum(ours.median('wall', s) for s in rows):8.0f} {'':>6}   "
          f"{sum(theirs.median('cpu', s) for s in rows):16.0f} {sum(theirs.median('wall', s) for s in rows):8.0f}")
    print(f"   {'the whole exchange, measured (median)':<48} {whole:12.0f} {ours.median('wall', 'whole'):8.0f} "
          f"{'':>6}   {theirs.median('cpu', 'whole'):16.0f} {theirs.median('wall', 'whole'):8.0f}")
    print(f"   {'  process CPU (all threads) of the whole':<48} {statistics.median(ours.process_cpu):12.0f} "
          f"{'':>8} {'':>6}   {statistics.median(theirs.process_cpu):16.0f}")


def warm_cache_and_single_flight(emu: EmulatorProcess, key: rsa.RSAPrivateKey, results: Results) -> None:
    with sut_client(emu, key) as client:
        client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        n = 200_000
        get = client.get_ticket
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            get(context_identifier=CTX, system_user_token=TOKEN)
        wall_us = (time.perf_counter() - w0) / n * 1e6
        cpu_us = (time.process_time() - c0) / n * 1e6
    results.warm_get_us = wall_us
    ratio = results.exchange_wall_ms * 1000 / wall_us
    print(f"3. get_ticket() on a warm cache ({n} calls): {wall_us:.2f} us wall, {cpu_us:.2f} us CPU per call; "
          f"{ratio:,.0f}x cheaper than one exchange ({results.exchange_wall_ms:.3f} ms)")

    with sut_client(emu, key) as client:
        barrier = threading.Barrier(50)
        got: list[SystemUserTicket] = []
        before, _ = emu.stats()

        def ask() -> None:
            barrier.wait()
            got.append(client.get_ticket(context_identifier="Cold0000", system_user_token="Cold Sync-0000"))

        threads = [threading.Thread(target=ask) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after, _ = emu.stats()
    results.cold_exchanges = after - before
    print(f"   50 threads (Barrier) on one cold tenant (100 ms latency): {after - before} exchange(s), "
          f"{len({t.ticket for t in got})} distinct ticket(s) for {len(got)} callers")


def warm_up(emu: EmulatorProcess, key: rsa.RSAPrivateKey, results: Results) -> None:
    tenants = {f"Warm{i:04d}": f"Warm Sync-{i:04d}" for i in range(WARM_TENANTS)}
    print(f"4. warm-up of {WARM_TENANTS:,} cold tenants, {WARM_LATENCY * 1000:.0f} ms emulator latency each:")

    sample = list(tenants.items())[:ONE_BY_ONE]
    with sut_client(emu, key) as client:
        ex0, _ = emu.stats()
        started = time.perf_counter()
        for ctx, token in sample:
            client.get_ticket(context_identifier=ctx, system_user_token=token)
        measured = time.perf_counter() - started
        ex1, _ = emu.stats()
    one_by_one = measured / len(sample) * WARM_TENANTS
    results.warmup_extrapolated = len(sample) < WARM_TENANTS
    if results.warmup_extrapolated:
        print(f"   one by one (get_ticket in a loop), measured on the first {len(sample)}: {measured:.3f} s, "
              f"{ex1 - ex0} exchanges, {measured / len(sample) * 1000:.2f} ms each")
        print(f"   one by one for all {WARM_TENANTS:,}, EXTRAPOLATED ({len(sample)} measured "
              f"x {WARM_TENANTS / len(sample):g}) {one_by_one:7.3f} s   (BENCH_ONE_BY_ONE={WARM_TENANTS} measures all)")
    else:
        print(f"   one by one (get_ticket in a loop)      {one_by_one:7.3f} s   {ex1 - ex0} exchanges")

    cpus = os.cpu_count() or 1
    for workers in WARM_WORKERS:
        with sut_client(emu, key) as client:
            ex0, conn0 = emu.stats()
            emu_cpu0, cpu0 = emu.cpu_seconds(), time.process_time()
            started = time.perf_counter()
            result = client.get_tickets(tenants, max_workers=workers)
            elapsed = time.perf_counter() - started
            cpu, emu_cpu = time.process_time() - cpu0, emu.cpu_seconds() - emu_cpu0
            ex1, conn1 = emu.stats()
            ok = sum(isinstance(t, SystemUserTicket) for t in result.values())
        exchanges = ex1 - ex0
        results.warmup_speedup[workers] = one_by_one / elapsed
        if workers == max(WARM_WORKERS):
            results.warmup_emulator_cpu_ms = emu_cpu / exchanges * 1000
        default = " (default)" if workers == 16 else ""
        print(f"   get_tickets(max_workers={workers}){default:<10}{elapsed:7.3f} s   {exchanges} exchanges, "
              f"{ok} tickets, {conn1 - conn0} new connections, speed-up {one_by_one / elapsed:5.1f}x")
        print(f"      CPU: client {cpu:.3f} s ({cpu / exchanges * 1000:.2f} ms/exchange) + emulator {emu_cpu:.3f} s "
              f"({emu_cpu / exchanges * 1000:.2f} ms/exchange) = {(cpu + emu_cpu) / elapsed:.2f} CPUs busy on average")
        print(f"      speed-up caps if each process ran on one core: client {one_by_one / cpu:5.1f}x, "
              f"emulator {one_by_one / emu_cpu:5.1f}x; "
              f"both on {cpus} CPU(s) {one_by_one * cpus / (cpu + emu_cpu):5.1f}x")
        if workers == max(WARM_WORKERS):
            results.notes.append(
                f"warm-up: with {workers} workers the client process used {cpu:.2f} s of CPU for {exchanges} "
                f"exchanges, mostly holding the GIL, so one process cannot beat about {one_by_one / cpu:.1f}x here; "
                f"the emulator (one GIL-bound process too) used {emu_cpu:.2f} s ({emu_cpu / exchanges * 1000:.2f} ms "
                f"per exchange), and the two share {cpus} CPU(s)"
            )


def startup() -> None:
    def run(args: list[str], n: int = 15) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    bare = run([sys.executable, "-c", "pass"])
    imp = run([sys.executable, "-c", "import sut_soap"])
    full = run([sys.executable, "-c", "import sut_soap.client"])
    helps = run([sys.executable, "-m", "sut_soap", "--help"])
    script = Path(sys.executable).parent / "sut-soap"
    helps_script = run([str(script), "--help"]) if script.exists() else float("nan")
    print(f"5. start-up (median of 15): bare python {bare:.1f} ms | import sut_soap {imp:.1f} ms | "
          f"import sut_soap.client (zeep) {full:.1f} ms | python -m sut_soap --help {helps:.1f} ms | "
          f"sut-soap --help {helps_script:.1f} ms")


MEMORY_PROCESS = textwrap.dedent("""
    # What one client holds after N real-shaped exchanges, each tenant with its own JWT.
    import gc, json, resource, sys, tracemalloc
    from cryptography.hazmat.primitives import serialization
    from sut_soap import SystemUserClient
    from sut_soap.soap import Answer

    N, trace, minted = int(sys.argv[1]), sys.argv[2] == "trace", json.loads(open(sys.argv[3]).read())
    key = serialization.load_pem_private_key(minted["key"].encode(), password=None)
    client = SystemUserClient(client_secret="s", private_key=key, public_key=key.public_key(),
                              endpoint="https://sod.superoffice.com/Login/Services/PartnerSystemUserService.svc")
    # Bytes, so each exchange decodes a fresh JWT string, as parsing a real answer does.
    answers = {ctx: jwt.encode("ascii") for ctx, jwt in minted["jwts"].items()}
    tenants = [(ctx, f"Sync-{ctx}") for ctx in answers if ctx != "warm-up"]
    del minted

    # The exchange itself is replaced (no signing, no HTTP): its answer is the tenant's own
    # pre-minted JWT, which the client then validates and caches on its real path.
    client._attempt = lambda context, token: (Answer(True, answers[context].decode("ascii"), None), client.clock.now())
    client.get_ticket(context_identifier="warm-up", system_user_token="Sync-warm-up")  # one-off allocations
    client.invalidate("warm-up")
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    for ctx, token in tenants:
        client.get_ticket(context_identifier=ctx, system_user_token=token)
    del ctx, token
    gc.collect()
    assert len(client.cache) == N
    if trace:
        current, peak = tracemalloc.get_traced_memory()
        print(current, peak, len(answers[tenants[0][0]]))
    else:
        print(rss0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def mint_memory_jwts(n: int, path: Path) -> None:
    """Write a key and ``n`` tenants' own JWTs (claims as SuperOffice issues them) for MEMORY_PROCESS."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwts = {}
    for i in range(n + 1):
        ctx = f"Cust{i:05d}" if i < n else "warm-up"
        claims = superoffice_claims(
            context_identifier=ctx, serial=str(1_000_000 + i), lifetime=3600,
            system_user_token=f"Sync-{ctx}", email=f"system.user@{ctx.lower()}.invalid", upn=f"SystemUser@{ctx}",
        )
        jwts[ctx] = sign_jwt(claims, key)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"key": pem, "jwts": jwts}))


def memory(results: Results) -> None:
    n = 10_000
    minted = Path(tempfile.mkdtemp(prefix="sut-soap-bench-")) / "memory-jwts.json"
    mint_memory_jwts(n, minted)

    def child(mode: str) -> list[int]:
        out = subprocess.run([sys.executable, "-c", MEMORY_PROCESS, str(n), mode, str(minted)],
                             check=True, capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    current, peak, jwt_chars = child("trace")
    rss_before, rss_after = child("rss")
    minted.unlink()
    results.memory_kib_per_ticket = current / n / 1024
    print(f"6. {n:,} cached tickets in one client (each tenant's own {jwt_chars}-char JWT, validated and cached "
          f"by get_ticket): traced {current / 2**20:.1f} MiB held ({current / n / 1024:.2f} KiB per tenant), "
          f"peak {peak / 2**20:.1f} MiB | process max RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB")


def emulator_throughput(key: rsa.RSAPrivateKey) -> None:
    with Emulator(client_secret=SECRET, partner_public_key=key) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=emu.endpoint) as client:
            client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
            for workers in (1, 4):
                n = EXCHANGES
                started = time.perf_counter()
                if workers == 1:
                    for _ in range(n):
                        client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
                else:
                    with ThreadPoolExecutor(workers) as pool:
                        list(pool.map(lambda _: client.authenticate(context_identifier=CTX, system_user_token=TOKEN),
                                      range(n)))
                rate = n / (time.perf_counter() - started)
                print(f"7. emulator + client in one process, {workers} thread(s): "
                      f"{rate:7.1f} exchanges/s ({n} exchanges)")


def concurrent_clients(emu: EmulatorProcess, key: rsa.RSAPrivateKey, results: Results) -> None:
    """512 threads released at once, each opening its own connection and POSTing one exchange.

    The connect timeout is 1 s, Linux's first SYN retransmission: a connection the listen queue
    dropped counts as dropped rather than arriving a second later.
    """
    hand = HandwrittenClient(endpoint=emu.endpoint, jwks_url=emu.jwks_url, client_secret=SECRET, private_key=key)
    body = hand.envelope(CTX, hand.sign(TOKEN))
    hand.close()
    target = urlsplit(emu.endpoint)
    headers = {**HANDWRITTEN_HEADERS, "Content-Length": str(len(body))}
    barrier = threading.Barrier(CONCURRENT_CLIENTS)
    connect_ms: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one_client() -> None:
        barrier.wait()
        started = time.perf_counter()
        try:
            sock = socket.create_connection((target.hostname or "127.0.0.1", target.port or 80), timeout=1)
            connected = time.perf_counter()
            sock.settimeout(30)
            conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port)
            conn.sock = sock
            conn.request("POST", target.path, body=body, headers=headers)
            content = conn.getresponse().read()
            conn.close()
            ok = b"<IsSuccessful>true</IsSuccessful>" in content
        except OSError as exc:
            with lock:
                failures.append(type(exc).__name__)
            return
        with lock:
            connect_ms.append((connected - started) * 1000)
            if not ok:
                failures.append("not IsSuccessful=true")

    started = time.perf_counter()
    threads = [threading.Thread(target=one_client) for _ in range(CONCURRENT_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    results.concurrent_dropped = len(failures)
    kinds = ", ".join(sorted(set(failures))) or "none"
    slowest = max(connect_ms) if connect_ms else float("nan")
    print(f"8. {CONCURRENT_CLIENTS} concurrent clients, one new connection and one exchange each: "
          f"{CONCURRENT_CLIENTS - len(failures)} served, {len(failures)} dropped ({kinds}); "
          f"slowest connect {slowest:.1f} ms, all done in {elapsed:.2f} s")


def dripping_server(key: rsa.RSAPrivateKey, results: Results) -> None:
    """One ``authenticate()`` per deadline, each on its own client and thread, all at once."""

    def one_call(deadline: float) -> DripCall:
        with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=emu.endpoint,
                              timeout=(1, 1), deadline=deadline) as client:
            started = time.perf_counter()
            try:
                client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
            except TransportError as exc:
                elapsed, outcome, cut = time.perf_counter() - started, f"TransportError ({exc.phase})", True
            except Exception as exc:  # reported, and the goal missed
                elapsed, outcome, cut = time.perf_counter() - started, type(exc).__name__, False
            else:
                elapsed, outcome, cut = time.perf_counter() - started, "returned", False
        return DripCall(deadline, elapsed, outcome, cut)

    with Emulator(client_secret=SECRET, partner_public_key=key) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        emu.inject(Fault.DRIP, seconds=DRIP_SECONDS)
        with ThreadPoolExecutor(len(DRIP_DEADLINES)) as pool:
            calls = list(pool.map(one_call, DRIP_DEADLINES))
    print(f"9. deadline: how long a dripping server holds a call (timeout=(1, 1), one answer byte every "
          f"{DRIP_SECONDS * 1000:.0f} ms, {len(calls)} clients at once):")
    for call in calls:
        results.drip_calls[call.deadline] = call
        print(f"   deadline={call.deadline:<4g} elapsed {call.elapsed:7.3f} s   "
              f"overshoot {call.overshoot_ms:7.1f} ms   {call.outcome}")


# -- 10. a fleet on one Redis (python bench/run.py --only redis runs this section alone) ----------

FLEET_TENANTS = 1000
FLEET_PROCESSES = 4
FLEET_LOCAL_GOAL_US = 2.0
FLEET_REDIS_GOAL_MS = 0.5
FLEET_BREAKER_GOAL_US = 50.0

# Its own emulator process: 1,000 tenants at 50 ms and one that answers after 3 s (the SIGKILL).
FLEET_EMULATOR = """
import sys
from sut_soap.testing.emulator import Emulator, Fault
key = open(sys.argv[1], "rb").read()
with Emulator(client_secret=sys.argv[2], partner_public_key=key) as emu:
    for i in range(int(sys.argv[3])):
        emu.add_tenant(f"Fleet{i:04d}", system_user_token=f"Fleet Sync-{i:04d}")
        emu.inject(Fault.LATENCY, tenant=f"Fleet{i:04d}", seconds=0.05)
    emu.add_tenant("Slow0001", system_user_token="Slow Sync-0001")
    emu.inject(Fault.LATENCY, tenant="Slow0001", seconds=3.0)
    print(emu.endpoint, flush=True)
    for line in sys.stdin:
        print(emu.exchange_count, flush=True)
"""



class FleetEmulator:
    """FLEET_EMULATOR in a child process: ``tenants`` tenants at 50 ms (and the slow one), its endpoint and counters."""

    def __init__(self, public_file: Path, tenants: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FLEET_EMULATOR, str(public_file), SECRET, str(tenants)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()

    def exchanges(self) -> int:
        """The emulator's exchange count so far."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def cpu_seconds(self) -> float:
        """CPU time the emulator process used so far."""
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


# One process of the fleet: waits for "go", then warms the tenants named on the line (or gets one).
FLEET_WORKER = """
import json, sys, time
from sut_soap import RedisTicketCache, SystemUserClient
url, endpoint, secret, key, deadline = sys.argv[1:6]
client = SystemUserClient(client_secret=secret, private_key=open(key, "rb").read(), endpoint=endpoint,
                          cache=RedisTicketCache.from_url(url), deadline=float(deadline))
print("ready", flush=True)
for line in sys.stdin:
    tenants = json.loads(line)
    started = time.perf_counter()
    results = client.get_tickets(tenants, max_workers=64)
    errors = sum(not hasattr(r, "ticket") for r in results.values())
    print(json.dumps({"seconds": time.perf_counter() - started, "errors": errors}), flush=True)
"""


class BenchRedis:
    """A redis-server of the bench's own on a free loopback port, persistence off."""

    def __init__(self) -> None:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="sut-soap-bench-redis-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL)
        for _ in range(500):
            try:
                if redis.Redis(port=self.port).ping():
                    return
            except redis.RedisError:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def flush(self) -> None:
        import redis

        redis.Redis(port=self.port).flushall()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def fleet_on_redis(key: rsa.RSAPrivateKey) -> None:
    from sut_soap import RedisTicketCache

    key_file = Path(tempfile.mkdtemp(prefix="sut-soap-bench-")) / "partner.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    public_file = key_file.with_name("partner.pub.pem")
    public_file.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    emu = FleetEmulator(public_file, FLEET_TENANTS)
    endpoint, exchanges = emu.endpoint, emu.exchanges

    server = BenchRedis()
    server.start()
    workers: list[subprocess.Popen[str]] = []

    def worker(deadline: float = 30.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", FLEET_WORKER, server.url, endpoint, SECRET, str(key_file),
                                 str(deadline)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        workers.append(proc)
        return proc

    def ask(procs: list[subprocess.Popen[str]], tenants: dict[str, str]) -> list[dict[str, Any]]:
        line = json.dumps(tenants) + "\n"
        for proc in procs:
            proc.stdin.write(line)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        return [json.loads(proc.stdout.readline()) for proc in procs]  # type: ignore[union-attr]

    tenants = {f"Fleet{i:04d}": f"Fleet Sync-{i:04d}" for i in range(FLEET_TENANTS)}
    print(f"10. a fleet on one Redis ({FLEET_TENANTS:,} tenants, 50 ms emulator latency, emulator and "
          "redis-server in their own processes):")
    try:
        alone = worker()
        before = exchanges()
        [one] = ask([alone], tenants)
        alone_count = exchanges() - before
        alone.kill()
        server.flush()
        fleet = [worker() for _ in range(FLEET_PROCESSES)]
        before = exchanges()
        answers = ask(fleet, tenants)
        fleet_count = exchanges() - before
        fleet_wall = max(a["seconds"] for a in answers)
        errors = sum(a["errors"] for a in answers)
        print(f"   1 process, cold store: {one['seconds']:.2f} s, {alone_count} exchanges")
        print(f"   {FLEET_PROCESSES} processes at once, same tenants, cold store: {fleet_wall:.2f} s (slowest), "
              f"{fleet_count} exchanges in total, {errors} errors "
              f"({fleet_wall / one['seconds']:.2f}x the 1-process time)")

        # Reads in this process: from Redis (a store that never saw the tenants), then from the local tier.
        with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=endpoint,
                              cache=RedisTicketCache.from_url(server.url)) as client:
            names = list(tenants.items())
            cold = []
            for ctx, token in names:
                t0 = time.perf_counter()
                client.get_ticket(context_identifier=ctx, system_user_token=token)
                cold.append(time.perf_counter() - t0)
            ctx, token = names[0]
            # The default in-memory store, side by side: what the local tier adds to a warm call.
            with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=endpoint) as alone:
                alone.get_ticket(context_identifier=ctx, system_user_token=token)

                def warm_round(c: SystemUserClient, n: int = 5000) -> float:
                    t0 = time.perf_counter()
                    for _ in range(n):
                        c.get_ticket(context_identifier=ctx, system_user_token=token)
                    return (time.perf_counter() - t0) / n * 1e6

                rounds = [(warm_round(client), warm_round(alone)) for _ in range(40)]
            local_us = statistics.median(r[0] for r in rounds)
            memory_us = statistics.median(r[1] for r in rounds)
            redis_ms = statistics.median(cold) * 1000
            print(f"   get_ticket from Redis (process-cold, {len(cold):,} tenants): median {redis_ms:.3f} ms, "
                  f"p95 {sorted(cold)[int(0.95 * len(cold))] * 1000:.3f} ms; from the local tier: {local_us:.2f} µs "
                  f"(the in-memory store alone, same rounds: {memory_us:.2f} µs; medians of 40 rounds of 5,000)")

        # SIGKILL of a lease holder in the middle of a 3 s exchange.
        holder = worker(deadline=2.0)  # its lease: deadline + 5 s margin = 7 s
        other = worker(deadline=30.0)
        before = exchanges()
        slow = {"Slow0001": "Slow Sync-0001"}
        holder.stdin.write(json.dumps(slow) + "\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        while exchanges() == before:
            time.sleep(0.01)
        other.stdin.write(json.dumps(slow) + "\n")  # type: ignore[union-attr]
        other.stdin.flush()  # type: ignore[union-attr]
        time.sleep(0.2)
        holder.kill()
        killed = time.perf_counter()
        answer = json.loads(other.stdout.readline())  # type: ignore[union-attr]
        kill_wait = time.perf_counter() - killed
        kill_count = exchanges() - before
        print(f"   lease holder SIGKILLed mid-exchange (lease 7 s, each exchange of this tenant 3 s): another process "
              f"had the ticket "
              f"{kill_wait:.2f} s later ({answer['errors']} errors), {kill_count} exchanges in all (the killed one's "
              "included)")

        # Redis stopped mid-run: calls that fail, and what a call costs once the breaker is open.
        store = RedisTicketCache.from_url(server.url, cooloff=30.0)
        with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=endpoint, cache=store) as client:
            sample = names[:50]
            failed = calls = 0

            def round_of_calls() -> float:
                nonlocal failed, calls
                t0 = time.perf_counter()
                for ctx, token in sample:
                    calls += 1
                    try:
                        client.get_ticket(context_identifier=ctx, system_user_token=token)
                    except Exception:
                        failed += 1
                return (time.perf_counter() - t0) / len(sample)

            for _ in range(20):
                round_of_calls()
            up = statistics.median([round_of_calls() for _ in range(200)]) * 1e6
            probe_key = client._key_prefix + "never-seen"
            t0 = time.perf_counter()
            for _ in range(1000):
                store.get(probe_key)
            miss_up = (time.perf_counter() - t0) / 1000 * 1e6
            server.stop()
            store.clear_local()  # every tenant needs Redis now: the first call finds it gone
            for _ in range(20):
                round_of_calls()
            down = statistics.median([round_of_calls() for _ in range(200)]) * 1e6
            t0 = time.perf_counter()
            for _ in range(100_000):
                store.get(probe_key)
            miss_down = (time.perf_counter() - t0) / 100_000 * 1e6
            print(f"   Redis stopped mid-run: {failed} of {calls:,} calls failed; warm get_ticket {up:.2f} µs with "
                  f"Redis up, {down:.2f} µs with the breaker open ({down - up:+.2f} µs); a local miss costs "
                  f"{miss_up:.1f} µs with Redis up (one round trip), {miss_down:.2f} µs with the breaker open")
        print("   targets (section 10):")
        rows = [
            (f"exchanges, {FLEET_PROCESSES} processes x {FLEET_TENANTS:,} tenants, cold", fleet_count,
             f"== {FLEET_TENANTS}", fleet_count == FLEET_TENANTS, "{}"),
            ("warm get_ticket from the local tier, µs", local_us, f"<= {FLEET_LOCAL_GOAL_US:g}",
             local_us <= FLEET_LOCAL_GOAL_US, "{:.2f}"),
            ("get_ticket from Redis (process-cold), median ms", redis_ms, f"<= {FLEET_REDIS_GOAL_MS:g}",
             redis_ms <= FLEET_REDIS_GOAL_MS, "{:.3f}"),
            ("exchanges around a SIGKILLed lease holder", kill_count, "== 2", kill_count == 2, "{}"),
            ("calls failed with Redis stopped mid-run", failed, "== 0", failed == 0, "{}"),
            ("extra µs per call once the breaker is open (local miss)", miss_down, f"< {FLEET_BREAKER_GOAL_US:g}",
             miss_down < FLEET_BREAKER_GOAL_US, "{:.2f}"),
        ]
        for label, value, target, ok, fmt in rows:
            print(f"   {label:<70} {fmt.format(value):>9}   target {target:<8} {'met' if ok else 'MISSED'}")
    finally:
        for proc in workers:
            proc.kill()
            proc.wait()
        server.stop()
        emu.stop()


# -- 11. the async transport's HTTP library (python bench/run.py --only async-http runs it alone) ----

ASYNC_HTTP_EXCHANGES = 1000
ASYNC_HTTP_CONCURRENCY = (64, 256)
ASYNC_HTTP_ROUNDS = 2  # each library this many times per concurrency, alternating who goes first


def async_http(key: rsa.RSAPrivateKey) -> None:
    """1,000 POSTs of real envelopes at 50 ms latency: aiohttp, httpx and sut-soap's AiohttpTransport side by side.

    Each round runs on a new event loop with a new client (its pool limited to the concurrency)
    and as many tasks at once as the concurrency allows; the envelopes are signed beforehand, so
    the client CPU is the HTTP library's (and the loop's) alone. The emulator is the fleet
    section's (its own process, 1,000 tenants at 50 ms).
    """
    import asyncio

    import aiohttp
    import httpx

    from sut_soap.transport import AiohttpTransport

    public_file = Path(tempfile.mkdtemp(prefix="sut-soap-bench-")) / "partner.pub.pem"
    public_file.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    emu = FleetEmulator(public_file, ASYNC_HTTP_EXCHANGES)
    endpoint, exchanges, emulator_cpu = emu.endpoint, emu.exchanges, emu.cpu_seconds

    with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=endpoint) as client:
        envelopes = []
        for i in range(ASYNC_HTTP_EXCHANGES):
            token = f"Fleet Sync-{i:04d}"
            envelopes.append(client.build_envelope(context_identifier=f"Fleet{i:04d}",
                                                   signed_system_token=sign_system_user_token(token, key)))

    async def with_aiohttp(limit: int) -> list[bytes]:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def one(body: bytes, headers: dict[str, str]) -> bytes:
                async with session.post(endpoint, data=body, headers=headers, allow_redirects=False) as response:
                    return await response.read()
            return await gather(limit, one)

    async def with_httpx(limit: int) -> list[bytes]:
        limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as session:
            async def one(body: bytes, headers: dict[str, str]) -> bytes:
                return (await session.post(endpoint, content=body, headers=headers)).content
            return await gather(limit, one)

    async def with_sut_soap(limit: int) -> list[bytes]:
        transport = AiohttpTransport(pool_size=limit)
        try:
            async def one(body: bytes, headers: dict[str, str]) -> bytes:
                return (await transport.request("POST", endpoint, body=body, headers=headers)).content
            return await gather(limit, one)
        finally:
            await transport.aclose()

    async def gather(limit: int, one: Callable[[bytes, dict[str, str]], Any]) -> list[bytes]:
        gate = asyncio.Semaphore(limit)

        async def gated(body: bytes, headers: dict[str, str]) -> bytes:
            async with gate:
                return await one(body, headers)  # type: ignore[no-any-return]

        return await asyncio.gather(*(gated(body, headers) for body, headers in envelopes))

    runs = {"aiohttp ClientSession + TCPConnector(limit=c)": with_aiohttp,
            "httpx.AsyncClient(limits=Limits(c, c))": with_httpx,
            "sut-soap AiohttpTransport(pool_size=c)": with_sut_soap}
    print(f"11. async HTTP: {ASYNC_HTTP_EXCHANGES:,} POSTs of real envelopes, 50 ms emulator latency (its own "
          f"process), c tasks at once on one event loop, {ASYNC_HTTP_ROUNDS} rounds each, alternating (best round "
          "shown):")
    try:
        for limit in ASYNC_HTTP_CONCURRENCY:
            best: dict[str, tuple[float, float, int, int, float]] = {}
            order = list(runs.items())
            for round_ in range(ASYNC_HTTP_ROUNDS):
                for label, run in order if round_ % 2 == 0 else order[::-1]:
                    before, e0 = exchanges(), emulator_cpu()
                    w0, c0 = time.perf_counter(), time.process_time()
                    answers = asyncio.run(run(limit))
                    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                    count, emu_cpu = exchanges() - before, emulator_cpu() - e0
                    ok = sum(b"<IsSuccessful>true</IsSuccessful>" in answer for answer in answers)
                    if label not in best or wall < best[label][0]:
                        best[label] = (wall, cpu, count, ok, emu_cpu)
            for label, (wall, cpu, count, ok, emu_cpu) in best.items():
                print(f"   c={limit:<4} {label:<42} wall {wall:7.3f} s   client CPU {cpu:6.3f} s   "
                      f"emulator CPU {emu_cpu:6.3f} s   {count} exchanges, {ok} successful")
            fastest = min(best.values())[0]
            print(f"   c={limit:<4} wall relative to the fastest: "
                  + ", ".join(f"{label.split(' ')[0].split('.')[0]} {v[0] / fastest:.2f}x"
                              for label, v in best.items()))
    finally:
        emu.stop()
# -- 12. the async client (python bench/run.py --only async runs this section alone) -------------

ASYNC_CONCURRENCY = 64
ASYNC_SYNC_GOAL = 1.5  # async get_tickets against sync get_tickets(max_workers=64)
ASYNC_ONE_BY_ONE_GOAL = 40.0
ASYNC_LAG_GOAL_MS = 10.0
ASYNC_WARM_GOAL_US = 5.0
ASYNC_COLD_TASKS = 1000


class _LongestCallback:
    """The longest single callback the event loop ran while entered (ms): how long one piece of code held it."""

    def __enter__(self) -> _LongestCallback:
        self.longest = 0.0
        self._run = asyncio.events.Handle._run
        run = self._run

        def timed(handle: asyncio.events.Handle) -> None:
            started = time.perf_counter()
            run(handle)
            self.longest = max(self.longest, (time.perf_counter() - started) * 1000)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.events.Handle._run = self._run  # type: ignore[method-assign]


class _RecordedAnswers:
    """An AsyncTransport answering each tenant's recorded answer after 50 ms: the async client's own cost, alone."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    async def request(self, method: str, url: str, *, body: bytes | None = None, **kwargs: Any) -> Any:
        await asyncio.sleep(WARM_LATENCY)
        return self.answers[_tenant_of(body) if body else "jwks"]

    async def aclose(self) -> None:
        return None


def _tenant_of(body: bytes) -> str:
    start = body.index(b">", body.index(b"ContextIdentifier")) + 1
    return body[start:body.index(b"<", start)].decode()


class _Recorder:
    """A sync Transport over HttpTransport that keeps each tenant's answer (and the JWKS)."""

    def __init__(self) -> None:
        self.inner = sut_soap.HttpTransport()
        self.answers: dict[str, Any] = {}

    def request(self, method: str, url: str, *, body: bytes | None = None, **kwargs: Any) -> Any:
        response = self.inner.request(method, url, body=body, **kwargs)
        self.answers[_tenant_of(body) if body else "jwks"] = response
        return response

    def close(self) -> None:
        self.inner.close()


async def _loop_lag(stop: asyncio.Event, into: list[float]) -> None:
    """How late a 1 ms sleep wakes up, again and again until ``stop``: the loop's lag, in ms."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        into.append(max(0.0, (time.perf_counter() - started - 0.001) * 1000))


_BYSTANDER = """
import asyncio, sys, threading, time
lags = []
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
async def probe():
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(max(0.0, (time.perf_counter() - started - 0.001) * 1000))
asyncio.run(probe())
print(" ".join(f"{lag:.3f}" for lag in lags))
"""


class _Bystander:
    """Another process running the same loop-lag probe meanwhile: how late a loop wakes on this machine anyway."""

    def __enter__(self) -> _Bystander:
        self.proc = subprocess.Popen([sys.executable, "-c", _BYSTANDER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        time.sleep(0.2)  # its interpreter started, its loop probing
        self.lags: list[float] = []
        return self

    def __exit__(self, *exc_info: object) -> None:
        out, _ = self.proc.communicate("", timeout=30)
        self.lags = [float(lag) for lag in out.split()]


def _async_client(emu: EmulatorProcess, key: rsa.RSAPrivateKey) -> AsyncSystemUserClient:
    return AsyncSystemUserClient(client_secret=SECRET, private_key=key, endpoint=emu.endpoint)


async def _async_warm_up(emu: EmulatorProcess, key: rsa.RSAPrivateKey, tenants: dict[str, str], *,
                         sign_in_thread: bool, answers: dict[str, Any] | None = None) -> AsyncRun:
    """One warm-up of ``tenants`` by a new async client (over recorded ``answers``, if given)."""
    transport = None if answers is None else _RecordedAnswers(answers)
    client = AsyncSystemUserClient(client_secret=SECRET, private_key=key, endpoint=emu.endpoint, transport=transport)
    async with client:
        client._sign_in_thread = sign_in_thread  # the measured choice below, not an option
        await client.authenticate(context_identifier=CTX, system_user_token=TOKEN)  # JWKS fetched
        lags: list[float] = []
        stop = asyncio.Event()
        # Started and read outside the measured part: both block the loop for a moment.
        with _Bystander() as bystander:
            probe = asyncio.create_task(_loop_lag(stop, lags))
            ex0, _ = emu.stats()
            with _LongestCallback() as longest:
                cpu0, started = time.process_time(), time.perf_counter()
                result = await client.get_tickets(tenants, concurrency=ASYNC_CONCURRENCY)
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
            stop.set()
            await probe
        ex1, _ = emu.stats()
    ok = sum(isinstance(t, SystemUserTicket) for t in result.values())
    lag_max, lag_p99 = _lag_figures(lags)
    return AsyncRun(elapsed, cpu, len(tenants) if answers is not None else ex1 - ex0, ok, lag_max, lag_p99,
                    longest.longest, *_lag_figures(bystander.lags))


@dataclass
class AsyncRun:
    """One async warm-up: seconds, client CPU, exchanges, tickets, loop lag max and p99, longest callback, and
    the lag of an idle loop in another process meanwhile (ms)."""

    seconds: float
    cpu: float
    exchanges: int
    tickets: int
    lag_max: float
    lag_p99: float
    longest: float
    bystander_max: float
    bystander_p99: float

    def line(self, label: str, sync_seconds: float, one_by_one: float) -> str:
        return (f"   {label:<54} {self.seconds:7.3f} s   {self.exchanges} exchanges, {self.tickets} tickets, "
                f"client CPU {self.cpu:.3f} s; vs sync {sync_seconds / self.seconds:4.2f}x, "
                f"vs one by one {one_by_one / self.seconds:5.1f}x\n"
                f"      loop lag (a 1 ms sleep woken late) max {self.lag_max:.2f} ms, p99 {self.lag_p99:.2f} ms; "
                f"longest single callback on the loop {self.longest:.2f} ms\n"
                f"      meanwhile, an idle loop in another process: lag max {self.bystander_max:.2f} ms, "
                f"p99 {self.bystander_p99:.2f} ms")


async def _async_one_by_one(emu: EmulatorProcess, key: rsa.RSAPrivateKey, sample: list[tuple[str, str]]) -> float:
    async with _async_client(emu, key) as client:
        await client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
        started = time.perf_counter()
        for ctx, token in sample:
            await client.get_ticket(context_identifier=ctx, system_user_token=token)
        return time.perf_counter() - started


async def _async_cold_tenant(emu: EmulatorProcess, key: rsa.RSAPrivateKey) -> tuple[int, int]:
    async with _async_client(emu, key) as client:
        await client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
        before, _ = emu.stats()
        got = await asyncio.gather(*(
            client.get_ticket(context_identifier="Cold0001", system_user_token="Cold Sync-0001")
            for _ in range(ASYNC_COLD_TASKS)
        ))
        after, _ = emu.stats()
    return after - before, len({t.ticket for t in got})


async def _async_warm_get(emu: EmulatorProcess, key: rsa.RSAPrivateKey) -> float:
    async with _async_client(emu, key) as client:
        await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)
        get = client.get_ticket
        best = float("inf")
        for _ in range(5):
            n = 50_000
            started = time.perf_counter()
            for _ in range(n):
                await get(context_identifier=CTX, system_user_token=TOKEN)
            best = min(best, (time.perf_counter() - started) / n * 1e6)
        return best


def _lag_figures(lags: list[float]) -> tuple[float, float]:
    ordered = sorted(lags) or [float("nan")]
    return ordered[-1], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def async_client(key: rsa.RSAPrivateKey, results: Results) -> None:
    emu = EmulatorProcess(key)
    try:
        _async_client_section(emu, key, results)
    finally:
        emu.stop()


def _async_client_section(emu: EmulatorProcess, key: rsa.RSAPrivateKey, results: Results) -> None:
    # What README advises an asyncio service: the objects made at start-up (zeep's WSDL model
    # among them) out of the collector's reach, so a full collection is a pause of ~5 ms, not ~50.
    gc.collect()
    gc.freeze()
    tenants = {f"Warm{i:04d}": f"Warm Sync-{i:04d}" for i in range(WARM_TENANTS)}
    sample = list(tenants.items())[:ONE_BY_ONE]
    print(f"12. the async client over its default AiohttpTransport, {WARM_TENANTS:,} cold tenants, "
          f"{WARM_LATENCY * 1000:.0f} ms emulator latency each, same run:")
    one_by_one = asyncio.run(_async_one_by_one(emu, key, sample)) / len(sample) * WARM_TENANTS
    scaled = f"measured on {len(sample)}, scaled" if len(sample) < WARM_TENANTS else "measured"
    print(f"   one by one (await get_ticket in a loop, {scaled})   {one_by_one:7.3f} s")

    with sut_client(emu, key) as client:
        ex0, _ = emu.stats()
        cpu0, started = time.process_time(), time.perf_counter()
        result = client.get_tickets(tenants, max_workers=ASYNC_CONCURRENCY)
        sync_seconds, sync_cpu = time.perf_counter() - started, time.process_time() - cpu0
        ex1, _ = emu.stats()
    ok = sum(isinstance(t, SystemUserTicket) for t in result.values())
    print(f"   sync get_tickets(max_workers={ASYNC_CONCURRENCY})              {sync_seconds:7.3f} s   "
          f"{ex1 - ex0} exchanges, {ok} tickets, client CPU {sync_cpu:.3f} s")

    runs: dict[bool, list[AsyncRun]] = {False: [], True: []}
    for _ in range(2):  # interleaved, so both see the same machine
        for in_thread in (False, True):
            runs[in_thread].append(asyncio.run(_async_warm_up(emu, key, tenants, sign_in_thread=in_thread)))
    for in_thread, measured in runs.items():
        where = "signing in a thread" if in_thread else "signing on the loop (default)"
        for run in measured:
            print(run.line(f"async get_tickets(concurrency={ASYNC_CONCURRENCY}), {where}", sync_seconds, one_by_one))
    best = min(runs[False], key=lambda run: run.seconds)

    recorder = _Recorder()
    with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=emu.endpoint, transport=recorder) as client:
        client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
        client.get_tickets(tenants, max_workers=ASYNC_CONCURRENCY)
    print("   the client alone: each tenant's recorded answer after 50 ms (asyncio.sleep), no HTTP, no threads:")
    for in_thread in (False, True):
        alone = asyncio.run(_async_warm_up(emu, key, tenants, sign_in_thread=in_thread, answers=recorder.answers))
        where = "signing in a thread" if in_thread else "signing on the loop (default)"
        print(alone.line(f"async get_tickets(concurrency={ASYNC_CONCURRENCY}), {where}", sync_seconds, one_by_one))
    lag_max, lag_p99 = best.lag_max, best.lag_p99
    exchanges, distinct = asyncio.run(_async_cold_tenant(emu, key))
    print(f"   {ASYNC_COLD_TASKS:,} tasks on one cold tenant (100 ms latency): {exchanges} exchange(s), "
          f"{distinct} distinct ticket(s)")
    warm_us = asyncio.run(_async_warm_get(emu, key))
    print(f"   warm await get_ticket: {warm_us:.2f} us (best of 5 x 50,000)")
    results.async_rows = [
        (f"async warm-up, {WARM_TENANTS:,} tenants at 50 ms, vs sync get_tickets(max_workers=64)",
         sync_seconds / best.seconds, f">= {ASYNC_SYNC_GOAL:g}", sync_seconds / best.seconds >= ASYNC_SYNC_GOAL,
         "{:.2f}x"),
        (f"async warm-up, {WARM_TENANTS:,} tenants at 50 ms, vs one by one", one_by_one / best.seconds,
         f">= {ASYNC_ONE_BY_ONE_GOAL:g}", one_by_one / best.seconds >= ASYNC_ONE_BY_ONE_GOAL, "{:.1f}x"),
        (f"exchanges for {ASYNC_COLD_TASKS:,} tasks on one cold tenant", exchanges, "== 1", exchanges == 1, "{}"),
        ("loop lag during the async warm-up, max (ms)", lag_max, f"< {ASYNC_LAG_GOAL_MS:g}",
         lag_max < ASYNC_LAG_GOAL_MS, "{:.2f}"),
        ("loop lag during the async warm-up, p99 (ms)", lag_p99, f"< {ASYNC_LAG_GOAL_MS:g}",
         lag_p99 < ASYNC_LAG_GOAL_MS, "{:.2f}"),
        ("longest single callback on the loop during the async warm-up (ms)", best.longest,
         f"< {ASYNC_LAG_GOAL_MS:g}", best.longest < ASYNC_LAG_GOAL_MS, "{:.2f}"),
        ("warm await get_ticket (us)", warm_us, f"<= {ASYNC_WARM_GOAL_US:g}", warm_us <= ASYNC_WARM_GOAL_US, "{:.2f}"),
    ]


# -- 13. calling the tenant's API (python bench/run.py --only api runs this section alone) -------

API_STORM = 50  # requests at once, all refused on the same revoked ticket
API_LATENCY = 0.1  # the tenant API's latency in the storm, so the 50 overlap
API_ROUNDS = 15  # interleaved rounds of API_CALLS warm requests, hand-set headers against the auth object
API_CALLS = 100
API_LIBRARIES = ("requests", "httpx", "httpx.AsyncClient", "aiohttp")


def _sync_session(library: str, auth: Any) -> Any:
    import httpx
    import requests

    if library == "requests":
        session = requests.Session()
        session.auth = auth
        return session
    return httpx.Client(auth=auth, timeout=30)


def _sync_get(session: Any, url: str, headers: dict[str, str] | None = None) -> int:
    response = session.get(url, headers=headers)
    return int(response.status_code)


async def _async_get(library: str, session: Any, url: str, headers: dict[str, str] | None = None) -> int:
    if library == "aiohttp":
        async with session.get(url, headers=headers) as response:
            await response.read()
            return int(response.status)
    response = await session.get(url, headers=headers)
    return int(response.status_code)


def _async_session(library: str, auth: Any) -> Any:
    import aiohttp
    import httpx

    if library == "aiohttp":
        return aiohttp.ClientSession(middlewares=(auth,) if auth is not None else (),
                                     connector=aiohttp.TCPConnector(limit=API_STORM * 2))
    return httpx.AsyncClient(auth=auth, timeout=30, limits=httpx.Limits(max_connections=API_STORM * 2))


async def _async_close(library: str, session: Any) -> None:
    await (session.close() if library == "aiohttp" else session.aclose())


@dataclass
class ApiFigures:
    """One library's figures: the storm (wall s, exchanges, requests, resends) and µs per warm request."""

    storm_wall: float = 0.0
    exchanges: int = 0
    requests: int = 0
    resent: int = 0
    statuses_ok: bool = False
    hand_us: list[float] = field(default_factory=list)
    auth_us: list[float] = field(default_factory=list)


def _storm_counts(emu: Emulator, refused: str, before: tuple[int, int]) -> tuple[int, int, int]:
    exchanges, requests_ = emu.exchange_count - before[0], emu.api_request_count - before[1]
    resent = sum(1 for r in emu.api_requests[-requests_:] if refused not in r.headers.get("Authorization", ""))
    return exchanges, requests_, resent


def _sync_api(emu: Emulator, key: rsa.RSAPrivateKey, library: str, figures: ApiFigures) -> None:
    with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=emu.endpoint) as client:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN)
        url = auth.base_url + "/v1/User/currentPrincipal"
        sessions = [_sync_session(library, auth) for _ in range(API_STORM)]
        try:
            _sync_get(sessions[0], url)
            refused = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).ticket
            emu.revoke_ticket(refused)
            emu.inject(Fault.API_LATENCY, tenant=CTX, seconds=API_LATENCY, times=API_STORM)
            before = (emu.exchange_count, emu.api_request_count)
            started = time.perf_counter()
            with ThreadPoolExecutor(API_STORM) as pool:
                statuses = list(pool.map(lambda session: _sync_get(session, url), sessions))
            figures.storm_wall = time.perf_counter() - started
            figures.exchanges, figures.requests, figures.resent = _storm_counts(emu, refused, before)
            figures.statuses_ok = statuses == [200] * API_STORM
            ticket = client.get_ticket(context_identifier=CTX, system_user_token=TOKEN).ticket
            hand = {"Authorization": f"SOTicket {ticket}", "SO-AppToken": SECRET}
            bare = _sync_session(library, None)
            try:
                pairs = ((figures.hand_us, bare, hand), (figures.auth_us, sessions[0], None))
                for _ in range(API_ROUNDS):
                    for timed, session, headers in pairs:
                        started = time.perf_counter()
                        for _ in range(API_CALLS):
                            _sync_get(session, url, headers)
                        timed.append((time.perf_counter() - started) / API_CALLS * 1e6)
            finally:
                bare.close()
        finally:
            for session in sessions:
                session.close()


async def _async_api(emu: Emulator, key: rsa.RSAPrivateKey, library: str, figures: ApiFigures) -> None:
    async with AsyncSystemUserClient(client_secret=SECRET, private_key=key, endpoint=emu.endpoint) as client:
        auth = client.auth(context_identifier=CTX, system_user_token=TOKEN)
        url = await auth.base_url() + "/v1/User/currentPrincipal"
        session, bare = _async_session(library, auth), _async_session(library, None)
        try:
            await _async_get(library, session, url)
            refused = (await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)).ticket
            emu.revoke_ticket(refused)
            emu.inject(Fault.API_LATENCY, tenant=CTX, seconds=API_LATENCY, times=API_STORM)
            before = (emu.exchange_count, emu.api_request_count)
            started = time.perf_counter()
            statuses = await asyncio.gather(*(_async_get(library, session, url) for _ in range(API_STORM)))
            figures.storm_wall = time.perf_counter() - started
            figures.exchanges, figures.requests, figures.resent = _storm_counts(emu, refused, before)
            figures.statuses_ok = statuses == [200] * API_STORM
            ticket = (await client.get_ticket(context_identifier=CTX, system_user_token=TOKEN)).ticket
            hand = {"Authorization": f"SOTicket {ticket}", "SO-AppToken": SECRET}
            # A new session for the warm requests: the storm's 50 idle connections slow httpx's pool.
            await _async_close(library, session)
            session = _async_session(library, auth)
            for _ in range(API_ROUNDS):
                for timed, with_auth, headers in ((figures.hand_us, bare, hand), (figures.auth_us, session, None)):
                    started = time.perf_counter()
                    for _ in range(API_CALLS):
                        await _async_get(library, with_auth, url, headers)
                    timed.append((time.perf_counter() - started) / API_CALLS * 1e6)
        finally:
            await _async_close(library, session)
            await _async_close(library, bare)


def tenant_api(key: rsa.RSAPrivateKey) -> None:
    print(f"13. calling the tenant's API through client.auth(), the emulator in this process: {API_STORM} requests "
          f"at once on a revoked ticket ({API_LATENCY * 1000:.0f} ms API latency), then warm requests, "
          f"{API_ROUNDS} x {API_CALLS} with hand-set headers and with the auth object, interleaved:")
    for library in API_LIBRARIES:
        figures = ApiFigures()
        with Emulator(client_secret=SECRET, partner_public_key=key.public_key()) as emu:
            emu.add_tenant(CTX, system_user_token=TOKEN)
            if library in ("requests", "httpx"):
                _sync_api(emu, key, library, figures)
            else:
                asyncio.run(_async_api(emu, key, library, figures))
        hand, auth = statistics.median(figures.hand_us), statistics.median(figures.auth_us)
        print(f"   {library:<18} storm: {figures.exchanges} exchange(s), {figures.requests} requests, "
              f"{figures.resent} resent with the new ticket, all 200: {figures.statuses_ok}, "
              f"{figures.storm_wall * 1000:.0f} ms; warm request median {hand:.0f} us by hand, "
              f"{auth:.0f} us with the auth object ({auth - hand:+.0f} us)")


def summary(results: Results) -> int:
    floor_ratio = results.exchange_cpu_ms / results.floor_cpu_ms
    wall_ratio = results.exchange_wall_ms / results.handwritten_wall_ms
    most, default = max(WARM_WORKERS), 16
    speedup = results.warmup_speedup.get(most, float("nan"))
    speedup_default = results.warmup_speedup.get(default, float("nan"))
    scaled = " (1-by-1 extrapolated)" if results.warmup_extrapolated else ""
    rows = [
        ("exchange client CPU / floor (sign + verify + bare HTTP)", floor_ratio,
         f"<= {FLOOR_RATIO_GOAL:g}", floor_ratio <= FLOOR_RATIO_GOAL, "{:.3f}"),
        ("exchange wall time, sut-soap / hand-written", wall_ratio,
         f"<= {WALL_RATIO_GOAL:g}", wall_ratio <= WALL_RATIO_GOAL, "{:.3f}"),
        ("warm get_ticket, times cheaper than an exchange", results.exchange_wall_ms * 1000 / results.warm_get_us,
         ">= 1000", results.exchange_wall_ms * 1000 / results.warm_get_us >= 1000, "{:,.0f}x"),
        (f"warm-up, {WARM_TENANTS:,} tenants at 50 ms, {most} workers vs 1-by-1{scaled}", speedup,
         f">= {WARMUP_GOAL:g}", speedup >= WARMUP_GOAL, "{:.1f}x"),
        (f"warm-up, {WARM_TENANTS:,} tenants at 50 ms, {default} workers (default) vs 1-by-1", speedup_default,
         f">= {WARMUP_DEFAULT_GOAL:g}", speedup_default >= WARMUP_DEFAULT_GOAL, "{:.1f}x"),
        (f"emulator CPU ms per exchange in the {most}-worker warm-up", results.warmup_emulator_cpu_ms,
         f"< {EMULATOR_CPU_GOAL_MS:g}", results.warmup_emulator_cpu_ms < EMULATOR_CPU_GOAL_MS, "{:.2f}"),
        ("exchanges for 50 threads on one cold tenant", results.cold_exchanges, "== 1",
         results.cold_exchanges == 1, "{}"),
        ("KiB per cached ticket, 10,000 tenants through get_ticket (tracemalloc)", results.memory_kib_per_ticket,
         f"<= {MEMORY_GOAL_KIB:g}", results.memory_kib_per_ticket <= MEMORY_GOAL_KIB, "{:.2f}"),
        (f"emulator: clients dropped of {CONCURRENT_CLIENTS} concurrent", results.concurrent_dropped, "== 0",
         results.concurrent_dropped == 0, "{}"),
    ]
    for deadline in DRIP_DEADLINES:
        call = results.drip_calls.get(deadline)
        overshoot = call.overshoot_ms if call is not None else float("nan")
        rows.append((f"dripping server: ms past deadline={deadline:g} s (TransportError)", overshoot,
                     f"0-{DRIP_OVERSHOOT_MS:.0f} ms",
                     call is not None and call.cut and 0 <= overshoot < DRIP_OVERSHOOT_MS, "{:.1f}"))
    rows.extend(results.async_rows)
    print("targets:")
    for label, value, target, ok, fmt in rows:
        print(f"   {label:<70} {fmt.format(value):>9}   target {target:<8} {'met' if ok else 'MISSED'}")
    for note in results.notes:
        print(f"   note: {note}")
    return 0


def main() -> int:
    print(f"sut-soap benchmarks on {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}, "
          f"sut_soap from {Path(sut_soap.__file__).parent}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if sys.argv[1:] == ["--only", "redis"]:  # section 10 alone
        fleet_on_redis(key)
        return 0
    if sys.argv[1:] == ["--only", "async-http"]:  # section 11 alone
        async_http(key)
        return 0
    if sys.argv[1:] == ["--only", "api"]:  # section 13 alone
        tenant_api(key)
        return 0
    results = Results()
    if sys.argv[1:] == ["--only", "async"]:  # section 12 alone
        async_client(key, results)
        print("targets:")
        for label, value, target, ok, fmt in results.async_rows:
            print(f"   {label:<70} {fmt.format(value):>9}   target {target:<8} {'met' if ok else 'MISSED'}")
        return 0
    emu = EmulatorProcess(key)
    try:
        exchange_against_handwritten(emu, key, results)
        soap_against_rest(emu, key)
        cost_split(emu, key)
        warm_cache_and_single_flight(emu, key, results)
        warm_up(emu, key, results)
    finally:
        emu.stop()
    startup()
    memory(results)
    emulator_throughput(key)
    emu = EmulatorProcess(key)  # a fresh one: no connections left from sections 1-4
    try:
        concurrent_clients(emu, key, results)
    finally:
        emu.stop()
    dripping_server(key, results)
    fleet_on_redis(key)
    async_http(key)
    async_client(key, results)
    tenant_api(key)
    return summary(results)


if __name__ == "__main__":
    sys.exit(main())
