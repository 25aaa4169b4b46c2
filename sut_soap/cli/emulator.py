"""``sut-soap emulator``: serve a local emulator with throwaway credentials until Ctrl-C."""


from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sut_soap.cli._common import _cli_hint
from sut_soap.cli.exitcodes import EXIT_OK, EXIT_USAGE
from sut_soap.errors import ConfigurationError
from sut_soap.testing.emulator import Emulator, Tenant


def _write_private_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        os.chmod(path, 0o600)  # the file may have existed with wider permissions
        handle.write(pem)


def _shown(error: Exception) -> str:
    """An error in one line, its hint naming this command's flags."""
    if isinstance(error, ConfigurationError):
        hint = _cli_hint(error)
        return f"{error.message} (check: {hint})" if hint else error.message
    return str(error)


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C (so the temporary key is removed), when running in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    def interrupt(_signum: int, _frame: object) -> None:
        # Not event.set(): the handler runs in the main thread, which may hold the event's
        # lock inside event.wait(), and would then wait on itself forever.
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sut-soap emulator",
        description="Serve a local PartnerSystemUserService emulator with throwaway credentials.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only unless --allow-remote)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind, 0 for any free port (default 8080)")
    parser.add_argument(
        "--tenant",
        action="append",
        metavar="CTX",
        help="ContextIdentifier of a tenant to register (repeatable; default Cust12345)",
    )
    parser.add_argument("--key-out", type=Path, metavar="FILE", help="write the partner private key here (mode 0600)")
    parser.add_argument("--timestamp-tolerance", type=float, default=900.0, metavar="SECONDS", help="default 900")
    parser.add_argument("--token-lifetime", type=float, default=300.0, metavar="SECONDS", help="default 300")
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    return parser


def main(
    argv: list[str] | None = None,
    *,
    stop: threading.Event | None = None,
    stdout: TextIO | None = None,
) -> int:
    """``sut-soap emulator``: serve with throwaway credentials until Ctrl-C (or until ``stop`` is set).

    Returns the exit code: 0 after a clean stop, 2 when the arguments, the address or the key
    file are unusable (the reason goes to stderr).
    """
    args = _parser().parse_args(argv)
    out = stdout or sys.stdout
    partner_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_secret = secrets.token_urlsafe(24)
    temp_dir = None if args.key_out is not None else Path(tempfile.mkdtemp(prefix="sut-soap-emulator-"))
    key_path: Path = args.key_out if temp_dir is None else temp_dir / "partner-key.pem"
    try:
        try:
            emulator = Emulator(
                client_secret,
                partner_key,
                host=args.host,
                port=args.port,
                timestamp_tolerance=args.timestamp_tolerance,
                token_lifetime=args.token_lifetime,
                allow_remote=args.allow_remote,
            )
            _write_private_key(key_path, partner_key)
            emulator.start()
        except (ConfigurationError, OSError) as exc:
            print(f"sut-soap emulator: {_shown(exc)}", file=sys.stderr)
            return EXIT_USAGE
        try:
            tenants = _register_tenants(emulator, args.tenant or ["Cust12345"])
            lines = _banner(emulator, client_secret, key_path, temporary=temp_dir is not None, tenants=tenants)
            print("\n".join(lines), file=out, flush=True)
            _serve_until_stopped(stop or threading.Event())
        except ConfigurationError as exc:
            print(f"sut-soap emulator: {_shown(exc)}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            pass
        finally:
            emulator.stop()
        print("sut-soap emulator: stopped", file=out, flush=True)
        return EXIT_OK
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _register_tenants(emulator: Emulator, contexts: list[str]) -> list[Tenant]:
    """Register each tenant with a fresh throwaway system user token."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    tenants = []
    for ctx in contexts:
        token = "Emulator Sync-" + "".join(secrets.choice(alphabet) for _ in range(10))
        tenants.append(emulator.add_tenant(ctx, system_user_token=token))
    return tenants


def _banner(
    emulator: Emulator, client_secret: str, key_path: Path, *, temporary: bool, tenants: list[Tenant]
) -> list[str]:
    """What the user needs to point a client at the emulator (throwaway values, so they are shown)."""
    lines = [
        "sut-soap emulator: a local PartnerSystemUserService with THROWAWAY credentials",
        f"  endpoint:        {emulator.endpoint}",
        f"  JWKS:            {emulator.jwks_url}",
        f"  openid config:   {emulator.openid_configuration_url}",
        f"  client secret:   {client_secret}",
        f"  partner key:     {key_path}" + (" (deleted on exit)" if temporary else ""),
    ]
    for tenant in tenants:
        lines += [
            f"  tenant:          {tenant.context_identifier} (serial {tenant.serial})",
            f"    system user token: {tenant.system_user_token}",
        ]
    first = tenants[0]
    return [
        *lines,
        "Try it from another shell (these credentials are throwaway, so they may be shown):",
        f"  SUT_SOAP_CLIENT_SECRET={shlex.quote(client_secret)} sut-soap ticket --endpoint {emulator.endpoint} "
        f"--context-identifier {shlex.quote(first.context_identifier)} "
        f"--system-user-token {shlex.quote(first.system_user_token)} "
        f"--private-key {shlex.quote(str(key_path))}",
        "Press Ctrl-C to stop.",
    ]


def _serve_until_stopped(stop: threading.Event) -> None:
    """Wait until ``stop`` is set, Ctrl-C or SIGTERM (KeyboardInterrupt for the last two)."""
    with _stop_on_sigterm():
        while not stop.wait(0.2):
            pass


if __name__ == "__main__":
    raise SystemExit(main())
