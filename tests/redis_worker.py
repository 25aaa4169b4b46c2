"""A worker process of the fleet tests: one SystemUserClient on a RedisTicketCache, driven over stdin.

Started by tests/test_redis_store.py with the Redis URL, the emulator's endpoint and the client
secret; answers one JSON line per command line:

- ``get CTX TOKEN`` -> ``{"ticket": ..., "ms": ...}`` or ``{"error": type, "retryable": bool}``
- ``warm {"CTX": "TOKEN", ...}`` -> ``{"tickets": {ctx: ticket}, "errors": n}``: get_tickets
- ``invalidate CTX TICKET`` -> ``{}``
- ``local CTX`` -> ``{"ticket": ...}``: what the local tier holds for CTX (null if nothing)

``ready`` is printed once the client is built. Options (argv 4 on): ``deadline=S``,
``margin=S`` (the lease margin, shortened so a test does not wait 5 s).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sut_soap import RedisTicketCache, SutSoapError, SystemUserClient, _options
from sut_soap.keys import load_private_key

KEY = load_private_key((Path(__file__).resolve().parents[1] / "fixtures" / "keys" / "test-partner.xml").read_bytes())


def main() -> None:
    url, endpoint, secret, *rest = sys.argv[1:]
    options = dict(item.split("=", 1) for item in rest)
    if "margin" in options:
        _options._LEASE_MARGIN = float(options["margin"])
    store = RedisTicketCache.from_url(url)
    client = SystemUserClient(
        client_secret=secret, private_key=KEY, endpoint=endpoint, cache=store,
        deadline=float(options.get("deadline", "10")),
    )
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
            results = client.get_tickets(json.loads(rest), max_workers=32)
            answer["tickets"] = {ctx: getattr(value, "ticket", None) for ctx, value in results.items()}
            answer["errors"] = sum(isinstance(value, SutSoapError) for value in results.values())
        elif command == "invalidate":
            client.invalidate(args[0], ticket=args[1])
        elif command == "local":
            entry = store._local.get(client._key_prefix + args[0])
            answer["ticket"] = None if entry is None else entry.ticket.ticket
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
