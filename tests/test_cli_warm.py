"""sut-soap warm: the tenants file (CSV, JSON lines, variables, every refusal), the run against the emulator,
the report (text and --json), the progress bar and its fallback, --store through the store opener, Ctrl-C,
and no token, ticket or secret in anything printed or logged."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support import run_cli as run
from support import watch_logs

import sut_soap
import sut_soap.cli.warm as warm_module
from sut_soap.cache import DEFAULT_MAX_ENTRIES, CachedTicket
from sut_soap.cli import main as cli_main
from sut_soap.cli import tenantfile
from sut_soap.cli.tenantfile import TenantEntry, read_tenants
from sut_soap.client import DEFAULT_MAX_WORKERS, SystemUserClient
from sut_soap.errors import SutSoapError
from sut_soap.keys import load_private_key
from sut_soap.testing import scan_for_secrets
from sut_soap.testing.emulator import Emulator, Fault

ROOT = Path(__file__).resolve().parents[1]
XML_KEY = ROOT / "fixtures" / "keys" / "test-partner.xml"
SECRET = "warm-canary-secret-31bb"
TENANTS = {f"Cust{n}": f"Warm Sync-canary{n}q8Z" for n in (101, 102, 103)}
CTX1, CTX2, CTX3 = TENANTS
HEADER = "context_identifier,system_user_token\n"
CSV = HEADER + "".join(f"{ctx},{token}\n" for ctx, token in TENANTS.items())
JSONL = "".join(json.dumps({"context_identifier": ctx, "system_user_token": token}) + "\n"
                for ctx, token in TENANTS.items())
CONTEXT_HEADER = re.compile(rb"<(?:\w+:)?ContextIdentifier>([^<]+)<")


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module with the three tenants of TENANTS (its baseline, so reset() keeps them)."""
    emu = Emulator(client_secret=SECRET, partner_public_key=load_private_key(XML_KEY.read_bytes()))
    for ctx, token in TENANTS.items():
        emu.add_tenant(ctx, system_user_token=token)
    with emu:
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    """The module's emulator with faults cleared and counters at zero before each test."""
    emulator.reset()
    yield emulator
    emulator.clear_faults()
    assert emulator.internal_errors == []


@pytest.fixture(autouse=True)
def _no_store_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUT_SOAP_STORE", raising=False)


@pytest.fixture
def key(tmp_path: Path) -> str:
    """The partner key as a 0600 file (a 0644 checkout warns)."""
    target = tmp_path / "partner.xml"
    shutil.copyfile(XML_KEY, target)
    target.chmod(0o600)
    return str(target)


@pytest.fixture
def canary() -> Iterator[Any]:
    """Every log record and warning of the test, checked afterwards for the secret and the tokens."""
    yield from watch_logs(SECRET, *TENANTS.values())


def write(tmp_path: Path, content: str | bytes, name: str = "tenants.csv") -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def warm(emu: Emulator, key: str, file: str, *extra: str, stdin: str | None = None) -> tuple[int, str, str]:
    return run("warm", file, "--endpoint", emu.endpoint, "--client-secret", SECRET, "--private-key", key, *extra,
               stdin=stdin)


def exchanged_tenants(emu: Emulator) -> list[str]:
    return sorted(CONTEXT_HEADER.search(request.body).group(1).decode() for request in emu.requests)  # type: ignore[union-attr]


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        for token in TENANTS.values():
            assert token not in text
        assert "7T:" not in text and "eyJ" not in text


class Tty(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class DictStore:
    """A store double: entries kept as their wire JSON (as a shared store would), every call recorded."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_set_for: set[str] = set()

    def get(self, key: str) -> CachedTicket | None:
        self.calls.append(("get", key))
        raw = self.entries.get(key)
        return None if raw is None else CachedTicket.from_json(raw)

    def set(self, key: str, entry: CachedTicket, ttl: float) -> None:
        self.calls.append(("set", key))
        if key.rpartition(":")[2] in self.fail_set_for:
            raise ConnectionError("store full")
        self.entries[key] = entry.to_json()

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        self.entries.pop(key, None)


class FakeStoreClass:
    """Stands in for sut_soap.RedisTicketCache: from_url records its arguments and returns ``store``."""

    store: ClassVar[Any] = None
    opened: ClassVar[list[tuple[str, str | None]]] = []

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str | None = None) -> Any:
        cls.opened.append((url, key_prefix))
        return cls.store


@pytest.fixture
def fake_store(monkeypatch: pytest.MonkeyPatch) -> DictStore:
    """sut_soap.RedisTicketCache replaced by FakeStoreClass over a fresh DictStore."""
    store = DictStore()
    monkeypatch.setattr(FakeStoreClass, "store", store)
    monkeypatch.setattr(FakeStoreClass, "opened", [])
    monkeypatch.setattr(sut_soap, "RedisTicketCache", FakeStoreClass, raising=False)
    return store


STORE_URL = "rediss://:store-pass-77@127.0.0.1:6380/2"


# --- running the tenants ------------------------------------------------------------------------


def test_all_ok_exchanges_once_per_tenant(emu: Emulator, key: str, tmp_path: Path) -> None:
    """Every tenant gets a ticket: exit 0, one exchange per tenant, the summary counts them."""
    code, out, err = warm(emu, key, write(tmp_path, CSV))
    assert code == 0, err
    assert exchanged_tenants(emu) == sorted(TENANTS)
    assert out.startswith("warm: 3 tenant(s): 3 ok, 0 failed, in ")
    assert "no --store: nothing was shared" in out
    assert "checking only: no --store, nothing is shared" in err


def test_a_rejected_tenant_fails_the_run_and_is_named(emu: Emulator, key: str, tmp_path: Path) -> None:
    """One tenant rejected: exit 5, the others still get tickets, the report names it with the error and hint."""
    emu.inject(Fault.REJECT, tenant=CTX2, message="NeedsReapproval")
    code, out, err = warm(emu, key, write(tmp_path, CSV))
    assert code == 5
    assert "2 ok, 1 failed" in out
    assert f"FAILED {CTX2} (line 3): AuthenticationRejectedError: " in out and "NeedsReapproval" in out
    assert "  check: the tenant's approval" in out
    assert CTX1 not in out.replace(CTX2, "") and CTX3 not in out
    assert_no_secrets(out, err)


def test_jsonl_file(emu: Emulator, key: str, tmp_path: Path) -> None:
    """A .jsonl file with the same keys works as the CSV does."""
    code, _out, err = warm(emu, key, write(tmp_path, JSONL, "tenants.jsonl"))
    assert code == 0, err
    assert exchanged_tenants(emu) == sorted(TENANTS)


def test_ndjson_ending_is_json_lines(emu: Emulator, key: str, tmp_path: Path) -> None:
    """.ndjson selects JSON lines too."""
    code, _out, err = warm(emu, key, write(tmp_path, JSONL, "tenants.ndjson"))
    assert code == 0, err


def test_tokens_from_environment_variables(emu: Emulator, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """system_user_token_env names the variable holding each token; a header may carry both columns."""
    monkeypatch.setenv("WARM_TOKEN_A", TENANTS[CTX1])
    monkeypatch.setenv("WARM_TOKEN_B", TENANTS[CTX2])
    content = (
        "context_identifier,system_user_token,system_user_token_env\n"
        f"{CTX1},,WARM_TOKEN_A\n{CTX2},,WARM_TOKEN_B\n{CTX3},{TENANTS[CTX3]},\n"
    )
    code, out, err = warm(emu, key, write(tmp_path, content))
    assert code == 0, err
    assert exchanged_tenants(emu) == sorted(TENANTS)
    assert_no_secrets(out, err)


def test_stdin_with_format(emu: Emulator, key: str) -> None:
    """- reads the file from stdin, with --format."""
    code, _out, err = warm(emu, key, "-", "--format", "jsonl", stdin=JSONL)
    assert code == 0, err
    assert emu.exchange_count == 3


def test_stdin_without_format_is_refused(emu: Emulator, key: str) -> None:
    """- without --format exits 2 saying so."""
    code, _out, err = warm(emu, key, "-", stdin=CSV)
    assert code == 2
    assert "stdin does not say its format" in err and "--format" in err


def test_file_name_without_a_known_ending_needs_format(emu: Emulator, key: str, tmp_path: Path) -> None:
    """A .txt file needs --format; with it, it is read."""
    path = write(tmp_path, CSV, "tenants.txt")
    assert warm(emu, key, path)[0] == 2
    assert warm(emu, key, path, "--format", "csv")[0] == 0


def test_missing_file_exit_2(emu: Emulator, key: str, tmp_path: Path) -> None:
    """A tenants file that cannot be opened exits 2 naming it and the OS reason."""
    code, _out, err = warm(emu, key, str(tmp_path / "absent.csv"))
    assert code == 2
    assert "absent.csv" in err and "No such file" in err


def test_one_worker_runs_every_tenant(emu: Emulator, key: str, tmp_path: Path) -> None:
    """--workers 1 runs the tenants one after the other and still reaches every one."""
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--workers", "1")
    assert code == 0, err
    assert "3 tenant(s) from" in err and "1 at a time" in err


def test_workers_default_to_the_clients(emu: Emulator, key: str, tmp_path: Path) -> None:
    """Without --workers, as many as get_tickets would use (never more than tenants); --help says the number."""
    content = HEADER + "".join(f"Cust9{n:03d},Warm Sync-x{n}\n" for n in range(DEFAULT_MAX_WORKERS + 2))
    code, _out, err = warm(emu, key, write(tmp_path, content), "--deadline", "5")
    assert code == 5  # unknown tenants: rejected
    assert f"{DEFAULT_MAX_WORKERS} at a time" in err
    assert f"default: the client's get_tickets default, {DEFAULT_MAX_WORKERS})" in " ".join(run("warm", "--help")[1].split())


@pytest.mark.parametrize("workers", ["0", "257"])
def test_workers_out_of_range_exit_2(emu: Emulator, key: str, tmp_path: Path, workers: str) -> None:
    """--workers outside 1..256 is a usage error; nothing is sent."""
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--workers", workers)
    assert code == 2 and "--workers must be from 1 to 256" in err
    assert emu.exchange_count == 0


def test_deadline_is_checked_as_elsewhere(emu: Emulator, key: str, tmp_path: Path) -> None:
    """--deadline 0 is refused like the other commands' --deadline."""
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--deadline", "0")
    assert code == 2 and "--deadline must be above 0" in err


def test_deadline_bounds_each_tenant(emu: Emulator, key: str, tmp_path: Path) -> None:
    """A tenant whose answer drips past --deadline fails with a TransportError; the others are fine."""
    emu.inject(Fault.DRIP, tenant=CTX1, seconds=0.2)
    started = time.monotonic()
    code, out, _err = warm(emu, key, write(tmp_path, CSV), "--deadline", "1")
    assert time.monotonic() - started < 5
    assert code == 5
    assert f"FAILED {CTX1} (line 2): TransportError: " in out and "2 ok, 1 failed" in out


def test_an_unexpected_exception_is_one_tenants_failure(emu: Emulator, key: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside get_ticket fails that tenant with its type only (its text could hold the token)."""
    def broken(self: SystemUserClient, *, context_identifier: str, system_user_token: str) -> Any:
        raise RuntimeError(system_user_token)

    monkeypatch.setattr(SystemUserClient, "get_ticket", broken)
    code, out, err = warm(emu, key, write(tmp_path, CSV))
    assert code == 5
    assert "FAILED Cust101 (line 2): SutSoapError: unexpected RuntimeError while getting the ticket" in out
    assert_no_secrets(out, err)


def test_an_error_text_holding_the_token_is_masked(emu: Emulator, key: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Should an error ever quote a tenant's token or the client secret, the report shows *** instead."""
    def leaky(self: SystemUserClient, *, context_identifier: str, system_user_token: str) -> Any:
        raise SutSoapError(f"bad {system_user_token} for {SECRET}", hint=f"check {system_user_token}")

    monkeypatch.setattr(SystemUserClient, "get_ticket", leaky)
    for extra in ((), ("--json",)):
        code, out, err = warm(emu, key, write(tmp_path, CSV), *extra)
        assert code == 5
        assert "bad *** for ***" in out and "check ***" in out
        assert_no_secrets(out, err)


# --- the report -----------------------------------------------------------------------------------


def test_json_report_schema(emu: Emulator, key: str, tmp_path: Path) -> None:
    """--json prints one object: counts, store, and per tenant its line, status, source, error and time; no ticket."""
    emu.inject(Fault.REJECT, tenant=CTX3, message="Revoked")
    code, out, err = warm(emu, key, write(tmp_path, CSV), "--json")
    assert code == 5
    report = json.loads(out)
    assert set(report) == {"format", "endpoint", "store", "tenants", "ok", "failed", "not_tried", "interrupted",
                           "seconds", "results"}
    assert (report["format"], report["endpoint"], report["store"]) == (1, emu.endpoint, None)
    assert (report["tenants"], report["ok"], report["failed"], report["not_tried"]) == (3, 2, 1, 0)
    assert report["interrupted"] is False and isinstance(report["seconds"], float)
    assert [r["context_identifier"] for r in report["results"]] == list(TENANTS)
    ok, _, failed = report["results"]
    assert set(ok) == {"context_identifier", "line", "status", "source", "error", "seconds"}
    assert (ok["line"], ok["status"], ok["source"], ok["error"]) == (2, "ok", "exchange", None)
    assert failed["status"] == "failed" and failed["line"] == 4
    assert failed["error"]["type"] == "AuthenticationRejectedError"
    assert "Revoked" in failed["error"]["message"] and failed["error"]["retryable"] is False
    assert "approval" in failed["error"]["hint"]
    assert err.strip().splitlines()[-1].startswith("sut-soap: warm: 3 tenant(s): 2 ok, 1 failed")


def test_nothing_secret_is_printed_or_logged(emu: Emulator, key: str, tmp_path: Path, canary: Any) -> None:
    """Neither the text nor the JSON report, stderr or any log record holds a token, ticket, JWT or the secret."""
    emu.inject(Fault.REJECT, tenant=CTX1)
    emu.inject(Fault.EXPIRED_TOKEN, tenant=CTX2)
    texts = []
    for extra in ((), ("--json",), ("--progress", "always")):
        _code, out, err = warm(emu, key, write(tmp_path, CSV), *extra)
        texts += [out, err]
    assert_no_secrets(*texts, canary.text())
    canary.check(*texts)
    reports = tmp_path / "reports"
    reports.mkdir()
    for number, text in enumerate(texts):
        (reports / f"{number}.txt").write_text(text)
    assert scan_for_secrets(reports) == []


def test_tenant_entry_repr_hides_the_token() -> None:
    """A TenantEntry's repr shows the tenant and line, never the token."""
    entry = TenantEntry(CTX1, TENANTS[CTX1], 2)
    assert repr(entry) == f"TenantEntry({CTX1!r}, system_user_token='***', line=2)"


# --- progress -----------------------------------------------------------------------------------


def run_with_stderr(err: io.StringIO, *argv: str) -> tuple[int, str, str]:
    out = io.StringIO()
    code = cli_main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def warm_argv(emu: Emulator, key: str, file: str, *extra: str) -> list[str]:
    return ["warm", file, "--endpoint", emu.endpoint, "--client-secret", SECRET, "--private-key", key, *extra]


def test_progress_bar_on_a_terminal(emu: Emulator, key: str, tmp_path: Path) -> None:
    """On a terminal stderr gets tqdm's bar with the ok and failed counts; the summary still goes to stdout."""
    emu.inject(Fault.REJECT, tenant=CTX1)
    code, out, err = run_with_stderr(Tty(), *warm_argv(emu, key, write(tmp_path, CSV)))
    assert code == 5
    assert "3/3" in err and "100%" in err and "ok=2" in err and "failed=1" in err
    assert out.startswith("warm: 3 tenant(s): 2 ok, 1 failed")


def test_plain_output_off_a_terminal(emu: Emulator, key: str, tmp_path: Path) -> None:
    """Off a terminal there is no bar: stderr has the start line only."""
    code, _out, err = warm(emu, key, write(tmp_path, CSV))
    assert code == 0
    assert "%|" not in err and "\r" not in err
    assert len(err.strip().splitlines()) == 1


def test_progress_never_on_a_terminal(emu: Emulator, key: str, tmp_path: Path) -> None:
    """--progress never keeps the bar off even on a terminal."""
    code, _out, err = run_with_stderr(Tty(), *warm_argv(emu, key, write(tmp_path, CSV), "--progress", "never"))
    assert code == 0 and "%|" not in err


@pytest.mark.parametrize(("stderr", "mode", "note"), [(Tty, "auto", False), (io.StringIO, "always", True)])
def test_without_tqdm_output_is_plain(emu: Emulator, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      stderr: type[io.StringIO], mode: str, note: bool) -> None:
    """Without the cli extra (tqdm not importable) the run is the same with plain output; --progress always says why."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    code, out, err = run_with_stderr(stderr(), *warm_argv(emu, key, write(tmp_path, CSV), "--progress", mode))
    assert code == 0
    assert "%|" not in err
    assert ("pip install 'sut-soap[cli]'" in err) is note
    assert out.startswith("warm: 3 tenant(s): 3 ok")


# --- Ctrl-C ---------------------------------------------------------------------------------------


def test_interrupt_reports_what_was_done(emu: Emulator, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after the first tenant: exit 130, the report counts it and the tenants not tried."""
    real = warm_module._results

    def interrupted(*args: Any) -> Iterator[Any]:
        results = real(*args)
        yield next(results)
        raise KeyboardInterrupt

    monkeypatch.setattr(warm_module, "_results", interrupted)
    code, out, err = warm(emu, key, write(tmp_path, CSV), "--json", "--workers", "1")
    assert code == 130
    report = json.loads(out)
    assert report["interrupted"] is True and (report["ok"], report["not_tried"]) == (1, 2)
    assert [r["status"] for r in report["results"]].count("not_tried") == 2
    assert "interrupted: 1 ok, 0 failed, 2 not tried" in err
    assert "Traceback" not in err


def test_sigint_stops_a_real_run_quickly(emu: Emulator, key: str, tmp_path: Path) -> None:
    """A real SIGINT while exchanges hang: the process exits 130 at once, with the report and no traceback."""
    emu.inject(Fault.LATENCY, seconds=10)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sut_soap", *warm_argv(emu, key, write(tmp_path, CSV), "--workers", "1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )
    assert process.stderr is not None
    started_line = ""
    while "warm: 3 tenant(s)" not in started_line:  # printed once the client is built, before the run
        started_line = process.stderr.readline()
        assert started_line, "the process ended before it started the run"
    time.sleep(0.3)  # the first exchange is under way
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=15)
    assert process.returncode == 130
    assert time.monotonic() - started < 5
    assert "interrupted: 0 ok, 0 failed, 3 not tried" in out
    assert "Traceback" not in err


# --- --store --------------------------------------------------------------------------------------


def test_store_is_the_clients_cache(emu: Emulator, key: str, tmp_path: Path, fake_store: DictStore) -> None:
    """--store opens RedisTicketCache.from_url(URL, key_prefix=) and the client keeps every ticket in it."""
    code, out, err = warm(emu, key, write(tmp_path, CSV), "--store", STORE_URL, "--key-prefix", "fleet-a")
    assert code == 0, err
    assert FakeStoreClass.opened == [(STORE_URL, "fleet-a")]
    kept = sorted(k.rpartition(":")[2] for op, k in fake_store.calls if op == "set")
    assert kept == sorted(TENANTS)
    assert "store rediss://127.0.0.1:6380/2: 3 exchanged, 0 already there" in out
    assert "store-pass-77" not in out + err


def test_a_real_redis_store_is_shared_with_another_process(emu: Emulator, key: str, tmp_path: Path, redis_url: str) -> None:
    """Against a real redis-server: a second warm in another process finds every ticket, encrypted at rest; no exchange."""
    path = write(tmp_path, CSV)
    code, _out, err = warm(emu, key, path, "--store", redis_url, "--key-prefix", "fleet-a:")
    assert code == 0, err
    assert sorted(exchanged_tenants(emu)) == sorted(TENANTS)
    before = emu.exchange_count
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    second = subprocess.run(
        [sys.executable, "-m", "sut_soap", *warm_argv(emu, key, path, "--store", redis_url, "--key-prefix",
                                                     "fleet-a:", "--json")],
        check=False, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )
    assert second.returncode == 0, second.stderr
    assert emu.exchange_count == before
    assert {r["source"] for r in json.loads(second.stdout)["results"]} == {"store"}
    import redis

    dump = b"".join(
        key_ + (redis.Redis.from_url(redis_url).dump(key_) or b"") for key_ in redis.Redis.from_url(redis_url).keys("*")
    )
    assert dump and all(key_.startswith(b"fleet-a:") for key_ in redis.Redis.from_url(redis_url).keys("*"))
    for secret in (*TENANTS, *TENANTS.values(), SECRET, "7T:"):
        assert secret.encode() not in dump


def test_a_warm_store_costs_no_exchange(emu: Emulator, key: str, tmp_path: Path, fake_store: DictStore) -> None:
    """A second run over the same store finds every ticket there: no exchange, source 'store'."""
    path = write(tmp_path, CSV)
    assert warm(emu, key, path, "--store", STORE_URL)[0] == 0
    before = emu.exchange_count
    code, out, _err = warm(emu, key, path, "--store", STORE_URL, "--json")
    assert code == 0
    assert emu.exchange_count == before
    report = json.loads(out)
    assert {r["source"] for r in report["results"]} == {"store"}
    assert report["store"] == "rediss://127.0.0.1:6380/2"


def test_a_store_that_does_not_keep_a_ticket_fails_that_tenant(emu: Emulator, key: str, tmp_path: Path,
                                                               fake_store: DictStore) -> None:
    """A store whose set fails for one tenant: that tenant is reported as a StoreError, exit 5."""
    fake_store.fail_set_for.add(CTX2)
    code, out, err = warm(emu, key, write(tmp_path, CSV), "--store", STORE_URL)
    assert code == 5
    assert f"FAILED {CTX2} (line 3): StoreError: got a ticket, but the store did not keep it (ConnectionError)" in out
    assert_no_secrets(out, err)


def test_a_store_that_does_not_answer_stops_before_any_exchange(emu: Emulator, key: str, tmp_path: Path,
                                                                fake_store: DictStore,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that fails its first read: exit 3 naming it (without the password); nothing is exchanged."""
    def down(key: str) -> None:
        raise ConnectionError(STORE_URL)

    monkeypatch.setattr(fake_store, "get", down)
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--store", STORE_URL)
    assert code == 3
    assert "the store rediss://127.0.0.1:6380/2 does not answer (ConnectionError)" in err
    assert "store-pass-77" not in err and emu.exchange_count == 0


def test_store_without_redis_py(emu: Emulator, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--store when redis-py cannot be imported: exit 2, telling to install sut-soap[redis]; nothing sent."""
    monkeypatch.setitem(sys.modules, "redis", None)
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--store", STORE_URL)
    assert code == 2
    assert "--store needs redis-py" in err and "pip install 'sut-soap[redis]'" in err
    assert emu.exchange_count == 0


def test_store_without_the_store_class(emu: Emulator, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--store with a sut-soap that has no RedisTicketCache: exit 2, telling to upgrade."""
    def no_such_name(name: str) -> Any:
        raise AttributeError(name)

    monkeypatch.delattr(sut_soap, "RedisTicketCache", raising=False)
    monkeypatch.setattr(sut_soap, "__getattr__", no_such_name)
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--store", STORE_URL)
    assert code == 2
    assert "--store needs sut_soap.RedisTicketCache" in err and "--upgrade" in err


def test_store_that_cannot_be_opened(emu: Emulator, key: str, tmp_path: Path, fake_store: DictStore,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """from_url raising something else: exit 2 naming only its type (its text could hold the password)."""
    def refuse(url: str, *, key_prefix: str | None = None) -> Any:
        raise ValueError(url)

    monkeypatch.setattr(FakeStoreClass, "from_url", refuse)
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--store", STORE_URL)
    assert code == 2
    assert "--store cannot be used: ValueError" in err and "store-pass-77" not in err


def test_store_errors_of_sut_soap_pass_through(emu: Emulator, key: str, tmp_path: Path, fake_store: DictStore,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """from_url raising a sut-soap error: that error and its exit code."""
    def refuse(url: str, *, key_prefix: str | None = None) -> Any:
        raise sut_soap.ConfigurationError("key_prefix must not be empty")

    monkeypatch.setattr(FakeStoreClass, "from_url", refuse)
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--store", STORE_URL)
    assert code == 2 and "key_prefix must not be empty" in err


@pytest.mark.parametrize(
    "url", ["http://user:store-pass-77@host/0", "redis://:store-pass-77@/0", "rediss://:store-pass-77@host:99999/0", "store-pass-77"]
)
def test_store_url_is_checked_without_echoing_it(emu: Emulator, key: str, tmp_path: Path, url: str) -> None:
    """A --store that is not a redis:// or rediss:// URL with a host: exit 2, its value (maybe a password) not shown."""
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--store", url)
    assert code == 2
    assert "--store must be a redis:// or rediss:// URL" in err and "store-pass-77" not in err


def test_store_from_its_variable_and_plaintext_warning(emu: Emulator, key: str, tmp_path: Path,
                                                        fake_store: DictStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """SUT_SOAP_STORE gives the store; redis:// to another host warns that tickets travel unencrypted."""
    monkeypatch.setenv("SUT_SOAP_STORE", "redis://:store-pass-77@[fd00::5]:6379")
    code, out, err = warm(emu, key, write(tmp_path, CSV))
    assert code == 0, err
    assert "warning: --store redis://[fd00::5]:6379 is not TLS" in err
    assert "store-pass-77" not in out + err


def test_key_prefix_needs_a_store(emu: Emulator, key: str, tmp_path: Path) -> None:
    """--key-prefix without --store is a usage error rather than silently ignored."""
    code, _out, err = warm(emu, key, write(tmp_path, CSV), "--key-prefix", "fleet-a")
    assert code == 2 and "--key-prefix applies only with --store" in err


def test_watched_store_passes_everything_else_to_the_store() -> None:
    """The client's view of the store delegates delete and any other attribute (the fleet lock) to it."""
    store = DictStore()
    store.lock = lambda key, timeout: (key, timeout)  # type: ignore[attr-defined]
    watched = warm_module._WatchedStore(store)  # type: ignore[arg-type]
    watched.delete("k")
    assert store.calls == [("delete", "k")]
    assert watched.lock("k", 2.0) == ("k", 2.0)


# --- the tenants file: every refusal ------------------------------------------------------------


TOKEN = TENANTS[CTX1]

BAD_FILES = [
    ("unknown-column", "tenants.csv", "context_identifier,token\nCust1,x\n", 1, "column 2 of the header is not one of"),
    ("no-header", "tenants.csv", f"{CTX1},{TOKEN}\n", 1, "column 1 of the header is not one of"),
    ("column-twice", "tenants.csv", "context_identifier,context_identifier,system_user_token\n", 1, "the header names context_identifier twice"),
    ("no-context-column", "tenants.csv", "system_user_token\nx\n", 1, "the header has no context_identifier"),
    ("no-token-column", "tenants.csv", "context_identifier\nCust1\n", 1, "the header has neither system_user_token nor"),
    ("missing-token", "tenants.csv", f"{HEADER}{CTX1},\n", 2, "has no system_user_token"),
    ("missing-context", "tenants.csv", f"{HEADER},{TOKEN}\n", 2, "context_identifier is missing or empty"),
    ("too-few-fields", "tenants.csv", f"{HEADER}{CTX1}\n", 2, "has 1 fields; the header has 2"),
    ("too-many-fields", "tenants.csv", f"{HEADER}{CTX1},{TOKEN},x\n", 2, "has 3 fields; the header has 2"),
    ("both-token-columns", "tenants.csv", f"context_identifier,system_user_token,system_user_token_env\n{CTX1},{TOKEN},X\n",
     2, "gives both system_user_token and system_user_token_env"),
    ("duplicate-tenant", "tenants.csv", f"{HEADER}{CTX1},{TOKEN}\n{CTX2},x y\n{CTX1},{TOKEN}\n", 4,
     f"tenant {CTX1} is listed again (first on line 2)"),
    ("variable-not-set", "tenants.csv", f"context_identifier,system_user_token_env\n{CTX1},WARM_UNSET_VARIABLE\n", 2,
     "the variable named in system_user_token_env is not set"),
    ("token-in-variable-column", "tenants.csv", f"context_identifier,system_user_token_env\n{CTX1},{TOKEN}\n", 2,
     "system_user_token_env is not the name of an environment variable"),
    ("token-in-context-column", "tenants.csv", f"{HEADER}{TOKEN},{CTX1}\n", 2, "context_identifier is not a tenant id"),
    ("token-with-spaces-around", "tenants.csv", f'{HEADER}{CTX1}," {TOKEN}"\n', 2, "system_user_token has leading or trailing"),
    ("context-with-control", "tenants.csv", f'{HEADER}"Cust\x07",{TOKEN}\n', 2, "context_identifier"),
    ("empty-file", "tenants.csv", "", None, "lists no tenants"),
    ("header-only", "tenants.csv", HEADER, None, "lists no tenants"),
    ("blank-lines-only", "tenants.jsonl", "\n  \n", None, "lists no tenants"),
    ("not-utf8", "tenants.csv", HEADER.encode() + f"{CTX1},Warm \xe9\n".encode("latin-1"), 2, "is not UTF-8 (byte 14 of the line)"),
    ("bad-csv-quote", "tenants.csv", f'{HEADER}{CTX1},"{TOKEN}"x\n', 2, "is not valid CSV"),
    ("csv-nul", "tenants.csv", f"{HEADER}{CTX1},{TOKEN}\x00\n", 2, "system_user_token contains a control character (U+0000)"),
    ("line-too-long", "tenants.csv", HEADER + f"{CTX1},{'x' * 20000}\n", 2, "is longer than 16384 bytes"),
    ("not-json", "tenants.jsonl", f'{{"context_identifier": "{CTX1}", "system_user_token": "{TOKEN}"\n', 1, "is not JSON (column"),
    ("json-too-deep", "tenants.jsonl", "[" * 5000 + "\n", 1, "is not JSON (nested too deeply)"),
    ("json-not-object", "tenants.jsonl", f'["{CTX1}", "{TOKEN}"]\n', 1, "is JSON but not an object (a list)"),
    ("json-unknown-key", "tenants.jsonl", f'{{"context_identifier": "{CTX1}", "token": "{TOKEN}"}}\n', 1,
     "has a key that is not one of context_identifier, system_user_token, system_user_token_env (token)"),
    ("json-token-as-key", "tenants.jsonl", f'{{"context_identifier": "{CTX1}", "{TOKEN}": "x"}}\n', 1,
     "has a key that is not one of context_identifier, system_user_token, system_user_token_env\n"),
    ("json-key-twice", "tenants.jsonl", f'{{"context_identifier": "{CTX1}", "context_identifier": "{CTX2}"}}\n', 1,
     "has an object with a key given twice"),
    ("json-number", "tenants.jsonl", f'{{"context_identifier": 12345, "system_user_token": "{TOKEN}"}}\n', 1,
     "context_identifier must be a string, not int"),
]


@pytest.mark.parametrize(("name", "content", "line", "message"), [case[1:] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_bad_tenants_file_is_refused_before_any_exchange(emu: Emulator, key: str, tmp_path: Path, name: str,
                                                         content: str | bytes, line: int | None, message: str) -> None:
    """Each unusable file exits 2 naming the line and the problem, never a token; nothing is sent."""
    code, out, err = warm(emu, key, write(tmp_path, content, name))
    assert code == 2
    where = "the tenants file: " if line is None else f"line {line} of the tenants file: "
    assert f"sut-soap: {where}{message}" in err
    assert "Traceback" not in err and out == ""
    assert_no_secrets(out, err)
    assert emu.exchange_count == 0


def test_variable_set_but_empty_is_refused(emu: Emulator, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable named in system_user_token_env that is set but empty is refused as such."""
    monkeypatch.setenv("WARM_EMPTY", "")
    code, _out, err = warm(emu, key, write(tmp_path, f"context_identifier,system_user_token_env\n{CTX1},WARM_EMPTY\n"))
    assert code == 2 and "line 2 of the tenants file: the variable named in system_user_token_env is set but empty" in err


def test_variable_holding_a_bad_token_is_refused(emu: Emulator, key: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A token read from a variable is checked like one in the file (here: its trailing newline)."""
    monkeypatch.setenv("WARM_NEWLINE", TOKEN + "\n")
    code, _out, err = warm(emu, key, write(tmp_path, f"context_identifier,system_user_token_env\n{CTX1},WARM_NEWLINE\n"))
    assert code == 2 and "the variable named in system_user_token_env has leading or trailing whitespace" in err
    assert TOKEN not in err


def test_several_bad_lines_are_listed(emu: Emulator, key: str, tmp_path: Path) -> None:
    """The first problem is explained and the lines of the next ten are listed."""
    content = HEADER + "".join(f"Cust{n},\n" for n in range(15))
    code, _out, err = warm(emu, key, write(tmp_path, content))
    assert code == 2
    assert "line 2 of the tenants file: has no system_user_token" in err
    assert "more problems on line(s) 3, 4, 5, 6, 7, 8, 9, 10, 11, 12\n" in err


def test_too_many_tenants_are_refused(emu: Emulator, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More tenants than MAX_TENANTS, or more lines than MAX_LINES, are refused; the cap is the cache's size."""
    assert tenantfile.MAX_TENANTS == DEFAULT_MAX_ENTRIES and tenantfile.MAX_LINES == DEFAULT_MAX_ENTRIES + 1
    monkeypatch.setattr(tenantfile, "MAX_TENANTS", 2)
    code, _out, err = warm(emu, key, write(tmp_path, CSV))
    assert code == 2 and "line 4 of the tenants file: lists more than 2 tenants" in err
    monkeypatch.setattr(tenantfile, "MAX_LINES", 3)
    code, _out, err = warm(emu, key, write(tmp_path, HEADER + "\n\n\n\n"))
    assert code == 2 and "line 4 of the tenants file: is past the limit of 3 lines" in err


def test_bom_blank_lines_and_crlf_are_accepted(emu: Emulator, key: str, tmp_path: Path) -> None:
    """A UTF-8 BOM, Windows line ends, spaces around header names and blank lines are fine."""
    content = "\ufeffcontext_identifier , system_user_token\r\n\r\n" + "".join(
        f"{ctx},{token}\r\n" for ctx, token in TENANTS.items()
    )
    code, _out, err = warm(emu, key, write(tmp_path, content))
    assert code == 0, err


def test_text_stream_lines_are_bounded() -> None:
    """Read from a text stream (stdin), a line over the limit is refused too, and a BOM is dropped."""
    with pytest.raises(tenantfile.TenantFileError, match="line 2 of the tenants file: is longer than"):
        read_tenants(io.StringIO(HEADER + "x" * 20000), "csv", environ={})
    (entry,) = read_tenants(io.StringIO("\ufeff" + HEADER + f"{CTX1},{TOKEN}\n"), "csv", environ={})
    assert (entry.context_identifier, entry.system_user_token, entry.line) == (CTX1, TOKEN, 2)
