"""The ``sut-soap`` command line: the only reader of argv and environment variables.

Commands: ``sign``, ``envelope``, ``ticket``, ``verify``, ``inspect``, ``convert-key``,
``doctor``, and the pass-throughs ``emulator`` and ``replay`` (their modules parse their own
arguments), and ``demo``. On failure each says which moving part is wrong (the key, the
clock, the client secret, the tenant, the environment or the JWT) through its exit code and
one or two plain lines on stderr.

Secrets (the client secret, the private key, the system user token, the signed token, the JWT
and the ticket) never reach stdout or stderr, with three deliberate exceptions: the ticket as
the output of ``ticket``, the signed token as the output of ``sign``, and whatever the user
unmasks with ``envelope --show-secrets`` or ``verify``/``inspect --show-ticket``. Envelopes
shown by ``envelope`` and ``ticket -v`` are masked twice: by pattern (the text of every
``ApplicationToken``, ``SignedSystemToken`` and ``Token`` element, anything shaped like a JWT,
and every known secret value, XML-escaped too), then after a hardened parse, which catches
what a pattern cannot see (CDATA, comments inside those elements).

Start-up: only argparse and the error classes are imported at module level; zeep,
cryptography, requests, lxml, ``typing`` and ``json`` load inside the commands. Only the named
command's arguments are built, and the help formatter gets the terminal width without
argparse's ``import shutil``, so ``--help`` costs little more than importing argparse.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._exitcodes import EXIT_OK, EXIT_TRANSPORT, EXIT_USAGE, exit_code_for
from .errors import (
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    SutSoapError,
    TokenValidationError,
    TransportError,
)

# typing is not imported at run time: see the module docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from typing import Any, TextIO

    import requests
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

    from ._soap import HttpTransport
    from .ticket import SystemUserTicket

    _Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]

__all__ = ["main"]


EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  the service said no (IsSuccessful=false or a SOAP fault)
  2  usage or configuration (bad flags, unreadable or wrong key, bad endpoint)
  3  transport or protocol (network, timeout, HTTP error, malformed or hostile answer)
  4  the JWT failed validation
"""

ENV_HELP = """\
secrets need not appear in shell history: every option that takes a secret or a tenant
also reads an environment variable: SUT_SOAP_CLIENT_SECRET, SUT_SOAP_PRIVATE_KEY,
SUT_SOAP_SYSTEM_USER_TOKEN, SUT_SOAP_CONTEXT_IDENTIFIER, SUT_SOAP_ENVIRONMENT,
SUT_SOAP_ENDPOINT. A flag given on the command line wins over its variable.
"""

EPILOG = EXIT_CODES_HELP + "\n" + ENV_HELP

TOP_DESCRIPTION = """\
Get SuperOffice CRM Online system user tickets over the PartnerSystemUserService SOAP
endpoint, and find out which part of a failing exchange is wrong: the key, the clock, the
client secret, the tenant, the environment or the JWT. `sut-soap COMMAND --help` for each.

Secrets are masked in everything printed, except the output a command exists to print
(`ticket` prints the ticket, `sign` the signed token) and what --show-secrets or
--show-ticket unmask.
"""

MASK = "***"
_SECRET_ELEMENTS = ("ApplicationToken", "SignedSystemToken", "Token")
_CLAIM_PREFIX = "http://schemes.superoffice.net/identity/"
_CLAIM_TICKET = _CLAIM_PREFIX + "ticket"
_ALWAYS_MASKED_CLAIMS = (_CLAIM_PREFIX + "system_token",)
_MAX_READ = 1024 * 1024
_DOCTOR_PROBE = "sut-soap-doctor-probe"
_CLOCK_WARN = 60.0
_CLOCK_FAIL = 600.0
# Commands with their own argument parser: everything after the command name is theirs.
_PASS_THROUGH = ("emulator", "replay")


# --------------------------------------------------------------------------------------------
# Exit codes, errors, warnings


class _Masker:
    """Known secret values of this run, and the envelope masking built on them."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, *values: str | None) -> None:
        for value in values:
            if value and value.strip():
                self._values.add(value)
                self._values.add(value.strip())
                self._values.add(_xml_escape(value))

    def text(self, text: str) -> str:
        """``text`` with every known secret value replaced by ``***`` (longest first)."""
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text

    def envelope(self, data: bytes) -> str:
        """A SOAP envelope for display: secret element texts and known secret values masked."""
        import re

        text = data.decode("utf-8", errors="replace")
        names = "|".join(_SECRET_ELEMENTS)
        # Up to the next tag or the end: also masks an element cut off in a truncated answer.
        text = re.sub(rf"(<(?:[\w.-]+:)?(?:{names})(?:\s[^>]*)?(?<!/)>)[^<]*", rf"\g<1>{MASK}", text)
        text = re.sub(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}", MASK, text)
        text = self.text(text)
        return _mask_elements_parsed(text)


def _xml_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mask_elements_parsed(text: str) -> str:
    """Second pass: parse (hardened) and blank any secret element the regex could not see."""
    from lxml import etree

    from ._xml import hardened_parser, name_of

    try:
        root = etree.fromstring(text.encode("utf-8"), parser=hardened_parser())
    except (etree.XMLSyntaxError, ValueError):
        return text  # not XML (an HTML error page, a truncated answer): the regex pass stands
    changed = False
    for element in root.iter():
        if not isinstance(element.tag, str) or name_of(element).localname not in _SECRET_ELEMENTS:
            continue
        if (element.text or "").strip() in ("", MASK) and len(element) == 0:
            continue
        for child in list(element):
            element.remove(child)
        element.text = MASK
        changed = True
    if not changed:
        return text
    declaration = "<?xml version='1.0' encoding='utf-8'?>\n" if text.startswith("<?xml") else ""
    return declaration + etree.tostring(root, encoding="unicode")


def _print_error(error: SutSoapError, err: TextIO, masker: _Masker) -> None:
    message = error.message
    if isinstance(error, TokenValidationError):
        message = f"the JWT failed the {error.check!r} check: {message}"
    print(f"sut-soap: {masker.text(message)}", file=err)
    if error.hint:
        print(f"  check: {masker.text(error.hint)}", file=err)


def _warning_printer(err: TextIO, masker: _Masker) -> Callable[..., None]:
    def show(message: Warning | str, category: type[Warning], *_args: object, **_kwargs: object) -> None:
        print(f"sut-soap: warning: {masker.text(str(message))}", file=err)

    return show


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter without its ``import shutil`` (bz2, lzma, ...) just for the terminal width."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """What ``shutil.get_terminal_size().columns`` answers: $COLUMNS, else the terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """argparse with two-line usage errors that never echo an unrecognized argument's value."""

    def error(self, message: str) -> None:  # type: ignore[override]
        import re

        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            words = message[len(prefix) :].split()
            flags = [word.split("=", 1)[0] for word in words if word.startswith("-")]
            message = prefix + " ".join(flags)
            if len(flags) < len(words) or any("=" in word for word in words):
                message += " (values not shown: they may be secrets)"
        message = re.sub(r"(--?[A-Za-z0-9][\w-]*)=\S+", r"\g<1>=***", message)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n  check: {self.prog} --help\n")


# --------------------------------------------------------------------------------------------
# Arguments


def _env_default(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _require(value: str | None, flag: str, env: str | None = None) -> str:
    if not value:
        raise ConfigurationError(f"{flag} is required" + (f" (or set {env})" if env else ""))
    return value


def _password(args: argparse.Namespace) -> str | None:
    var = getattr(args, "password_env", None)
    if not var:
        return None
    value = os.environ.get(var)
    if value is None:
        raise ConfigurationError(f"--password-env names {var}, which is not set")
    return value


def _timeout(args: argparse.Namespace) -> tuple[float, float]:
    seconds: float = args.timeout
    if not 0 < seconds < 3600:
        raise ConfigurationError("--timeout must be between 0 and 3600 seconds")
    return (min(5.0, seconds), seconds)


def _target(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(environment, endpoint) from the flags, else from SUT_SOAP_ENVIRONMENT / SUT_SOAP_ENDPOINT."""
    environment: str | None = args.environment
    endpoint: str | None = args.endpoint
    if environment is None and endpoint is None:
        environment = _env_default("SUT_SOAP_ENVIRONMENT")
        endpoint = None if environment else _env_default("SUT_SOAP_ENDPOINT")
    return environment, endpoint


def _read_token(value: str, stdin: TextIO, what: str = "TOKEN") -> str:
    """A token given as an argument, or read from stdin when it is ``-``."""
    if value == "-":
        value = stdin.read(_MAX_READ + 1)
        if len(value) > _MAX_READ:
            raise ConfigurationError(f"{what} on stdin is larger than {_MAX_READ} bytes")
    value = value.strip()
    if not value:
        raise ConfigurationError(f"{what} is empty", hint="pass the value, or - to read it from stdin")
    return value


def _system_user_token(args: argparse.Namespace, what: str = "--system-user-token") -> str:
    """--system-user-token or its variable; ``-`` reads it from stdin (no real token is a lone dash)."""
    value = _require(args.system_user_token, what, "SUT_SOAP_SYSTEM_USER_TOKEN")
    if value == "-":
        value = _read_token(value, args.stdin, "--system-user-token")
    return value


def _add_key(parser: argparse.ArgumentParser, *, required_note: str = "") -> None:
    parser.add_argument(
        "--private-key", metavar="FILE", default=_env_default("SUT_SOAP_PRIVATE_KEY"),
        help=f"partner RSA private key: .NET <RSAKeyValue> XML, PEM or DER{required_note} [SUT_SOAP_PRIVATE_KEY]",
    )
    parser.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding the key's password, if encrypted"
    )


def _add_token(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    parser.add_argument(
        "--system-user-token", metavar="T", default=_env_default("SUT_SOAP_SYSTEM_USER_TOKEN"),
        help="the tenant's system user token, exactly as received; - reads it from stdin [SUT_SOAP_SYSTEM_USER_TOKEN]",
    )


def _add_context(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context-identifier", metavar="C", default=_env_default("SUT_SOAP_CONTEXT_IDENTIFIER"),
        help="the tenant, e.g. Cust12345 [SUT_SOAP_CONTEXT_IDENTIFIER]",
    )


def _add_secret(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client-secret", metavar="S", default=_env_default("SUT_SOAP_CLIENT_SECRET"),
        help="the application's client secret (ApplicationToken) [SUT_SOAP_CLIENT_SECRET]",
    )


def _add_target(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--environment", metavar="ENV", default=None,
        help="sod, qaonline (alias stage) or online [SUT_SOAP_ENVIRONMENT]",
    )
    target.add_argument("--endpoint", metavar="URL", default=None, help="explicit service URL [SUT_SOAP_ENDPOINT]")


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", metavar="SECONDS", type=float, default=10.0,
        help="read timeout; connecting gets at most 5 s (default 10)",
    )


def _args_sign(sign: argparse.ArgumentParser) -> None:
    _add_token(sign)
    _add_key(sign)
    sign.add_argument("--timestamp", metavar="YYYYMMDDHHMM", help="sign for this UTC minute (reproducible output)")


def _args_envelope(envelope: argparse.ArgumentParser) -> None:
    _add_secret(envelope)
    _add_context(envelope)
    token_source = envelope.add_mutually_exclusive_group()
    token_source.add_argument("--signed-token", metavar="X", help="an already signed system user token; - for stdin")
    _add_token(token_source)
    _add_key(envelope, required_note=" (to sign now)")
    envelope.add_argument("--timestamp", metavar="YYYYMMDDHHMM", help="sign for this UTC minute (reproducible output)")
    _add_target(envelope)
    envelope.add_argument(
        "--show-secrets", action="store_true",
        help="print the envelope exactly as it would be sent, client secret and signed token included",
    )


def _args_ticket(ticket: argparse.ArgumentParser) -> None:
    _add_context(ticket)
    _add_token(ticket)
    _add_key(ticket)
    _add_secret(ticket)
    _add_target(ticket)
    keys = ticket.add_mutually_exclusive_group()
    keys.add_argument("--jwks-url", metavar="URL", help="JWKS that signs the JWT (default: the environment's)")
    keys.add_argument("--public-key", metavar="FILE", help="PEM key, certificate or JWKS file for offline checks")
    _add_timeout(ticket)
    ticket.add_argument(
        "--json", action="store_true",
        help="print one JSON object: ticket, context_identifier, serial, webapi_url, netserver_url, "
        "expires_at, claims (the system_token claim masked)",
    )
    ticket.add_argument("-v", "--verbose", action="store_true", help="show each step on stderr (secrets masked)")
    ticket.add_argument(
        "--record", metavar="DIR",
        help="also save the exchange, secrets replaced by placeholders, for `sut-soap replay DIR` "
        "(an existing recording is not overwritten)",
    )


def _args_verify(verify: argparse.ArgumentParser) -> None:
    verify.add_argument("token", metavar="TOKEN", help="the JWT, or - to read it from stdin")
    keys = verify.add_mutually_exclusive_group()
    keys.add_argument("--public-key", metavar="FILE", help="SuperOffice's PEM public key or certificate (.crt)")
    keys.add_argument("--jwks-url", metavar="URL", help="a JWKS URL")
    keys.add_argument("--jwks-file", metavar="FILE", help="a JWKS document saved to a file")
    keys.add_argument(
        "--environment", metavar="ENV", help="the environment's JWKS: sod, qaonline, online [SUT_SOAP_ENVIRONMENT]"
    )
    _add_context(verify)
    verify.add_argument("--leeway", metavar="SECONDS", type=float, default=300.0, help="clock skew allowed (300)")
    verify.add_argument("--expected-serial", metavar="SERIAL", help="also require this tenant database serial")
    verify.add_argument("--show-ticket", action="store_true", help="print the ticket claim instead of ***")


def _args_inspect(inspect: argparse.ArgumentParser) -> None:
    inspect.add_argument("token", metavar="TOKEN", help="the JWT, or - to read it from stdin")
    inspect.add_argument("--show-ticket", action="store_true", help="print the ticket claim instead of ***")


def _args_convert_key(convert: argparse.ArgumentParser) -> None:
    convert.add_argument("file", metavar="FILE", help="the private key to convert")
    convert.add_argument("--out", metavar="FILE", help="where to write the converted key (mode 0600)")
    convert.add_argument("--to", choices=("pem", "xml"), default="pem", help="output form (default pem: PKCS#8)")
    convert.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    convert.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding the input key's password, if encrypted"
    )


def _args_doctor(doctor: argparse.ArgumentParser) -> None:
    _add_target(doctor)
    doctor.add_argument("--jwks-url", metavar="URL", help="JWKS to check (default: the environment's)")
    _add_key(doctor)
    doctor.add_argument(
        "--public-key", metavar="FILE",
        help="the partner public key or certificate registered for the application (PEM, DER, .NET XML)",
    )
    _add_timeout(doctor)


def _commands() -> list[tuple[str, str, str, Callable[[argparse.ArgumentParser], None] | None, _Handler]]:
    """(name, one-line help, description, argument builder or None for pass-through, handler)."""
    return [
        ("sign", "print the signed system user token",
         "Sign a system user token; prints <token>.<yyyyMMddHHmm>.<signature> alone on stdout.\n"
         "With --timestamp the output is reproducible, for comparison with another language's signature.",
         _args_sign, _cmd_sign),
        ("envelope", "print the request envelope that would be POSTed; sends nothing",
         "Print the exact request envelope on stdout and the HTTP request line and headers on stderr.\n"
         "Nothing is sent. The client secret and the signed token are masked (***) unless --show-secrets.\n"
         "Give either --signed-token (e.g. from `sut-soap sign`; - reads it from stdin) or\n"
         "--system-user-token with --private-key to sign now.",
         _args_envelope, _cmd_envelope),
        ("ticket", "exchange a system user token for a validated ticket",
         "Perform the exchange. Prints the ticket alone on stdout (so $(sut-soap ticket ...) works)\n"
         "and a short summary on stderr. -v shows each step and the request and response envelopes,\n"
         "secrets masked.",
         _args_ticket, _cmd_ticket),
        ("verify", "validate a JWT offline exactly as the client does",
         "Validate a JWT the way `ticket` does (RS256 only, issuer, audience = spn:<serial>, expiry,\n"
         "tenant, ticket claim) and print its header and claims as JSON. On failure the error names\n"
         "the check that failed. The ticket claim is masked unless --show-ticket; the system_token\n"
         "claim (the system user token) is always masked. TOKEN may be - to read it from stdin,\n"
         "which keeps it out of shell history.",
         _args_verify, _cmd_verify),
        ("inspect", "print a JWT's header and claims WITHOUT verifying them",
         "Decode a JWT and print its header and claims as JSON, labelled UNVERIFIED: nothing is\n"
         "checked but its shape. Times (exp, nbf, iat) are explained on stderr. The ticket claim is\n"
         "masked unless --show-ticket; the system_token claim is always masked. TOKEN may be - for stdin.",
         _args_inspect, _cmd_inspect),
        ("convert-key", "convert a .NET <RSAKeyValue> key to PEM and back, locally",
         "Read a private key in any supported form (.NET <RSAKeyValue> XML, PEM, DER, encrypted PEM\n"
         "with --password-env) and write it as unencrypted PKCS#8 PEM (default) or as .NET XML\n"
         "(--to xml), with mode 0600. Nothing leaves this machine. Prints the public key's SHA-256\n"
         "fingerprint on stdout (the same as `openssl pkey -pubout -outform DER | openssl dgst -sha256`).\n"
         "Without --out the output goes next to FILE with the suffix .pem or .xml.",
         _args_convert_key, _cmd_convert_key),
        ("doctor", "check endpoint, TLS, SOAP, clock, JWKS and keys without a tenant",
         "Check, one line each (OK, WARN, FAIL or SKIP): the endpoint answers; TLS works (https only);\n"
         "it speaks SOAP; the local clock against the server's Date header (WARN beyond 1 minute,\n"
         "FAIL beyond 10); the JWKS is reachable and parses; the private key loads and is RSA >= 2048;\n"
         "the public key or certificate matches the private key.\n\n"
         "Network traffic, only to the endpoint and JWKS named: one GET of the endpoint, one GET of\n"
         "the JWKS, and one POST of a probe envelope whose ApplicationToken, ContextIdentifier and\n"
         f"signed token are the dummy {_DOCTOR_PROBE!r}. doctor takes no client secret or system user\n"
         "token and never uses your key for the probe: the service is expected to reject it.\n\n"
         "Exit 0 when nothing failed (WARN and SKIP do not fail); 3 when a network check failed\n"
         "(endpoint, tls, soap, jwks); otherwise 2 when a local one failed (clock, private key, key pair).",
         _args_doctor, _cmd_doctor),
        ("emulator", "run the local PartnerSystemUserService emulator (see sut-soap emulator --help)", "",
         None, _cmd_emulator),
        ("replay", "run a recorded exchange through the client offline (see sut-soap replay --help)", "",
         None, _cmd_replay),
        ("demo", "a full exchange against the bundled emulator, step by step",
         "Run one real exchange against the bundled emulator and show each step.", _no_args, _cmd_demo),
    ]


def _no_args(parser: argparse.ArgumentParser) -> None:
    """demo takes no arguments."""


def _selected_command(argv: Sequence[str], names: Sequence[str]) -> str | None:
    """The command argv names, or None when the top-level parser must know every command in full."""
    for word in argv:
        if word in ("-h", "--help"):
            return None
        if not word.startswith("-"):
            return word if word in names else None
    return None


def _build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; when argv names a command, only that command's arguments are built (start-up time)."""
    parser = _Parser(
        prog="sut-soap", description=TOP_DESCRIPTION, epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks (never secrets)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    table = _commands()
    selected = _selected_command(argv, [row[0] for row in table])
    for name, help_text, description, build, handler in table:
        if selected is not None and name != selected:
            continue
        if build is None:
            sub = commands.add_parser(name, help=help_text, add_help=False, formatter_class=_Formatter)
        else:
            sub = commands.add_parser(
                name, help=help_text, description=description, epilog=EPILOG,
                formatter_class=_Formatter,
            )
            if selected is not None:
                build(sub)
        sub.set_defaults(handler=handler)
    return parser


# --------------------------------------------------------------------------------------------
# sign, envelope


def _parse_timestamp(stamp: str | None) -> datetime | None:
    if stamp is None:
        return None
    from datetime import datetime, timezone

    if len(stamp) != 12 or not stamp.isdigit():
        raise ConfigurationError("--timestamp must be 12 digits: yyyyMMddHHmm (UTC)")
    try:
        return datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ConfigurationError("--timestamp is not a valid UTC minute (yyyyMMddHHmm)") from None


def _cmd_sign(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .signing import sign_system_user_token

    token = _system_user_token(args)
    key = _require(args.private_key, "--private-key", "SUT_SOAP_PRIVATE_KEY")
    args.masker.add(token)
    at = _parse_timestamp(args.timestamp)
    print(sign_system_user_token(token, key, at=at, password=_password(args)), file=out)
    return EXIT_OK


def _signed_minute(signed: str) -> str | None:
    parts = signed.rsplit(".", 2)
    if len(parts) == 3 and len(parts[1]) == 12 and parts[1].isdigit():
        return parts[1]
    return None


def _cmd_envelope(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .client import SystemUserClient
    from .signing import sign_system_user_token

    secret = _require(args.client_secret, "--client-secret", "SUT_SOAP_CLIENT_SECRET")
    context = _require(args.context_identifier, "--context-identifier", "SUT_SOAP_CONTEXT_IDENTIFIER")
    args.masker.add(secret)
    environment, endpoint = _target(args)
    if args.signed_token is not None:
        if args.timestamp is not None:
            raise ConfigurationError("--timestamp applies only when signing here; --signed-token is already signed")
        signed = _read_token(args.signed_token, args.stdin, "--signed-token")
        args.masker.add(signed)
        key: RSAPrivateKey = _throwaway_key()  # the client needs a key; building an envelope never uses it
    else:
        token = _system_user_token(args, "--system-user-token (or --signed-token)")
        args.masker.add(token)
        key = _load_key(args)
        signed = sign_system_user_token(token, key, at=_parse_timestamp(args.timestamp))
        args.masker.add(signed)
    with SystemUserClient(
        client_secret=secret, private_key=key,
        environment=environment if environment or endpoint else "online", endpoint=endpoint,
    ) as client:
        body, headers = client.build_envelope(context_identifier=context, signed_system_token=signed)
        url = client.endpoint if environment or endpoint else None
    print(f"POST {url or '<the endpoint: give --environment or --endpoint>'} HTTP/1.1", file=err)
    for name, value in headers.items():
        print(f"{name}: {value}", file=err)
    print(f"Content-Length: {len(body)}", file=err)
    minute = _signed_minute(signed)
    notes = ["nothing was sent"]
    if minute:
        notes.append(f"the token is signed for UTC minute {minute}")
    if not args.show_secrets:
        notes.append("secrets masked (--show-secrets prints the exact envelope)")
    print("# " + "; ".join(notes), file=err)
    if args.show_secrets:
        out.write(body.decode("utf-8"))
        if out.isatty():
            out.write("\n")
    else:
        print(args.masker.envelope(body), file=out)
    return EXIT_OK


def _throwaway_key() -> RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _load_key(args: argparse.Namespace) -> RSAPrivateKey:
    from .keys import load_private_key

    path = _require(args.private_key, "--private-key", "SUT_SOAP_PRIVATE_KEY")
    return load_private_key(path, password=_password(args))


# --------------------------------------------------------------------------------------------
# ticket


def _masked_claims(claims: dict[str, Any], *, show_ticket: bool) -> dict[str, Any]:
    shown = dict(claims)
    for name in _ALWAYS_MASKED_CLAIMS:
        if name in shown:
            shown[name] = MASK
    if not show_ticket and _CLAIM_TICKET in shown:
        shown[_CLAIM_TICKET] = MASK
    return shown


def _ticket_json(ticket: SystemUserTicket) -> dict[str, Any]:
    return {
        "ticket": ticket.ticket,
        "context_identifier": ticket.context_identifier,
        "serial": ticket.serial,
        "webapi_url": ticket.webapi_url,
        "netserver_url": ticket.netserver_url,
        "expires_at": ticket.expires_at.isoformat(),
        "claims": _masked_claims(dict(ticket.claims), show_ticket=True),
    }


_SHOWN_RESPONSE_HEADERS = ("Content-Type", "Content-Length", "Date", "Server", "Retry-After", "Location")


def _clock_note(date_header: str | None, received_at: float) -> str:
    skew = _clock_skew(date_header, received_at)
    if skew is None:
        return ""
    return f"  (local clock {skew:+.0f} s against it)"


def _clock_skew(date_header: str | None, received_at: float) -> float | None:
    """Seconds the local clock is ahead of the server's Date header (None when unusable)."""
    if not date_header:
        return None
    from email.utils import parsedate_to_datetime

    try:
        server = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if server.tzinfo is None:
        return None
    return received_at - server.timestamp()


def _print_prefixed(err: TextIO, prefix: str, text: str) -> None:
    for line in text.splitlines() or [""]:
        print(prefix + line, file=err)


def _verbose_transport(
    timeout: tuple[float, float], masker: _Masker, step: Callable[[str], None], err: TextIO
) -> HttpTransport:
    import re
    import time

    from ._soap import HttpTransport

    token_text = re.compile(r"<(?:[\w.-]+:)?(?:SignedSystemToken|Token)(?:\s[^>]*)?>([^<]+)<")

    class _ShowingTransport(HttpTransport):
        """The client's own transport, printing each envelope (masked) as it goes by."""

        def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
            for value in token_text.findall(message.decode("utf-8", errors="replace")):
                masker.add(value)
                minute = _signed_minute(value)
                if minute:
                    step(f"signed the system user token for UTC minute {minute}")
            step(f"POST {address}")
            for name, value in headers.items():
                print(f"> {name}: {value}", file=err)
            _print_prefixed(err, "> ", masker.envelope(message))
            started = time.perf_counter()
            response = super().post(address, message, headers)
            received = time.time()
            for value in token_text.findall(response.content.decode("utf-8", errors="replace")):
                masker.add(value)
            step(f"HTTP {response.status_code} in {(time.perf_counter() - started) * 1000:.0f} ms")
            for name in _SHOWN_RESPONSE_HEADERS:
                value = response.headers.get(name)
                if value is not None:
                    note = _clock_note(value, received) if name == "Date" else ""
                    print(f"< {name}: {masker.text(value)}{note}", file=err)
            _print_prefixed(err, "< ", masker.envelope(response.content))
            return response

    return _ShowingTransport(timeout=timeout)


def _recording_transport(
    directory: str, inner: HttpTransport | None, timeout: tuple[float, float], *, secret: str, token: str, context: str
) -> HttpTransport:
    try:
        from .recording import RecordingTransport
    except ImportError:
        raise ConfigurationError("--record is not available in this installation of sut-soap") from None
    recorder: HttpTransport = RecordingTransport(
        directory, timeout=timeout, transport=inner, client_secret=secret, system_user_token=token,
        context_identifier=context, note="sut-soap ticket --record",
    )
    return recorder


def _cmd_ticket(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import json

    from .client import SystemUserClient
    from .keys import public_key_fingerprint

    context = _require(args.context_identifier, "--context-identifier", "SUT_SOAP_CONTEXT_IDENTIFIER")
    token = _system_user_token(args)
    secret = _require(args.client_secret, "--client-secret", "SUT_SOAP_CLIENT_SECRET")
    args.masker.add(token, secret)
    environment, endpoint = _target(args)
    if environment is None and endpoint is None:
        raise ConfigurationError("--environment or --endpoint is required (or set SUT_SOAP_ENVIRONMENT)")
    timeout = _timeout(args)

    def step(text: str) -> None:
        if args.verbose:
            print(f"* {args.masker.text(text)}", file=err)

    key = _load_key(args)
    step(f"private key: RSA {key.key_size} bits, public key {public_key_fingerprint(key)}")
    transport = _verbose_transport(timeout, args.masker, step, err) if args.verbose else None
    if args.record:
        transport = _recording_transport(
            args.record, transport, timeout, secret=secret, token=token, context=context
        )
        step(f"recording to {args.record}")
    with SystemUserClient(
        client_secret=secret,
        private_key=key,
        environment=environment,
        endpoint=endpoint,
        jwks_url=args.jwks_url,
        public_key=args.public_key,
        timeout=timeout,
        transport=transport,
    ) as client:
        step(f"endpoint {client.endpoint}")
        step(f"JWT keys from {client.jwks_url or args.public_key}")
        step(f"exchanging for tenant {context}")
        ticket = client.authenticate(context_identifier=context, system_user_token=token)
    args.masker.add(ticket.token)
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


# --------------------------------------------------------------------------------------------
# verify, inspect


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _describe_times(claims: dict[str, Any], now: float) -> list[str]:
    from datetime import datetime, timezone

    lines = []
    for name, meaning in (("exp", "expires"), ("nbf", "not before"), ("iat", "issued")):
        value = claims.get(name)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        try:
            when = datetime.fromtimestamp(float(value), tz=timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            continue
        delta = float(value) - now
        relative = f"in {_duration(delta)}" if delta >= 0 else f"{_duration(-delta)} ago"
        lines.append(f"{name} ({meaning}) {when} ({relative})")
    return lines


def _cmd_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import json
    import time

    from .environments import jwks_url_for
    from .tokens import JwksKeySource, KeySource, TokenValidator, decode_unverified, key_source_from_public_key

    token = _read_token(args.token, args.stdin)
    args.masker.add(token)
    context = _require(args.context_identifier, "--context-identifier", "SUT_SOAP_CONTEXT_IDENTIFIER")
    environment = args.environment
    if not (args.public_key or args.jwks_url or args.jwks_file or environment):
        environment = _env_default("SUT_SOAP_ENVIRONMENT")
    source: KeySource
    if args.public_key or args.jwks_file:
        source = key_source_from_public_key(args.public_key or args.jwks_file)
        origin = args.public_key or args.jwks_file
    elif args.jwks_url or environment:
        origin = args.jwks_url or jwks_url_for(environment)
        source = JwksKeySource(origin)
    else:
        raise ConfigurationError(
            "a key is required: --public-key, --jwks-url, --jwks-file or --environment (or SUT_SOAP_ENVIRONMENT)"
        )
    try:
        validator = TokenValidator(source, leeway=args.leeway, expected_serial=args.expected_serial)
        claims = validator.validate(token, context_identifier=context)
    finally:
        if isinstance(source, JwksKeySource):
            source.close()
    header, _ = decode_unverified(token)
    args.masker.add(str(claims.get(_CLAIM_TICKET) or ""))
    document = {"verified": True, "header": header, "claims": _masked_claims(claims, show_ticket=args.show_ticket)}
    print(json.dumps(document, indent=2, sort_keys=True), file=out)
    print(
        f"verified with {origin}: RS256 signature, issuer, audience, expiry, tenant {context} and ticket claim",
        file=err,
    )
    for line in _describe_times(claims, time.time()):
        print(f"  {line}", file=err)
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import json
    import time

    from .tokens import decode_unverified

    token = _read_token(args.token, args.stdin)
    args.masker.add(token)
    header, claims = decode_unverified(token)
    document = {
        "UNVERIFIED": "decoded without checking the signature, issuer, audience, expiry or tenant; "
        "use sut-soap verify",
        "verified": False,
        "header": header,
        "claims": _masked_claims(claims, show_ticket=args.show_ticket),
    }
    print(json.dumps(document, indent=2, sort_keys=True), file=out)
    print("UNVERIFIED: nothing but the JWT's shape was checked; do not trust these claims", file=err)
    for line in _describe_times(claims, time.time()):
        print(f"  {line}", file=err)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# convert-key


def _write_private_file(target: str, data: bytes, *, force: bool) -> None:
    """Write ``data`` to ``target`` with mode 0600; without ``force`` never replace a file."""
    import tempfile

    try:
        if not force:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
            return
        directory = os.path.dirname(os.path.abspath(target))
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".sut-soap-", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    except FileExistsError:
        raise ConfigurationError(
            f"{target!r} exists and was not overwritten", hint="choose another --out, or pass --force"
        ) from None
    except OSError as error:
        raise ConfigurationError(
            f"cannot write {target!r}: {error.strerror or type(error).__name__}",
            hint="the output directory and its permissions",
        ) from None


def _cmd_convert_key(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pathlib import Path

    from .keys import load_private_key, private_key_to_pem, private_key_to_rsa_xml, public_key_fingerprint

    source = Path(args.file)
    key = load_private_key(source, password=_password(args))
    if args.to == "xml":
        data, form, suffix = private_key_to_rsa_xml(key).encode("utf-8"), ".NET <RSAKeyValue> XML", ".xml"
    else:
        data, form, suffix = private_key_to_pem(key), "PKCS#8 PEM, unencrypted", ".pem"
    target = Path(args.out) if args.out else source.with_suffix(suffix)
    if target.resolve() == source.resolve():
        raise ConfigurationError("the output would overwrite the input key", hint="pass --out FILE")
    _write_private_file(str(target), data, force=args.force)
    print(public_key_fingerprint(key), file=out)
    print(f"wrote {target} ({form}, RSA {key.key_size} bits, mode 0600); above: the public key's fingerprint",
          file=err)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# doctor


class _Fetched:
    """What doctor keeps of one HTTP exchange."""

    def __init__(self, response: requests.Response, content: bytes, elapsed: float, received_at: float) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = content
        self.elapsed = elapsed
        self.received_at = received_at


def _network_reason(error: BaseException) -> str:
    """A short, secret-free reason for a requests/urllib3/ssl exception chain."""
    import socket
    import ssl

    seen: set[int] = set()
    pending: list[BaseException] = [error]
    found: list[BaseException] = []
    while pending and len(seen) < 20:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        for nxt in (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args):
            if isinstance(nxt, BaseException):
                pending.append(nxt)
    for item in found:
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({item.verify_message or 'verification failed'})"
    for item in found:
        if isinstance(item, ssl.SSLError):
            return f"TLS handshake failed ({item.reason or type(item).__name__})"
    for item in found:
        if isinstance(item, socket.gaierror) or type(item).__name__ == "NameResolutionError":
            return "the host name does not resolve (DNS)"
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, (TimeoutError, socket.timeout)) or "Timeout" in type(item).__name__:
            return "timed out"
    return f"the request failed ({type(error).__name__})"


def _fetch(
    session: requests.Session, method: str, url: str, timeout: tuple[float, float], **kwargs: Any
) -> tuple[_Fetched, str | None]:
    """One request without redirects, body capped at 1 MiB; also the TLS version when https."""
    import time

    started = time.perf_counter()
    response = session.request(method, url, timeout=timeout, allow_redirects=False, stream=True, **kwargs)
    with response:
        received_at = time.time()
        tls_version = None
        try:
            sock = response.raw.connection.sock  # type: ignore[union-attr]
            tls_version = sock.version() if hasattr(sock, "version") else None
        except AttributeError:
            pass
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > _MAX_READ:
                break
            chunks.append(chunk)
        elapsed = time.perf_counter() - started
    return _Fetched(response, b"".join(chunks), elapsed, received_at), tls_version


def _probe_envelope() -> bytes:
    from ._soap import TNS

    probe = _DOCTOR_PROBE
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        '<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:tns="{TNS}"><soap-env:Header>'
        f"<tns:ApplicationToken>{probe}</tns:ApplicationToken>"
        f"<tns:ContextIdentifier>{probe}</tns:ContextIdentifier>"
        "</soap-env:Header><soap-env:Body><tns:AuthenticationRequest>"
        f"<tns:SignedSystemToken>{probe}.000000000000.AAAA</tns:SignedSystemToken>"
        "<tns:ReturnTokenType>Jwt</tns:ReturnTokenType>"
        "</tns:AuthenticationRequest></soap-env:Body></soap-env:Envelope>"
    ).encode()


def _load_partner_public_key(path: str) -> RSAPublicKey:
    """The partner's public key from PEM/DER key or certificate, a JWK, or .NET XML (Modulus, Exponent)."""
    import base64
    import binascii

    from cryptography.hazmat.primitives.asymmetric import rsa
    from lxml import etree

    from ._xml import hardened_parser, name_of
    from .tokens import key_source_from_public_key

    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_READ + 1)
    except OSError as error:
        raise ConfigurationError(f"cannot read the public key file {path!r}: {error.strerror}") from None
    text = data.removeprefix(b"\xef\xbb\xbf").strip()
    if not text.startswith(b"<"):
        return key_source_from_public_key(data).get_key(None)
    where = f"the public key file {path!r}"
    if b"<!" in text:
        raise ConfigurationError(f"{where} carries a DTD or declaration; refused")
    try:
        root = etree.fromstring(text, parser=hardened_parser())
    except etree.XMLSyntaxError:
        raise ConfigurationError(f"{where} is not well-formed XML") from None
    values: dict[str, int] = {}
    for element in root:
        if isinstance(element.tag, str):
            name = name_of(element).localname
            if name in ("D", "P", "Q", "DP", "DQ", "InverseQ"):
                raise ConfigurationError(
                    f"{where} holds a private key", hint="give the public key registered for the application"
                )
            try:
                raw = base64.b64decode("".join((element.text or "").split()), validate=True)
                values[name] = int.from_bytes(raw, "big")
            except (binascii.Error, ValueError):
                raise ConfigurationError(f"{where}: <{name}> is not Base64") from None
    if "Modulus" not in values or "Exponent" not in values:
        raise ConfigurationError(f"{where} is XML without <Modulus> and <Exponent>")
    try:
        return rsa.RSAPublicNumbers(values["Exponent"], values["Modulus"]).public_key()
    except ValueError:
        raise ConfigurationError(f"{where} does not hold a valid RSA public key") from None


class _Report:
    """doctor's lines: one per check, and the exit code they add up to."""

    REMOTE = ("endpoint", "tls", "soap", "jwks")

    def __init__(self, out: TextIO, masker: _Masker) -> None:
        self._out = out
        self._masker = masker
        self.failed: list[str] = []
        self.counts = {"OK": 0, "WARN": 0, "FAIL": 0, "SKIP": 0}

    def line(self, status: str, name: str, detail: str) -> None:
        self.counts[status] += 1
        if status == "FAIL":
            self.failed.append(name)
        print(f"{status:<5}{name:<12}{self._masker.text(detail)}", file=self._out)

    def exit_code(self) -> int:
        if any(name in self.REMOTE for name in self.failed):
            return EXIT_TRANSPORT
        return EXIT_USAGE if self.failed else EXIT_OK


def _cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from urllib.parse import urlsplit

    import requests

    from ._soap import SOAP_ACTION, parse_answer
    from .environments import (
        endpoint_for,
        is_loopback_host,
        jwks_url_for,
        normalise_environment,
        validate_endpoint,
    )

    environment, endpoint = _target(args)
    if environment is not None:
        environment = normalise_environment(environment)
        endpoint = endpoint_for(environment)
        jwks_url = args.jwks_url or jwks_url_for(environment)
    elif endpoint is not None:
        endpoint = validate_endpoint(endpoint)
        parts = urlsplit(endpoint)
        jwks_url = args.jwks_url or f"{parts.scheme}://{parts.netloc}/login/.well-known/jwks"
    else:
        raise ConfigurationError("--environment or --endpoint is required (or set SUT_SOAP_ENVIRONMENT)")
    jwks_url = validate_endpoint(jwks_url, what="--jwks-url")
    timeout = _timeout(args)
    print(f"sut-soap doctor: {endpoint}", file=err)
    report = _Report(out, args.masker)

    with requests.Session() as session:
        session.headers["User-Agent"] = "sut-soap doctor"
        # endpoint + tls
        get: _Fetched | None = None
        https = urlsplit(endpoint).scheme == "https"
        try:
            get, tls_version = _fetch(session, "GET", endpoint, timeout)
        except requests.RequestException as error:
            reason = _network_reason(error)
            report.line("FAIL", "endpoint", f"GET {endpoint}: {reason}")
            if not https:
                report.line("SKIP", "tls", "(http on loopback)")
            elif "TLS" in reason:
                report.line("FAIL", "tls", f"{reason}: check the system CA bundle (REQUESTS_CA_BUNDLE) "
                            "and any TLS-intercepting proxy")
            else:
                report.line("SKIP", "tls", "(no connection)")
        else:
            _doctor_endpoint_line(report, get)
            if https:
                host = urlsplit(endpoint).hostname
                report.line("OK", "tls", f"certificate verified for {host}" + (f" ({tls_version})" if tls_version
                                                                                else ""))
            else:
                host = urlsplit(endpoint).hostname or ""
                report.line("SKIP", "tls", "(http on loopback)" if is_loopback_host(host) else "(http)")

        # soap
        post: _Fetched | None = None
        if get is None:
            report.line("SKIP", "soap", "(endpoint unreachable)")
        else:
            try:
                post, _ = _fetch(
                    session, "POST", endpoint, timeout, data=_probe_envelope(),
                    headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SOAP_ACTION}"'},
                )
            except requests.RequestException as error:
                report.line("FAIL", "soap", f"POST of the probe: {_network_reason(error)}")
            else:
                _doctor_soap_line(report, post, parse_answer)

        # clock
        dated = next((f for f in (get, post) if f is not None and f.headers.get("Date")), None)
        if dated is None:
            report.line("SKIP" if get is None else "WARN", "clock",
                        "(endpoint unreachable)" if get is None else "no Date header in the answer; cannot compare")
        else:
            _doctor_clock_line(report, dated)

        # jwks
        try:
            fetched, _ = _fetch(session, "GET", jwks_url, timeout, headers={"Accept": "application/json"})
        except requests.RequestException as error:
            report.line("FAIL", "jwks", f"GET {jwks_url}: {_network_reason(error)}")
        else:
            _doctor_jwks_line(report, jwks_url, fetched)

    # private key, key pair
    private_key = _doctor_private_key_line(report, args)
    _doctor_key_pair_line(report, args, private_key)

    counts = report.counts
    summary = ", ".join(f"{counts[s]} {s}" for s in ("OK", "WARN", "FAIL", "SKIP") if counts[s])
    verdict = f"failed: {', '.join(report.failed)}" if report.failed else "nothing failed"
    print(f"sut-soap doctor: {summary}; {verdict}", file=err)
    return report.exit_code()


def _doctor_endpoint_line(report: _Report, get: _Fetched) -> None:
    status = get.status_code
    kind = get.headers.get("Content-Type", "no Content-Type").split(";")[0]
    detail = f"HTTP {status} ({kind}) from GET in {get.elapsed * 1000:.0f} ms"
    if 300 <= status < 400:
        report.line("WARN", "endpoint", f"{detail}: a redirect to {get.headers.get('Location', '?')!r}, which "
                    "the client does not follow: use the final URL")
    elif status == 404:
        report.line("FAIL", "endpoint", f"{detail}: nothing at this path; check the URL "
                    "(.../Login/Services/PartnerSystemUserService.svc) and the environment")
    elif status >= 500:
        report.line("FAIL", "endpoint", f"{detail}: the server is failing or unavailable")
    else:
        report.line("OK", "endpoint", detail)


def _doctor_soap_line(report: _Report, post: _Fetched, parse_answer: Callable[..., Any]) -> None:
    try:
        answer = parse_answer(post)
    except SoapFaultError as fault:
        code = fault.fault_code or "(no faultcode)"
        if "ActionNotSupported" in code:
            report.line("FAIL", "soap", f"SOAP Fault {code}: a SOAP service, but not the PartnerSystemUserService "
                        "(the Authenticate action is unknown here)")
        else:
            report.line("WARN", "soap", f"answered the probe with a SOAP Fault {code}: {fault.fault_string[:120]}")
        return
    except (TransportError, ProtocolError) as error:
        report.line("FAIL", "soap", f"the probe got no SOAP answer: {error.message}")
        return
    if answer.is_successful:
        report.line("WARN", "soap", "the service ACCEPTED a dummy probe: is this really SuperOffice?")
    else:
        reason = (answer.error_message or "no ErrorMessage")[:120]
        report.line("OK", "soap", f"SOAP 1.1 AuthenticationResponse; the dummy probe was rejected as expected "
                    f"({reason})")


def _doctor_clock_line(report: _Report, fetched: _Fetched) -> None:
    date = fetched.headers.get("Date")
    # Date has 1 s resolution and was stamped somewhere during the round trip.
    skew = _clock_skew(date, fetched.received_at - fetched.elapsed / 2)
    if skew is None:
        report.line("WARN", "clock", f"the Date header {date!r} is not an HTTP date; cannot compare")
        return
    if abs(skew) < 1.5:
        detail = f"local clock agrees with the server's Date ({date}) within the header's 1 s resolution"
    else:
        direction = "ahead of" if skew > 0 else "behind"
        detail = f"local clock {abs(skew):.0f} s {direction} the server's Date ({date})"
    if abs(skew) > _CLOCK_FAIL:
        report.line("FAIL", "clock", f"{detail}: signed tokens carry the UTC minute and will be rejected "
                    "(InvalidTimestamp); sync the clock (NTP)")
    elif abs(skew) > _CLOCK_WARN:
        report.line("WARN", "clock", f"{detail}: more than a minute; sync the clock (NTP)")
    else:
        report.line("OK", "clock", detail)


def _doctor_jwks_line(report: _Report, url: str, fetched: _Fetched) -> None:
    import json

    from .tokens import key_source_from_public_key

    if fetched.status_code != 200:
        report.line("FAIL", "jwks", f"GET {url}: HTTP {fetched.status_code}")
        return
    try:
        key_source_from_public_key(fetched.content)
        document = json.loads(fetched.content.decode("utf-8-sig"))
    except (ConfigurationError, ValueError) as error:
        reason = error.message if isinstance(error, ConfigurationError) else "not JSON"
        report.line("FAIL", "jwks", f"{url}: {reason}")
        return
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        report.line("FAIL", "jwks", f"{url}: a single JWK, not a JWKS with a 'keys' list")
        return
    rsa_keys = [k for k in keys if isinstance(k, dict) and k.get("kty") == "RSA"]
    kids = ", ".join(str(k.get("kid")) for k in rsa_keys if k.get("kid"))
    report.line("OK", "jwks", f"{url}: {len(rsa_keys)} RSA key(s)" + (f", kid {kids}" if kids else ""))


def _doctor_private_key_line(report: _Report, args: argparse.Namespace) -> RSAPrivateKey | None:
    import warnings

    from .keys import KeyFilePermissionWarning, public_key_fingerprint

    if not args.private_key:
        report.line("SKIP", "private key", "(no --private-key)")
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KeyFilePermissionWarning)
        try:
            key = _load_key(args)
        except ConfigurationError as error:
            report.line("FAIL", "private key", error.message)
            return None
    detail = f"RSA {key.key_size} bits, public key {public_key_fingerprint(key)}"
    problems = [str(w.message) for w in caught if issubclass(w.category, KeyFilePermissionWarning)]
    if problems:
        report.line("WARN", "private key", f"{detail}; {problems[0]}")
    else:
        report.line("OK", "private key", detail)
    return key


def _doctor_key_pair_line(report: _Report, args: argparse.Namespace, private_key: RSAPrivateKey | None) -> None:
    from .keys import public_key_fingerprint

    if not args.public_key:
        report.line("SKIP", "key pair", "(no --public-key)")
        return
    try:
        public = _load_partner_public_key(args.public_key)
    except (ConfigurationError, TokenValidationError) as error:
        report.line("FAIL", "key pair", f"{error.message}")
        return
    fingerprint = public_key_fingerprint(public)
    if private_key is None:
        report.line("SKIP", "key pair", f"public key {fingerprint} loads; give a loadable --private-key to compare")
    elif private_key.public_key().public_numbers() == public.public_numbers():
        report.line("OK", "key pair", f"the public key matches the private key ({fingerprint})")
    else:
        report.line("FAIL", "key pair", f"the public key {fingerprint} does NOT match the private key's "
                    f"{public_key_fingerprint(private_key)}: sign with the key registered for the application")


# --------------------------------------------------------------------------------------------
# emulator, demo, main


def _cmd_emulator(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .emulator import main as emulator_main

    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        return emulator_main(list(args.rest))
    finally:
        sys.stdout, sys.stderr = saved


def _cmd_replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from .recording import replay_main
    except ImportError:
        raise ConfigurationError("replay is not available in this installation of sut-soap") from None
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # its argparse writes help and usage errors to sys.*
    try:
        return replay_main(list(args.rest), stdout=out, stderr=err)
    finally:
        sys.stdout, sys.stderr = saved


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .demo import run

    return run(out)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(argv)
    rest: list[str] = []
    command_at = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    if command_at is not None and argv[command_at] in _PASS_THROUGH:
        argv, rest = argv[: command_at + 1], argv[command_at + 1 :]
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # argparse writes help and usage errors to sys.*
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code in (0, None) else EXIT_USAGE
    finally:
        sys.stdout, sys.stderr = saved
    args.rest = rest
    args.stdin = stdin or sys.stdin
    args.masker = _Masker()
    handler: _Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(err)
        return EXIT_USAGE

    import warnings

    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(err, args.masker)
        try:
            return handler(args, out, err)
        except SutSoapError as error:
            if args.debug:
                raise
            _print_error(error, err, args.masker)
            return exit_code_for(error)
        except KeyboardInterrupt:
            return 130
        except SystemExit as exc:  # the emulator's own argparse
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        except Exception as exc:
            if args.debug:
                raise
            print(f"sut-soap: unexpected {type(exc).__name__}; run with --debug for the traceback", file=err)
            return EXIT_TRANSPORT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
