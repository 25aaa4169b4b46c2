"""Real redis-server processes for the tests: one node, a three-master cluster, TLS, on loopback; fleet workers.

Each server runs in its own temporary directory on a free loopback port with persistence off
(``--save ''``, no AOF) and is stopped at teardown. Without a ``redis-server`` binary the tests
that need one skip with :data:`MISSING`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
MISSING = "redis-server is not installed (apt-get install redis-server)"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now, below 55000 (a cluster node also takes port + 10000)."""
    while True:
        port = random.randrange(20000, 30000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class RedisServer:
    """One redis-server on 127.0.0.1; ``extra`` are more command-line options."""

    def __init__(self, directory: Path, *extra: str, port: int | None = None, tls: bool = False) -> None:
        assert REDIS_SERVER is not None, MISSING
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (rediss:// for TLS)."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it and wait until it answers PING (or, for TLS, accepts connections)."""
        port_options = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        self.process = subprocess.Popen(
            [REDIS_SERVER, *port_options, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--protected-mode", "no", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        ends = time.monotonic() + 10
        while time.monotonic() < ends:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                if self.tls or self.ping():
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start within 10 s")

    def ping(self) -> bool:
        """Whether it answers PING."""
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def client(self, **options: Any) -> Any:
        """An admin ``redis.Redis`` of this (non-TLS) server."""
        import redis

        return redis.Redis(port=self.port, socket_timeout=2, **options)

    def kill(self) -> None:
        """SIGKILL it (an outage) and wait until it is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            self.process = None


class RedisCluster:
    """Three masters with cluster mode on, slots spread by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [
            RedisServer(directory / f"node{i}", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000")
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        """A URL of one node: redis-py's RedisCluster learns the rest from it."""
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        """Start the nodes, create the cluster and wait until its state is ok."""
        assert REDIS_CLI is not None, MISSING
        for node in self.nodes:
            node.start()
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )
        ends = time.monotonic() + 20
        while time.monotonic() < ends:
            if all(n.client().cluster("info").get("cluster_state") == "ok" for n in self.nodes):
                return self
            time.sleep(0.05)
        raise RuntimeError("the Redis cluster did not become ok within 20 s")

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


class Worker:
    """tests/redis_worker.py in its own process: one client on one Redis store (``async=1``: the async pair)."""

    def __init__(self, url: str, endpoint: str, secret: str, *options: str) -> None:
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.process = subprocess.Popen(
            [sys.executable, str(root / "tests" / "redis_worker.py"), url, endpoint, secret, *options],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )

    def ready(self) -> Worker:
        """Wait until the worker built its client."""
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        return self

    def send(self, line: str) -> None:
        """Send one command line."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def answer(self) -> dict[str, Any]:
        """Read one answer line."""
        assert self.process.stdout is not None
        return json.loads(self.process.stdout.readline())  # type: ignore[no-any-return]

    def ask(self, line: str) -> dict[str, Any]:
        """Send a command and read its answer."""
        self.send(line)
        return self.answer()

    def close(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
