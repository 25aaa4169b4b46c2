"""A worker process of the fleet tests: one client on a Redis store, driven over stdin.

By default a SystemUserClient on a RedisTicketCache; with ``async=1`` an AsyncSystemUserClient
on an AsyncRedisTicketCache, the commands run on its event loop (stdin read in a thread, so the
store's listener task runs between commands).

Started by tests/test_redis_store.py with the Redis URL, the emulator's endpoint and the client
secret; answers one JSON line per command line:

- ``get CTX TOKEN`` -> ``{"ticket": ..., "ms": ...}`` or ``{"error": type, "retryable": bool}``
- ``warm {"CTX": "TOKEN", ...}`` -> ``{"tickets": {ctx: ticket}, "errors": n}``: get_tickets
- ``invalidate CTX TICKET`` -> ``{}``
- ``local CTX`` -> ``{"ticket": ...}``: what the local tier holds for CTX (null if nothing)

``ready`` is printed once the client is built. Options (argv 4 on): ``deadline=S``,
``margin=S`` (the lease margin, shortened so a test does not wait 5 s), ``async=1``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sut_soap import (
    AsyncRedisTicketCache,
    AsyncSystemUserClient,
    RedisTicketCache,
    SutSoapError,
    SystemUserClient,
    _options,
)
from sut_soap.keys import load_private_key

KEY = load_private_key((Path(__file__).resolve().parents[1] / "fixtures" / "keys" / "test-partner.xml").read_bytes())


def main() -> None:
    url, endpoint, secret, *rest = sys.argv[1:]
    options = dict(item.split("=", 1) for item in rest)
    if "margin" in options:
        _options._LEASE_MARGIN = float(options["margin"])
    deadline = float(options.get("deadline", "10"))
    if options.get("async") == "1":
        asyncio.run(serve_async(url, endpoint, secret, deadline))
        return
    store = RedisTicketCache.from_url(url)
    client = SystemUserClient(client_secret=secret, private_key=KEY, endpoint=endpoint, cache=store, deadline=deadline)
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        args = rest.split(" ")
        answer: dict[str, object] = {}
        if command == "get":
            try:
                answer["ticket"] = client.get_ticket(context_identifier=args[0], system_user_token=rest.partition(" ")[2]).ticket
            except SutSoapError as error:
                answer.update(error=type(error).__name__, retryable=error.retryable)
        elif command == "warm":
            answer.update(summary(client.get_tickets(json.loads(rest), max_workers=32)))
        elif command == "invalidate":
            client.invalidate(args[0], ticket=args[1])
        elif command == "local":
            answer["ticket"] = local(store, client._key_prefix + args[0])
        print(json.dumps(answer), flush=True)


async def serve_async(url: str, endpoint: str, secret: str, deadline: float) -> None:
    store = AsyncRedisTicketCache.from_url(url)
    client = AsyncSystemUserClient(client_secret=secret, private_key=KEY, endpoint=endpoint, cache=store, deadline=deadline)
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command, _, rest = line.strip().partition(" ")
        args = rest.split(" ")
        answer: dict[str, object] = {}
        if command == "get":
            try:
                ticket = await client.get_ticket(context_identifier=args[0], system_user_token=rest.partition(" ")[2])
                answer["ticket"] = ticket.ticket
            except SutSoapError as error:
                answer.update(error=type(error).__name__, retryable=error.retryable)
        elif command == "warm":
            answer.update(summary(await client.get_tickets(json.loads(rest), concurrency=32)))
        elif command == "invalidate":
            await client.invalidate(args[0], ticket=args[1])
        elif command == "local":
            answer["ticket"] = local(store, client._key_prefix + args[0])
        print(json.dumps(answer), flush=True)
    await client.aclose()
    await store.aclose()


def summary(results: dict[str, Any]) -> dict[str, object]:
    return {
        "tickets": {ctx: getattr(value, "ticket", None) for ctx, value in results.items()},
        "errors": sum(isinstance(value, SutSoapError) for value in results.values()),
    }


def local(store: Any, key: str) -> str | None:
    """What the store's local tier holds for ``key`` (its ticket string), or None."""
    entry = store.get_local(key)
    return None if entry is None else entry.ticket.ticket


if __name__ == "__main__":
    main()
