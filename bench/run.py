"""sut-soap benchmarks (``make bench``): plain output, figures for the issue notes.

Measured on loopback against the bundled emulator:
1. one exchange, emulator in another process: client wall time and client CPU per exchange;
2. the cost split of one exchange inside the client: signing, envelope, answer parsing, JWT validation;
3. exchanges per second the emulator sustains with the client in the same process;
4. start-up: ``import sut_soap`` and ``sut-soap --help`` against a bare interpreter.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sut_soap import SystemUserClient
from sut_soap._soap import parse_answer
from sut_soap.emulator import Emulator
from sut_soap.signing import sign_system_user_token

SECRET = "bench-secret"
CTX = "Cust12345"
TOKEN = "Bench Sync-abc"
EXCHANGES = int(os.environ.get("BENCH_EXCHANGES", "300"))

EMULATOR_PROCESS = """
import sys, threading
from sut_soap.emulator import Emulator
key = open(sys.argv[1], "rb").read()
with Emulator(client_secret=%r, partner_public_key=key) as emu:
    emu.add_tenant(%r, system_user_token=%r, serial="1234567")
    print(emu.endpoint, flush=True)
    threading.Event().wait()
"""


@dataclass
class Timing:
    wall_ms: list[float]
    cpu_ms: list[float]

    def line(self, label: str) -> str:
        w = sorted(self.wall_ms)
        c = self.cpu_ms
        return (
            f"{label:<44} wall median {statistics.median(w):7.3f} ms  p95 {w[int(len(w) * 0.95) - 1]:7.3f} ms"
            f"  | client CPU median {statistics.median(c):7.3f} ms"
        )


def measure(fn: Callable[[], object], n: int) -> Timing:
    wall, cpu = [], []
    for _ in range(n):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append((time.thread_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return Timing(wall, cpu)


def exchange_out_of_process(key: rsa.RSAPrivateKey) -> None:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = Path(tempfile.mkdtemp(prefix="sut-soap-bench-")) / "partner.pub.pem"
    key_file.write_bytes(pem)
    proc = subprocess.Popen(
        [sys.executable, "-c", EMULATOR_PROCESS % (SECRET, CTX, TOKEN), str(key_file)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        endpoint = proc.stdout.readline().decode().strip()
        with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=endpoint) as client:
            client.authenticate(context_identifier=CTX, system_user_token=TOKEN)  # JWKS fetch, warm pool
            timing = measure(lambda: client.authenticate(context_identifier=CTX, system_user_token=TOKEN), EXCHANGES)
        print(timing.line(f"1. authenticate(), emulator in another process ({EXCHANGES}x)"))
    finally:
        proc.kill()
        proc.wait()


def cost_split(key: rsa.RSAPrivateKey) -> None:
    with Emulator(client_secret=SECRET, partner_public_key=key) as emu:
        emu.add_tenant(CTX, system_user_token=TOKEN, serial="1234567")
        with SystemUserClient(client_secret=SECRET, private_key=key, endpoint=emu.endpoint) as client:
            client.authenticate(context_identifier=CTX, system_user_token=TOKEN)
            signed = sign_system_user_token(TOKEN, key)
            body, headers = client._soap.build(signed_token=signed, client_secret=SECRET, context_identifier=CTX)
            response = client._soap.send(body, headers)
            answer = parse_answer(response)
            assert answer.token is not None
            token = answer.token
            n = 1000
            print("2. cost split inside the client (CPU, same process, medians):")
            parts = {
                "signing (RSA-2048 PKCS#1 v1.5)": lambda: sign_system_user_token(TOKEN, key),
                "envelope building (zeep + plugin)": lambda: client._soap.build(
                    signed_token=signed, client_secret=SECRET, context_identifier=CTX
                ),
                "HTTP POST + read (loopback, emulator in-process)": lambda: client._soap.send(body, headers),
                "answer parsing (hardened lxml)": lambda: parse_answer(response),
                "JWT validation (RS256 + claims)": lambda: client._validator.validate(token, context_identifier=CTX),
            }
            for label, fn in parts.items():
                t = measure(fn, 200 if "HTTP" in label else n)
                print(f"   {label:<50} {statistics.median(t.wall_ms):8.3f} ms wall  "
                      f"{statistics.median(t.cpu_ms):8.3f} ms CPU")


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
                print(f"3. emulator + client in one process, {workers} thread(s): "
                      f"{rate:7.1f} exchanges/s ({n} exchanges)")


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
    print(f"4. start-up (median of 15): bare python {bare:.1f} ms | import sut_soap {imp:.1f} ms | "
          f"import sut_soap.client (zeep) {full:.1f} ms | python -m sut_soap --help {helps:.1f} ms | "
          f"sut-soap --help {helps_script:.1f} ms")


def main() -> int:
    print(f"sut-soap benchmarks on {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    exchange_out_of_process(key)
    cost_split(key)
    emulator_throughput(key)
    startup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
