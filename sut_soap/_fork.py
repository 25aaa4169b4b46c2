"""Fork safety: objects holding locks, connection pools or in-flight state renew them in a forked child.

A client built before ``os.fork()`` (gunicorn ``--preload``, Celery prefork, ``multiprocessing``
with the fork start method) is copied into the child with its parent's pooled sockets and its
locks in whatever state other threads of the parent had them; those threads do not exist in
the child. Each such object registers here when it is built, by weak reference, and the
``os.register_at_fork`` hook below asks every live one to renew that state in the child before
``fork()`` returns there. Nothing runs on the hot path: a fork costs the child one pass over the
live objects.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

from .errors import ConfigurationError

__all__ = ["ForkAware", "not_picklable", "register", "reset_after_fork"]


class ForkAware(Protocol):
    """An object with state that must not cross a fork as it is."""

    def _reset_after_fork(self) -> None:
        """Renew locks, pools and in-flight state; keep what is still true in the child (cached data)."""
        ...


_live: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    """Have ``obj._reset_after_fork()`` run in every child forked while ``obj`` is alive."""
    _live.add(obj)


def reset_after_fork() -> None:
    """Renew the state of every live registered object: the at-fork hook in the child, callable directly."""
    for obj in list(_live):
        obj._reset_after_fork()


def not_picklable(what: str) -> ConfigurationError:
    """The error for pickling ``what`` (say, for multiprocessing's spawn start method): one per process."""
    return ConfigurationError(
        f"{what} cannot be pickled: build one client per process (multiprocessing's spawn and "
        "forkserver start methods, or workers that do not fork after it was built, need their own)",
        hint="create the client in the worker process (a Pool initializer, Celery's worker_process_init); "
             "a client built before os.fork() can be used in the child as it is",
    )


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only where there is no fork (Windows)
    os.register_at_fork(after_in_child=reset_after_fork)
