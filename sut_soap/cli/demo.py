"""``sut-soap demo``: one real exchange against the bundled emulator, step by step.

Everything is throwaway and local: a partner key generated for the run (in the .NET XML
form partners receive), a client secret and a tenant registered with an emulator listening
on loopback. The client under demonstration is the same ``SystemUserClient`` that talks to
SuperOffice; only the endpoint differs.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cryptography.hazmat.primitives.asymmetric import rsa

from ..client import SystemUserClient
from ..keys import private_key_to_rsa_xml, public_key_fingerprint
from ..signing import timestamp
from ..testing.emulator import Emulator

if TYPE_CHECKING:
    from ..ticket import SystemUserTicket

__all__ = ["run"]

CONTEXT_IDENTIFIER = "Cust12345"
SERIAL = "1234567"

SUPEROFFICE_EXAMPLE = """\
The same exchange against SuperOffice (development environment shown):

  from sut_soap import SystemUserClient
  client = SystemUserClient(client_secret=os.environ["SUT_SOAP_CLIENT_SECRET"],
                            private_key="partner-key.xml", environment="sod")
  ticket = client.get_ticket(context_identifier="Cust12345",
                             system_user_token=os.environ["SUT_SOAP_SYSTEM_USER_TOKEN"])

  # or from the shell, secrets from the environment:
  sut-soap ticket --environment sod --context-identifier Cust12345 --private-key partner-key.xml
"""


def _mask(value: str, keep: int = 4) -> str:
    return value[:keep] + "…" if len(value) > keep else "…"


def run(out: TextIO) -> int:
    """Run the demo, writing what happens to ``out``; return the exit code."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    started = time.perf_counter()
    say("sut-soap demo: a real SOAP exchange against the bundled emulator over HTTP on loopback")
    say()

    partner_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_secret = secrets.token_hex(16)
    system_user_token = f"Demo Sync-{secrets.token_urlsafe(8)}"

    with tempfile.TemporaryDirectory(prefix="sut-soap-demo-") as folder, Emulator(
        client_secret=client_secret, partner_public_key=partner_key.public_key()
    ) as emulator:
        key_file = Path(folder) / "partner-key.xml"
        key_file.write_text(private_key_to_rsa_xml(partner_key), encoding="utf-8")
        key_file.chmod(0o600)
        say(f"1. Emulator    SOAP endpoint {emulator.endpoint}")
        say(f"               JWKS          {emulator.jwks_url}")
        say("2. Partner key throwaway RSA-2048 in .NET <RSAKeyValue> XML, as the developer portal hands it out")
        say(f"               {public_key_fingerprint(partner_key)}")
        tenant = emulator.add_tenant(CONTEXT_IDENTIFIER, system_user_token=system_user_token, serial=SERIAL)
        say(f"3. Tenant      {CONTEXT_IDENTIFIER} registered (serial {SERIAL}); "
            f"system user token {_mask(system_user_token, 5)} (masked)")

        now = datetime.now(timezone.utc)
        say(f"4. Signing     <system user token>.{timestamp(now)}.<RSA-SHA256 signature>  (UTC minute)")

        with SystemUserClient(
            client_secret=client_secret, private_key=key_file, endpoint=emulator.endpoint
        ) as client:
            exchange_started = time.perf_counter()
            ticket = client.get_ticket(
                context_identifier=tenant.context_identifier, system_user_token=system_user_token
            )
            elapsed = (time.perf_counter() - exchange_started) * 1000
            exchanges = emulator.exchange_count
            cached_started = time.perf_counter()
            again = client.get_ticket(
                context_identifier=tenant.context_identifier, system_user_token=system_user_token
            )
            cached_us = (time.perf_counter() - cached_started) * 1e6
            cache_hit = again is ticket and emulator.exchange_count == exchanges
            renew_after = client.ticket_lifetime - client.refresh_ahead
        _say_outcome(say, ticket, elapsed, cached_us, cache_hit=cache_hit, renew_after=renew_after)
    say()
    say(SUPEROFFICE_EXAMPLE)
    say(f"Done in {time.perf_counter() - started:.2f} s.")
    return 0


def _say_outcome(
    say: Callable[[str], None],
    ticket: SystemUserTicket,
    elapsed: float,
    cached_us: float,
    *,
    cache_hit: bool,
    renew_after: float,
) -> None:
    """Steps 5 to 9: the exchange, the validated JWT, the tenant, the ticket and the cache."""
    say(f"5. Exchange    Authenticate over SOAP 1.1: IsSuccessful=true in {elapsed:.1f} ms "
        "(sign + POST + parse + JWKS fetch + validate)")
    say(f"6. JWT         RS256 signature, issuer SuperOffice AS, audience spn:{ticket.serial}, "
        f"tenant {ticket.context_identifier}: valid")
    say(f"               expires {ticket.expires_at.isoformat()} (the JWT; the ticket slides for 6 hours)")
    say(f"7. Tenant      serial {ticket.serial}")
    say(f"               web API   {ticket.webapi_url}")
    say(f"               NetServer {ticket.netserver_url}")
    say(f"8. Ticket      {ticket.ticket}")
    say("               REST calls send: Authorization: SOTicket <ticket>, SO-AppToken: <client secret>")
    outcome = "the same ticket, no exchange" if cache_hit else "a new exchange"
    say(f"9. Cache       get_ticket again: {outcome}, in {cached_us:.0f} µs "
        f"(renewed after {renew_after / 3600:.1f} h; SuperOffice keeps it 6 h after last use)")
