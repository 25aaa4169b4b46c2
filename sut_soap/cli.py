"""The ``sut-soap`` command line: the only reader of argv and environment variables.

Heavy modules (zeep, cryptography) are imported inside the commands, so ``--help`` starts
about as fast as the interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from .errors import (
    AuthenticationRejectedError,
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    TokenValidationError,
    TransportError,
)

if TYPE_CHECKING:
    from .ticket import SystemUserTicket

__all__ = ["main"]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_TRANSPORT = 3
EXIT_TOKEN = 4

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  the service said no (IsSuccessful=false or a SOAP fault)
  2  usage or configuration (bad flags, unreadable or wrong key, bad endpoint)
  3  transport or protocol (network, timeout, HTTP error, malformed or hostile answer)
  4  the returned JWT failed validation
"""

ENV_HELP = """\
secrets need not appear in shell history: every option that takes a secret or a tenant
also reads an environment variable: SUT_SOAP_CLIENT_SECRET, SUT_SOAP_PRIVATE_KEY,
SUT_SOAP_SYSTEM_USER_TOKEN, SUT_SOAP_CONTEXT_IDENTIFIER, SUT_SOAP_ENVIRONMENT,
SUT_SOAP_ENDPOINT.
"""


def _exit_code(error: SutSoapError) -> int:
    if isinstance(error, (AuthenticationRejectedError, SoapFaultError)):
        return EXIT_REJECTED
    if isinstance(error, ConfigurationError):
        return EXIT_USAGE
    if isinstance(error, (TransportError, ProtocolError)):
        return EXIT_TRANSPORT
    if isinstance(error, TokenValidationError):
        return EXIT_TOKEN
    return EXIT_TRANSPORT


def _env_default(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _require(value: str | None, flag: str, env: str) -> str:
    if not value:
        raise ConfigurationError(f"{flag} is required (or set {env})")
    return value


def _password(args: argparse.Namespace) -> str | None:
    var = getattr(args, "password_env", None)
    if not var:
        return None
    value = os.environ.get(var)
    if value is None:
        raise ConfigurationError(f"--password-env names {var}, which is not set")
    return value


def _add_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--private-key", metavar="FILE", default=_env_default("SUT_SOAP_PRIVATE_KEY"),
        help="partner RSA private key: .NET <RSAKeyValue> XML, PEM or DER [SUT_SOAP_PRIVATE_KEY]",
    )
    parser.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding the key's password, if encrypted"
    )


def _add_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--system-user-token", metavar="T", default=_env_default("SUT_SOAP_SYSTEM_USER_TOKEN"),
        help="the tenant's system user token, exactly as received [SUT_SOAP_SYSTEM_USER_TOKEN]",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sut-soap",
        description="Get SuperOffice CRM Online system user tickets over the PartnerSystemUserService SOAP endpoint.",
        epilog=EXIT_CODES_HELP + "\n" + ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks (never secrets)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    sign = commands.add_parser(
        "sign", help="print the signed system user token",
        description="Sign a system user token; prints <token>.<yyyyMMddHHmm>.<signature> alone on stdout.",
        epilog=EXIT_CODES_HELP + "\n" + ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_token(sign)
    _add_key(sign)
    sign.add_argument("--timestamp", metavar="YYYYMMDDHHMM", help="sign for this UTC minute (reproducible output)")
    sign.set_defaults(handler=_cmd_sign)

    ticket = commands.add_parser(
        "ticket", help="exchange a system user token for a validated ticket",
        description="Perform the exchange. Prints the ticket alone on stdout and a summary on stderr.",
        epilog=EXIT_CODES_HELP + "\n" + ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ticket.add_argument(
        "--context-identifier", metavar="C", default=_env_default("SUT_SOAP_CONTEXT_IDENTIFIER"),
        help="the tenant, e.g. Cust12345 [SUT_SOAP_CONTEXT_IDENTIFIER]",
    )
    _add_token(ticket)
    _add_key(ticket)
    ticket.add_argument(
        "--client-secret", metavar="S", default=_env_default("SUT_SOAP_CLIENT_SECRET"),
        help="the application's client secret (ApplicationToken) [SUT_SOAP_CLIENT_SECRET]",
    )
    target = ticket.add_mutually_exclusive_group()
    target.add_argument(
        "--environment", metavar="ENV", default=None,
        help="sod, qaonline (alias stage) or online [SUT_SOAP_ENVIRONMENT]",
    )
    target.add_argument("--endpoint", metavar="URL", default=None, help="explicit service URL [SUT_SOAP_ENDPOINT]")
    keys = ticket.add_mutually_exclusive_group()
    keys.add_argument("--jwks-url", metavar="URL", help="JWKS that signs the JWT (default: the environment's)")
    keys.add_argument("--public-key", metavar="FILE", help="PEM key, certificate or JWKS file for offline checks")
    ticket.add_argument("--timeout", metavar="SECONDS", type=float, default=10.0, help="read timeout (default 10)")
    ticket.add_argument("--json", action="store_true", help="print one JSON object instead of the bare ticket")
    ticket.add_argument("-v", "--verbose", action="store_true", help="show each step on stderr (secrets masked)")
    ticket.set_defaults(handler=_cmd_ticket)

    emulator = commands.add_parser(
        "emulator", help="run the local PartnerSystemUserService emulator", add_help=False,
    )
    emulator.set_defaults(handler=_cmd_emulator)

    demo = commands.add_parser("demo", help="a full exchange against the bundled emulator, step by step")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _cmd_sign(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from datetime import datetime, timezone

    from .signing import sign_system_user_token

    token = _require(args.system_user_token, "--system-user-token", "SUT_SOAP_SYSTEM_USER_TOKEN")
    key = _require(args.private_key, "--private-key", "SUT_SOAP_PRIVATE_KEY")
    at = None
    if args.timestamp is not None:
        stamp = args.timestamp
        if len(stamp) != 12 or not stamp.isdigit():
            raise ConfigurationError("--timestamp must be 12 digits: yyyyMMddHHmm (UTC)")
        try:
            at = datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=timezone.utc)
        except ValueError:
            raise ConfigurationError("--timestamp is not a valid UTC minute (yyyyMMddHHmm)") from None
    print(sign_system_user_token(token, key, at=at, password=_password(args)), file=out)
    return EXIT_OK


def _ticket_json(ticket: SystemUserTicket) -> dict[str, Any]:
    return {
        "ticket": ticket.ticket,
        "context_identifier": ticket.context_identifier,
        "serial": ticket.serial,
        "webapi_url": ticket.webapi_url,
        "netserver_url": ticket.netserver_url,
        "expires_at": ticket.expires_at.isoformat(),
        "claims": {k: v for k, v in ticket.claims.items()},
    }


def _cmd_ticket(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .client import SystemUserClient

    context = _require(args.context_identifier, "--context-identifier", "SUT_SOAP_CONTEXT_IDENTIFIER")
    token = _require(args.system_user_token, "--system-user-token", "SUT_SOAP_SYSTEM_USER_TOKEN")
    key = _require(args.private_key, "--private-key", "SUT_SOAP_PRIVATE_KEY")
    secret = _require(args.client_secret, "--client-secret", "SUT_SOAP_CLIENT_SECRET")
    environment = args.environment
    endpoint = args.endpoint
    if environment is None and endpoint is None:
        environment = _env_default("SUT_SOAP_ENVIRONMENT")
        endpoint = None if environment else _env_default("SUT_SOAP_ENDPOINT")
    if environment is None and endpoint is None:
        raise ConfigurationError("--environment or --endpoint is required (or set SUT_SOAP_ENVIRONMENT)")
    if not 0 < args.timeout < 3600:
        raise ConfigurationError("--timeout must be between 0 and 3600 seconds")

    def step(text: str) -> None:
        if args.verbose:
            print(f"* {text}", file=err)

    with SystemUserClient(
        client_secret=secret,
        private_key=key,
        password=_password(args),
        environment=environment,
        endpoint=endpoint,
        jwks_url=args.jwks_url,
        public_key=args.public_key,
        timeout=(min(5.0, args.timeout), args.timeout),
    ) as client:
        step(f"endpoint {client.endpoint}")
        step(f"JWT keys from {client.jwks_url or args.public_key}")
        step(f"exchanging for tenant {context}")
        ticket = client.authenticate(context_identifier=context, system_user_token=token)
    step("JWT validated: RS256, issuer, audience, expiry, tenant and ticket checked")
    if args.json:
        print(json.dumps(_ticket_json(ticket), indent=2, sort_keys=True), file=out)
    else:
        print(ticket.ticket, file=out)
    print(
        f"ticket for {ticket.context_identifier} (serial {ticket.serial}); "
        f"web API {ticket.webapi_url}; JWT expires {ticket.expires_at.isoformat()}",
        file=err,
    )
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .emulator import main as emulator_main

    return emulator_main(list(args.rest))


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .demo import run

    return run(out)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    rest: list[str] = []
    if argv and argv[0] == "emulator":
        argv, rest = argv[:1], argv[1:]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code in (0, None) else EXIT_USAGE
    args.rest = rest
    handler: Callable[[argparse.Namespace, TextIO, TextIO], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(err)
        return EXIT_USAGE
    try:
        return handler(args, out, err)
    except SutSoapError as error:
        if args.debug:
            raise
        print(f"sut-soap: {error.message}", file=err)
        if error.hint:
            print(f"  check: {error.hint}", file=err)
        return _exit_code(error)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
