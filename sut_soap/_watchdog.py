"""Cuts a request that is still running at its deadline, by shutting its socket down.

A socket timeout bounds each read, not a whole answer: a server that sends one byte of its
response headers every second keeps ``http.client`` parsing them for as long as it likes, and
the caller's thread is blocked in that read where no check of its own can run. So
:class:`~sut_soap.HttpTransport` registers each request here (:meth:`Watchdog.watch`), with the
instant its deadline passes; its connection tells which socket it is using
(:meth:`Watchdog.attach`). One thread per process sleeps until the earliest such instant and
shuts down the socket of every request still running then, in both directions: the blocked
read returns at once, and the transport raises its deadline error.

Nothing is woken per request in steady traffic: the thread is notified only when a request's
deadline is earlier than the wake-up it already has. A request that ends in time costs two
short lock holds. In a forked child the thread does not exist: the first request there starts
a new one.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from typing import Protocol

from . import _fork

__all__ = ["WATCHDOG", "Watch", "Watchdog"]


class _Connection(Protocol):
    watch: Watch | None


class Watch:
    """One request being watched: the instant it must end, where it is, and whether it was cut.

    Attributes:
        ends: the ``time.monotonic()`` instant of the request's deadline.
        phase: ``"connect"``, ``"TLS"``, ``"send"``, ``"wait for headers"`` or ``"body"``,
            as the request's connection reports it.
        cut: True once the deadline passed while the request was running.
    """

    __slots__ = ("connection", "cut", "ends", "owned", "phase", "sock")

    def __init__(self, ends: float) -> None:
        self.ends = ends
        self.phase = "connect"
        self.cut = False
        self.connection: _Connection | None = None
        self.sock: socket.socket | None = None
        self.owned = False  # sock is a duplicate this watch made, closed when replaced or released


class Watchdog:
    """The process's watchdog thread and the requests it watches."""

    def __init__(self) -> None:
        self._reset_after_fork()
        _fork.register(self)

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's thread and requests are gone; start afresh.

        Called where the thread still runs (a test calling the fork hook directly), the old
        thread is woken if its lock is free and ends, seeing its condition replaced.
        """
        old = getattr(self, "_wakeup", None)
        if old is not None and old.acquire(blocking=False):
            old.notify()
            old.release()
        self._wakeup = threading.Condition(threading.Lock())
        self._active: set[Watch] = set()
        self._wakes_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, seconds: float) -> Watch:
        """Watch a request that must end within ``seconds``; call :meth:`release` when it ends."""
        watch = Watch(time.monotonic() + seconds)
        with self._wakeup:
            self._active.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sut-soap-watchdog", daemon=True)
                self._thread.start()
            elif watch.ends < self._wakes_at:
                self._wakeup.notify()
        return watch

    def attach(
        self, watch: Watch, connection: _Connection, sock: socket.socket | None, *, duplicate: bool = False
    ) -> None:
        """Note that ``watch``'s request now uses ``connection`` and its socket ``sock``.

        The connection is claimed: a late cut of an earlier request that used it (and gave it
        back to the pool) no longer touches it. With ``duplicate``, the watch keeps a duplicate
        of ``sock`` (shutting one down shuts the connection): for a socket the TLS handshake
        is about to take over, which leaves the original without a descriptor until the
        handshake ends. If the deadline already passed, the socket is shut down at once.
        """
        copy = sock.dup() if duplicate and sock is not None else None
        with self._wakeup:
            watch.connection = connection
            connection.watch = watch
            if sock is not None:
                self._drop_owned(watch)
                watch.sock, watch.owned = (sock, False) if copy is None else (copy, True)
            if watch.cut:
                _shut(watch.sock)

    def release(self, watch: Watch) -> None:
        """Stop watching ``watch``'s request: it ended (in time or not)."""
        with self._wakeup:
            self._active.discard(watch)
            watch.connection = None
            self._drop_owned(watch)
            watch.sock = None

    @staticmethod
    def _drop_owned(watch: Watch) -> None:
        if watch.owned and watch.sock is not None:
            watch.sock.close()
        watch.owned = False

    def __len__(self) -> int:
        """The number of requests being watched."""
        return len(self._active)

    def _run(self) -> None:
        wakeup = self._wakeup
        with wakeup:
            while self._wakeup is wakeup:
                now = time.monotonic()
                for watch in [w for w in self._active if w.ends <= now]:
                    self._active.discard(watch)
                    watch.cut = True
                    connection = watch.connection
                    if connection is not None and connection.watch is watch:
                        _shut(watch.sock)
                self._wakes_at = min((w.ends for w in self._active), default=math.inf)
                wakeup.wait(None if self._wakes_at == math.inf else self._wakes_at - now)


def _shut(sock: socket.socket | None) -> None:
    # The plain socket's shutdown, also for a TLS socket: ssl.SSLSocket.shutdown would unwrap
    # it under the reading thread's feet. Closing is left to the thread that reads.
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


#: The watchdog every :class:`~sut_soap.HttpTransport` of the process shares.
WATCHDOG = Watchdog()
