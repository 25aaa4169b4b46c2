"""``warm``: get a ticket for every tenant of a file, into a fleet's shared store, or just check them.

The tenants come from a CSV or JSON-lines file (:mod:`sut_soap.cli.tenantfile`). With
``--store URL`` the client keeps its tickets in ``sut_soap.RedisTicketCache.from_url(URL,
key_prefix=...)``, so the processes of a fleet that share that store find them there and do not
exchange; a tenant already fresh in the store costs no exchange. Without ``--store`` nothing is
shared: the run only proves that every tenant can get a ticket today.

The tenants are driven through ``SystemUserClient.get_ticket`` on ``--workers`` daemon threads
(the client's ``get_tickets`` reports nothing until the end, and its pool threads would keep a
Ctrl-C waiting for every call in flight). Each call keeps to ``--deadline`` and gets the client's
retries. The main thread collects the results: a progress bar on stderr when stderr is a
terminal and tqdm is installed (the ``cli`` extra), else nothing until the summary. Ctrl-C stops
handing out tenants and reports what was done, exit code 130.

The report names each tenant that failed with its error's type and message (a sut-soap error's
message never holds a secret; each is also masked with the tenant's own token and the client
secret). No token, ticket or JWT is ever printed. Exit 0 only when every tenant got a ticket
(and, with ``--store``, the store kept it); otherwise 5, after the report.
"""

from __future__ import annotations

import argparse
import os

from ..errors import ConfigurationError, SutSoapError, TransportError
from ._common import (
    _add_deadline,
    _add_jwt_keys,
    _add_key,
    _add_secret,
    _add_target,
    _add_timeout,
    _deadline,
    _env_default,
    _load_key,
    _require,
    _required_target,
    _timeout,
)
from .exitcodes import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED

# typing is not imported at run time: see sut_soap.cli's docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator
    from typing import IO, Any, TextIO

    from ..cache import TicketCache
    from ..client import SystemUserClient
    from ._common import _Masker
    from .tenantfile import TenantEntry

__all__ = ["StoreError"]

_STORE_CLASS = "RedisTicketCache"
_STORE_SCHEMES = ("redis", "rediss")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
# A key no ticket is kept under: reading it proves the store answers, before any exchange.
_PROBE_KEY = "sut-soap:v1:warm-probe"
_PROGRESS = ("auto", "always", "never")
_REPORT_FORMAT = 1

DESCRIPTION = """\
Get a ticket for every tenant of FILE, with --workers calls at a time.

With --store URL (redis:// or rediss://) the tickets go into that shared store, where the
processes of a fleet using the same store find them: a fleet's store is warm before traffic
arrives, and a tenant already fresh there costs no exchange. Without --store NOTHING IS SHARED:
the run only checks that every tenant can get a ticket.

FILE (- for stdin) is CSV with a header, or JSON lines (one object per line), with the same names:
  context_identifier       the tenant, e.g. Cust12345
  system_user_token        its system user token, exactly as received, or
  system_user_token_env    the name of an environment variable holding the token
One of the two token columns per tenant. The format comes from FILE's ending (.csv, .jsonl,
.ndjson) or --format. A tenant listed twice, an unknown column, a missing value, a variable that
is not set, a file that is not UTF-8 or over 100,000 tenants is refused before anything is sent,
with the line number and never a token (exit 2).

Reports how many tenants got a ticket and, for each that did not, the error and what to check
(--json: one JSON object on stdout). A progress bar is shown on a terminal when tqdm is installed
(pip install 'sut-soap[cli]'). No token, ticket or JWT is ever printed.
Exit 0 only when every tenant got a ticket (and the store kept it); 5 otherwise."""


class StoreError(SutSoapError):
    """The tenant got a ticket, but the ``--store`` did not keep it; other processes will exchange again."""

    retryable = True
    default_hint = "the store of --store: that it is reachable, has memory left and lets this user write"


def _args_warm(warm: argparse.ArgumentParser) -> None:
    warm.add_argument("file", metavar="FILE", help="the tenants file, CSV or JSON lines; - reads it from stdin")
    warm.add_argument("--format", choices=("csv", "jsonl"), help="the file's format (default: from its ending)")
    _add_secret(warm)
    _add_key(warm)
    _add_target(warm)
    _add_jwt_keys(warm)
    _add_timeout(warm)
    _add_deadline(warm, "each tenant's ticket, retries and a JWKS fetch included,")
    warm.add_argument(
        "--workers", metavar="N", type=int, default=None,
        help="tenants in flight at once, 1 to 256 (default: the client's get_tickets default, 16)",
    )
    warm.add_argument(
        "--store", metavar="URL", default=_env_default("SUT_SOAP_STORE"),
        help="redis:// or rediss:// URL of the fleet's ticket store (needs sut-soap[redis]); without it "
        "nothing is shared [SUT_SOAP_STORE]",
    )
    warm.add_argument("--key-prefix", metavar="P", help="the store's key prefix, as the fleet's processes use it")
    warm.add_argument(
        "--json", action="store_true",
        help="print the report as one JSON object on stdout (per tenant: status, error type and message)",
    )
    warm.add_argument(
        "--progress", choices=_PROGRESS, default="auto",
        help="the progress bar on stderr: auto (on a terminal), always or never",
    )


class _Outcome:
    """What happened to one tenant: a ticket (from an exchange or the store) or an error."""

    __slots__ = ("error", "seconds", "source", "tenant")

    def __init__(
        self, tenant: TenantEntry, seconds: float, *, source: str | None = None, error: SutSoapError | None = None
    ) -> None:
        self.tenant = tenant
        self.seconds = seconds
        self.source = source
        self.error = error


class _WatchedStore:
    """The store, passed to the client as ``cache=``, noting which tenants' tickets it failed to keep.

    Everything else (the fleet lock included) is the store's own: attribute lookups go to it.
    """

    def __init__(self, inner: TicketCache) -> None:
        self.inner = inner
        self.unkept: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        """The store's ``get``."""
        return self.inner.get(key, *args, **kwargs)

    def set(self, key: str, entry: Any, ttl: float, *args: Any, **kwargs: Any) -> None:
        """The store's ``set``; a failure is noted for the tenant (the key ends with it), then raised."""
        try:
            self.inner.set(key, entry, ttl, *args, **kwargs)
        except Exception as exc:
            self.unkept[key.rpartition(":")[2]] = type(exc).__name__
            raise

    def delete(self, key: str, *args: Any, **kwargs: Any) -> None:
        """The store's ``delete``."""
        self.inner.delete(key, *args, **kwargs)


def _store_url(url: str, masker: _Masker) -> str:
    """``url`` checked; returns it as shown: without user or password."""
    from urllib.parse import urlsplit

    masker.add(url)
    try:
        parts = urlsplit(url)
        masker.add(parts.password)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in _STORE_SCHEMES or not parts.hostname:
        raise ConfigurationError(
            "--store must be a redis:// or rediss:// URL with a host (the value is not shown: it may hold a password)",
            hint="--store rediss://HOST:6380/0, with the password in the URL or SUT_SOAP_STORE",
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port else "") + (parts.path or "")
    if parts.scheme == "redis" and parts.hostname not in _LOOPBACK:
        import warnings

        warnings.warn(
            f"--store {shown} is not TLS: the tickets travel unencrypted; use rediss:// off this machine",
            stacklevel=2,
        )
    return shown


def _open_store(url: str, key_prefix: str | None) -> TicketCache:
    """``sut_soap.RedisTicketCache.from_url(url, key_prefix=...)``, or why it cannot be had."""
    import importlib

    try:
        importlib.import_module("redis")
    except ImportError:
        raise ConfigurationError(
            "--store needs redis-py, which is not installed", hint="pip install 'sut-soap[redis]'"
        ) from None
    import sut_soap

    try:
        store_class = getattr(sut_soap, _STORE_CLASS)
    except AttributeError:
        raise ConfigurationError(
            f"--store needs sut_soap.{_STORE_CLASS}, which this version of sut-soap does not have",
            hint="pip install --upgrade 'sut-soap[redis]'",
        ) from None
    try:
        options = {} if key_prefix is None else {"key_prefix": key_prefix}  # else the store's own default
        store: TicketCache = store_class.from_url(url, **options)
    except SutSoapError:
        raise
    except Exception as exc:  # its text could hold the URL, and with it the password
        raise ConfigurationError(
            f"--store cannot be used: {type(exc).__name__}", hint="the --store URL and --key-prefix"
        ) from None
    return store


def _probe(store: TicketCache, shown: str) -> None:
    """Read one key, so a store that does not answer fails the run before any exchange."""
    try:
        store.get(_PROBE_KEY)
    except Exception as exc:
        raise TransportError(
            f"the store {shown} does not answer ({type(exc).__name__})",
            hint="the --store URL, the network to it, its password and TLS",
        ) from None


def _read_file(args: argparse.Namespace) -> list[TenantEntry]:
    from .tenantfile import format_for, read_tenants

    name: str = args.file
    fmt = format_for(name, args.format)
    if name == "-":
        stream: IO[bytes] | IO[str] = getattr(args.stdin, "buffer", args.stdin)
        return read_tenants(stream, fmt, environ=os.environ)
    try:
        handle = open(name, "rb")  # noqa: SIM115 - closed below, after a read that may raise
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the tenants file {name!r}: {exc.strerror or type(exc).__name__}",
            hint="the path of FILE and its permissions",
        ) from None
    with handle:
        return read_tenants(handle, fmt, environ=os.environ)


def _workers(args: argparse.Namespace, tenants: int) -> int:
    from ..client import DEFAULT_MAX_WORKERS

    workers: int = DEFAULT_MAX_WORKERS if args.workers is None else args.workers
    if not 1 <= workers <= 256:
        raise ConfigurationError("--workers must be from 1 to 256", hint="--workers N, e.g. --workers 16")
    return min(workers, tenants)


def _cmd_warm(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import time

    from ..client import SystemUserClient

    secret = _require(args.client_secret, "--client-secret", "SUT_SOAP_CLIENT_SECRET", text=True)
    args.masker.add(secret)
    environment, endpoint = _required_target(args)
    timeout = _timeout(args)
    deadline = _deadline(args)
    shown_store = _store_url(args.store, args.masker) if args.store else None
    if args.key_prefix is not None and shown_store is None:
        raise ConfigurationError(
            "--key-prefix applies only with --store", hint="give --store URL, or drop --key-prefix"
        )
    tenants = _read_file(args)
    for tenant in tenants:
        args.masker.add(tenant.system_user_token)
    workers = _workers(args, len(tenants))
    key = _load_key(args)
    watched: _WatchedStore | None = None
    if shown_store is not None:
        store = _open_store(args.store, args.key_prefix)
        _probe(store, shown_store)
        watched = _WatchedStore(store)
    where = f"into the store {shown_store}" if shown_store else "checking only: no --store, nothing is shared"
    started = time.monotonic()
    with SystemUserClient(
        client_secret=secret, private_key=key, environment=environment, endpoint=endpoint,
        jwks_url=args.jwks_url, public_key=args.public_key, timeout=timeout, deadline=deadline,
        cache=watched,
    ) as client:
        print(f"sut-soap: warm: {len(tenants)} tenant(s) from {args.file}, {workers} at a time, {where}", file=err)
        outcomes, interrupted = _run(client, tenants, workers, watched, _bar(args.progress, err, len(tenants)))
    seconds = time.monotonic() - started
    report = _Report(
        tenants, outcomes, interrupted=interrupted, seconds=seconds, store=shown_store, endpoint=client.endpoint,
        secret=secret,
    )
    if args.json:
        import json

        print(json.dumps(report.as_json(), indent=2), file=out)
        print(f"sut-soap: warm: {report.headline()}", file=err)
    else:
        report.print_text(out)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.failed == 0 else EXIT_SOME_FAILED


# --------------------------------------------------------------------------------------------
# Running the tenants


def _bar(mode: str, err: TextIO, total: int) -> Any:
    """A tqdm bar on ``err``, or None: ``never``, ``auto`` off a terminal, or tqdm not installed."""
    if mode == "never" or (mode == "auto" and not err.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        if mode == "always":
            print("sut-soap: warm: no progress bar without tqdm (pip install 'sut-soap[cli]')", file=err)
        return None
    return tqdm(total=total, file=err, unit="tenant", desc="warm", dynamic_ncols=True, leave=True)


def _run(
    client: SystemUserClient, tenants: list[TenantEntry], workers: int, watched: _WatchedStore | None, bar: Any
) -> tuple[list[_Outcome | None], bool]:
    """Every tenant's outcome (None for those not tried), and whether Ctrl-C stopped the run."""
    import threading

    outcomes: list[_Outcome | None] = [None] * len(tenants)
    ok = failed = 0
    stop = threading.Event()
    # The default transport grows its pools to the workers, as get_tickets has it do.
    getattr(client.transport, "ensure_pool", lambda _size: None)(workers)
    try:
        for index, outcome in _results(client, tenants, workers, watched, stop):
            outcomes[index] = outcome
            if bar is not None:
                if outcome.error is None:
                    ok += 1
                else:
                    failed += 1
                bar.set_postfix(ok=ok, failed=failed, refresh=False)
                bar.update(1)
    except KeyboardInterrupt:
        stop.set()
        return outcomes, True
    finally:
        if bar is not None:
            bar.close()
    return outcomes, False


def _results(
    client: SystemUserClient,
    tenants: list[TenantEntry],
    workers: int,
    watched: _WatchedStore | None,
    stop: threading.Event,
) -> Iterator[tuple[int, _Outcome]]:
    """(index, outcome) as each tenant finishes, from ``workers`` daemon threads.

    Daemon threads, so that after Ctrl-C the process can end without waiting for the calls in
    flight (each ends by its deadline anyway); ``stop`` keeps them from starting more.
    """
    import queue
    import threading

    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(tenants)):
        todo.put(index)
    done: queue.SimpleQueue[tuple[int, _Outcome]] = queue.SimpleQueue()

    def work() -> None:
        while not stop.is_set():
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            done.put((index, _one(client, tenants[index], watched)))

    for number in range(workers):
        threading.Thread(target=work, name=f"sut-soap-warm-{number}", daemon=True).start()
    for _ in tenants:
        yield done.get()


def _one(client: SystemUserClient, tenant: TenantEntry, watched: _WatchedStore | None) -> _Outcome:
    import time

    started = time.monotonic()
    try:
        ticket = client.get_ticket(
            context_identifier=tenant.context_identifier, system_user_token=tenant.system_user_token
        )
    except SutSoapError as error:
        return _Outcome(tenant, time.monotonic() - started, error=error)
    except Exception as exc:  # a bug: keep the run going, name only the type (its text could hold a secret)
        return _Outcome(
            tenant, time.monotonic() - started,
            error=SutSoapError(f"unexpected {type(exc).__name__} while getting the ticket"),
        )
    seconds = time.monotonic() - started
    # A ticket read back from a shared store carries no JWT (sut_soap.cache): it was there already.
    source = "store" if ticket.token == "" else "exchange"
    unkept = watched.unkept.pop(tenant.context_identifier, None) if watched is not None else None
    if unkept is not None:
        return _Outcome(tenant, seconds, source=source, error=StoreError(
            f"got a ticket, but the store did not keep it ({unkept}): the fleet will exchange again"
        ))
    return _Outcome(tenant, seconds, source=source)


# --------------------------------------------------------------------------------------------
# The report


class _Report:
    """The outcomes, counted, as text or JSON; every error text masked with its tenant's token and the secret."""

    def __init__(
        self,
        tenants: list[TenantEntry],
        outcomes: list[_Outcome | None],
        *,
        interrupted: bool,
        seconds: float,
        store: str | None,
        endpoint: str,
        secret: str,
    ) -> None:
        self.tenants = tenants
        self.outcomes = outcomes
        self.interrupted = interrupted
        self.seconds = seconds
        self.store = store
        self.endpoint = endpoint
        self._secret = secret
        done = [outcome for outcome in outcomes if outcome is not None]
        self.failed = sum(1 for outcome in done if outcome.error is not None)
        self.ok = len(done) - self.failed
        self.not_tried = len(outcomes) - len(done)
        self.from_store = sum(1 for outcome in done if outcome.error is None and outcome.source == "store")

    def _masked(self, text: str, tenant: TenantEntry) -> str:
        for value in (tenant.system_user_token, self._secret):
            text = text.replace(value, "***")
        return text

    def headline(self) -> str:
        """One line: the counts, the time and what was shared."""
        counts = f"{self.ok} ok, {self.failed} failed"
        if self.interrupted:
            counts = f"interrupted: {counts}, {self.not_tried} not tried"
        line = f"{len(self.tenants)} tenant(s): {counts}, in {self.seconds:.2f} s"
        if self.store is None:
            return line + "; no --store: nothing was shared, each process still gets its own tickets"
        exchanged = self.ok - self.from_store
        return line + f"; store {self.store}: {exchanged} exchanged, {self.from_store} already there"

    def print_text(self, out: TextIO) -> None:
        """The headline, then each failure with its hint."""
        from ._common import _cli_hint

        print(f"warm: {self.headline()}", file=out)
        for outcome in self.outcomes:
            if outcome is None or outcome.error is None:
                continue
            tenant, error = outcome.tenant, outcome.error
            print(f"FAILED {tenant.context_identifier} (line {tenant.line}): {type(error).__name__}: "
                  f"{self._masked(error.message, tenant)}", file=out)
            hint = _cli_hint(error)
            if hint:
                print(f"  check: {self._masked(hint, tenant)}", file=out)

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``format`` 1); see the README for its fields."""
        from ._common import _cli_hint

        results: list[dict[str, Any]] = []
        for tenant, outcome in zip(self.tenants, self.outcomes, strict=True):
            result: dict[str, Any] = {"context_identifier": tenant.context_identifier, "line": tenant.line}
            if outcome is None:
                result.update(status="not_tried", source=None, error=None, seconds=None)
            else:
                error = None
                if outcome.error is not None:
                    error = {
                        "type": type(outcome.error).__name__,
                        "message": self._masked(outcome.error.message, tenant),
                        "hint": self._masked(_cli_hint(outcome.error), tenant),
                        "retryable": outcome.error.retryable,
                    }
                result.update(
                    status="failed" if error else "ok", source=outcome.source, error=error,
                    seconds=round(outcome.seconds, 3),
                )
            results.append(result)
        return {
            "format": _REPORT_FORMAT,
            "endpoint": self.endpoint,
            "store": self.store,
            "tenants": len(self.tenants),
            "ok": self.ok,
            "failed": self.failed,
            "not_tried": self.not_tried,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "results": results,
        }
