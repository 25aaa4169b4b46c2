"""``sut-soap replay DIR``: run a recorded exchange through the client offline."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from sut_soap import Clock
from sut_soap.cli._common import _cli_hint
from sut_soap.cli.exitcodes import EXIT_OK, EXIT_USAGE, exit_code_for
from sut_soap.client import SystemUserClient
from sut_soap.contract import CLAIM_PREFIX
from sut_soap.environments import endpoint_for
from sut_soap.errors import (
    SutSoapError,
    TokenValidationError,
)
from sut_soap.soap import parse_answer
from sut_soap.testing.exchanges import Exchange, Recording
from sut_soap.testing.minting import mint_test_jwt, stand_in_key
from sut_soap.testing.replay import STAND_IN_CLIENT_SECRET, STAND_IN_SYSTEM_USER_TOKEN, ReplayTransport
from sut_soap.testing.storage import load_recording
from sut_soap.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

_EXIT_HELP = """\
exit codes:
  0  the client would have returned a ticket (or the answer was a success and the JWT check was skipped)
  1  the service said no (IsSuccessful=false or a SOAP fault)
  2  usage or configuration (no such recording, unreadable files, bad public key)
  3  transport or protocol (recorded network failure, HTTP error, malformed or hostile answer)
  4  the JWT failed validation
"""


def _recorded_context(exchange: Exchange) -> str | None:
    value = exchange.request_text("ContextIdentifier")
    if value and "{{SUT_SOAP:" not in value:
        return value
    ctx = (exchange.jwt_claims or {}).get(CLAIM_PREFIX + "ctx")
    return ctx if isinstance(ctx, str) and ctx and "{{SUT_SOAP:" not in ctx else None


def _describe_answer(response: Any) -> str | None:
    try:
        answer = parse_answer(response)
    except SutSoapError:
        return None
    if answer.is_successful:
        return "IsSuccessful=true, with a Token"
    return f"IsSuccessful=false, ErrorMessage {answer.error_message!r}"


def _replay_exchange(exchange: Exchange, number: int, total: int, args: argparse.Namespace, out: TextIO) -> int:
    when = exchange.recorded_at.isoformat() if exchange.recorded_at else "at an unknown time"
    print(f"exchange {number} of {total}, {exchange.source}, {when}", file=out)
    if exchange.note:
        print(f"  note: {exchange.note}", file=out)
    if exchange.error is not None:
        print(f"  {exchange.method} {exchange.url} -> the transport failed: {exchange.error.type}", file=out)
    else:
        print(f"  {exchange.method} {exchange.url} -> HTTP {exchange.status} {exchange.reason}".rstrip(), file=out)

    key = stand_in_key()
    at = exchange.recorded_at or Clock().now()  # the client validates as at this time
    mode, jwt, public_key = _jwt_plan(exchange, args, key, at, out)
    context = args.context_identifier or _recorded_context(exchange) or "Cust12345"
    transport = ReplayTransport(
        Recording((exchange,), None, {}),
        jwt=jwt,
        jwt_key=key,
        check_request=False,
        clock=lambda: at,
        max_response_bytes=DEFAULT_MAX_RESPONSE_BYTES,
    )
    try:
        with SystemUserClient(
            client_secret=STAND_IN_CLIENT_SECRET,
            private_key=key,
            endpoint=endpoint_for("sod"),
            public_key=public_key,
            transport=transport,
            clock=lambda: at,
        ) as client:
            ticket = client.authenticate(context_identifier=context, system_user_token=STAND_IN_SYSTEM_USER_TOKEN)
    except SutSoapError as error:
        _print_answer(transport, out)
        if mode == "skip" and isinstance(error, TokenValidationError) and error.check in ("key", "signature"):
            print("  JWT: not validated: the recording holds the JWT but no --public-key was given", file=out)
            print("  result: the answer is a success; the JWT check was skipped", file=out)
            return EXIT_OK
        _print_jwt_mode(mode, at, out)
        print(f"  result: {type(error).__name__}: {error.message}", file=out)
        hint = _cli_hint(error)
        if hint:
            print(f"    check: {hint}", file=out)
        return exit_code_for(error)
    _print_answer(transport, out)
    _print_jwt_mode(mode, at, out)
    if mode == "skip":
        print("  result: the answer is a success; the JWT check was skipped", file=out)
        return EXIT_OK
    print(
        f"  result: SystemUserTicket ticket=7T:*** tenant={ticket.context_identifier} serial={ticket.serial} "
        f"webapi_url={ticket.webapi_url} expires_at={ticket.expires_at.isoformat()}",
        file=out,
    )
    return EXIT_OK


def _jwt_plan(
    exchange: Exchange, args: argparse.Namespace, key: RSAPrivateKey, at: datetime, out: TextIO
) -> tuple[str, str | None, Any]:
    """How the recorded JWT gets checked: (mode, the JWT to answer with, the key to validate with).

    ``claims``: redacted, its recorded claims are signed again with the stand-in key;
    ``skip``: no claims to sign, or no ``--public-key`` for a JWT kept in the recording;
    ``full``: the recording's own JWT, validated with ``--public-key``; ``none``: no JWT.
    """
    token = exchange.response_text("Token")
    redacted_jwt = b"{{SUT_SOAP:JWT}}" in (exchange.response_body or b"")
    public_key: Any = key.public_key()
    if redacted_jwt and exchange.jwt_claims is not None:
        if args.public_key:
            print("  note: --public-key is not used: the recording's JWT is redacted", file=out)
        return "claims", None, public_key
    if redacted_jwt:
        context = args.context_identifier or _recorded_context(exchange) or "Cust12345"
        return "skip", mint_test_jwt(key, context_identifier=context, now=at), public_key
    if token is not None:
        return ("full", None, args.public_key) if args.public_key else ("skip", None, public_key)
    return "none", None, public_key


def _print_answer(transport: ReplayTransport, out: TextIO) -> None:
    described = _describe_answer(transport.responses[-1]) if transport.responses else None
    if described is not None:
        print(f"  answer: {described}", file=out)


def _print_jwt_mode(mode: str, at: datetime, out: TextIO) -> None:
    if mode == "claims":
        print(
            "  JWT: redacted in the recording; its recorded header and claims were signed again with a "
            f"stand-in key (kid and signature not checked) and validated as at {at.isoformat()}",
            file=out,
        )
    elif mode == "full":
        print(f"  JWT: validated with --public-key as at {at.isoformat()}", file=out)
    elif mode == "skip":
        print("  JWT: not validated: the recording's JWT is redacted and its claims were not recorded", file=out)


def replay_main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """``sut-soap replay DIR [--public-key FILE]``: what the client would have done, offline."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = argparse.ArgumentParser(
        prog="sut-soap replay",
        description="Run a recorded exchange through the client's parsing and validation offline and print "
        "what the client would have returned or raised. Nothing is sent anywhere.",
        epilog=_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", metavar="DIR", help="a recording directory (NN-exchange.json files)")
    parser.add_argument(
        "--public-key", metavar="FILE",
        help="PEM key, certificate or JWKS that signed the JWT, for a recording that holds the JWT itself",
    )
    parser.add_argument(
        "--context-identifier", metavar="C",
        help="the tenant the client asked for, when the recording has it redacted (default: as recorded)",
    )
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code in (0, None) else EXIT_USAGE
    try:
        recording = load_recording(args.directory)
        code = EXIT_OK
        total = len(recording.exchanges)
        print(f"replaying {args.directory}: {total} exchange(s), offline", file=out)
        for number, exchange in enumerate(recording.exchanges, start=1):
            code = _replay_exchange(exchange, number, total, args, out)
    except SutSoapError as error:
        print(f"sut-soap replay: {error.message}", file=err)
        hint = _cli_hint(error)
        if hint:
            print(f"  check: {hint}", file=err)
        return exit_code_for(error)
    return code


