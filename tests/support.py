"""Test helpers and data shared by several test files: known-answer signatures, envelope patterns,
a frozen wall clock, a loopback TLS server, the per-test emulator reset and a client factory."""

from __future__ import annotations

import datetime as dt
import io
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sut_soap.cli import main as cli_main
from sut_soap.cli.replay import replay_main
from sut_soap.client import SystemUserClient
from sut_soap.retry import RetryPolicy
from sut_soap.testing.emulator import Emulator

PATH = "/Login/Services/PartnerSystemUserService.svc"


def run_cli(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    """``sut-soap ARGV`` in process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin) if stdin is not None else None)
    return code, out.getvalue(), err.getvalue()


def run_replay(*argv: str) -> tuple[int, str, str]:
    """``sut-soap replay ARGV`` in process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = replay_main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def reset_emulator(emulator: Emulator) -> Iterator[Emulator]:
    """Body of a per-test fixture over a module's emulator: no faults before or after, no internal error."""
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()
    assert emulator.internal_errors == []


class ClientFactory:
    """Makes SystemUserClients from shared options (a call's own win) and closes every one at teardown."""

    def __init__(self, **defaults: Any) -> None:
        self.defaults = defaults
        self.made: list[SystemUserClient] = []

    def __call__(self, *endpoint: str | None, **options: Any) -> SystemUserClient:
        if endpoint:  # a positional endpoint, None included (no endpoint), replaces the default
            (options["endpoint"],) = endpoint
        client = SystemUserClient(**{**self.defaults, **options})
        self.made.append(client)
        return client

    def close(self) -> None:
        for client in self.made:
            client.close()

# The signed token and its UTC minute inside a request envelope the client built.
SIGNED_TOKEN = re.compile(rb"<tns:SignedSystemToken>([^<]*)</tns:SignedSystemToken>")
SIGNED_MINUTE = re.compile(rb"<tns:SignedSystemToken>[^<]*\.(\d{12})\.[^<]*</tns:SignedSystemToken>")

# Made with OpenSSL, independently of this library:
#   printf '%s' 'Acme Sync-8k8Q7DmBgo.202611281330' | openssl dgst -sha256 -sign test-partner-pkcs8.pem | base64 -w0
KAT_ASCII = (
    "Acme Sync-8k8Q7DmBgo.202611281330."
    "E1jErSl6K9kyOKOPTSdfOARTjj98MsmyDzUBRZozhU+zEECCgewkzz9/8Di7GWYqEs0cbmNyf/siLfimp+/ANltX8KQ2fi8229Cr3P1Q"
    "ewA5f0xjf+C4SzXQTpEFhiUHKXCgX+cxpPxU/QX8uAb4GTqaTuxbEFAi7B0sPSwH9QwGjFg3cA/7moSKL3Tjmwa8GC3nO4kLRVF+An5G"
    "ZTTuRumipGRNLkrPE98UO61bmavRZhxFTYVLgzSmhAP1/4uB3C3g3NYLMBhdD10OZBL5WhrW/oGQ3uMLU98pNUZ0ezHOJQt3op81WL2S"
    "YF7UwxTvzRnsrESARcCJHA8iaf/PHA=="
)
# The same for a non-ASCII token (UTF-8 bytes signed) at 2026-01-01 13:05 UTC.
KAT_UTF8 = (
    "Sørlandet Å Sync-Ωmega.202601011305."
    "egqsWs8CtYGFDXRJ7GgIdxiJ3Yy6nUIJn4h4Lyj0hkIyhUMISLfhSoN8f+FnDHBbVMU6fbuHiEkt34fQ/9DLAvYX0yxv2BiAAkiRVdyf"
    "IPLsyhkb6inJpFrcx75OsCodgeA4DUXIGXPWuhETXtaUudGu5K/nICwDAmTqOnwxEw6Ev4kjIYuvNpdlBK5Rd8Nn5QFltF7kWOuDxp5t"
    "AH3YRd434nF1GkxPea5SEdJZVLo0ddUhTpwPjG4/0FgijMADC6DbJ0WuhGPq3O+wDu6kyNfWHcBZLjpP0BwHuZtGamBj/GpJHZITS3vm"
    "mjCUq432z8tz6NAYR9yPqYgUB0FCAg=="
)


class Sleeper:
    """An injected sleep: records each wait and moves a fake monotonic clock instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def policy(self, **kwargs: Any) -> RetryPolicy:
        """A policy that never really sleeps; random() is 1.0 so each wait is its ceiling."""
        options: dict[str, Any] = {"sleep": self, "random": lambda: 1.0, "monotonic": lambda: self.now}
        return RetryPolicy(**{**options, **kwargs})


class FrozenClock:
    """A wall clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_cert(tmp: Path, name: str, *, san: x509.GeneralName, expired: bool = False) -> tuple[Path, Path]:
    """A self-signed EC certificate and key written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else (
        now - dt.timedelta(minutes=5), now + dt.timedelta(days=1)
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sut-soap test {name}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class TlsServer:
    """A loopback TLS server: counts handshakes and any application bytes received, answers HTTP 503."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}{PATH}"
        self.connections = 0
        self.handshakes = 0
        self.received = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            raw.settimeout(2)
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    self.handshakes += 1
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(body) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        body += chunk
                    self.received += data[: len(head) + 4] + body
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except (OSError, ssl.SSLError):
                raw.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()
