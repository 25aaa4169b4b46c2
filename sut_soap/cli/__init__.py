"""The ``sut-soap`` command line: the only reader of argv and environment variables.

Commands: ``sign``, ``envelope``, ``ticket``, ``verify``, ``inspect``, ``convert-key``,
``doctor``, ``warm``, and the pass-throughs ``emulator`` and ``replay`` (their modules parse their own
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
import sys

from .. import __version__
from ..errors import SutSoapError
from ._common import (
    _DOCTOR_PROBE,
    _PASS_THROUGH,
    EPILOG,
    TOP_DESCRIPTION,
    _Formatter,
    _Masker,
    _Parser,
    _print_error,
    _print_traceback,
    _warning_printer,
)
from .doctor import _args_doctor, _cmd_doctor
from .exitcodes import EXIT_INTERRUPTED, EXIT_OK, EXIT_TRANSPORT, EXIT_USAGE, exit_code_for
from .jwt import _args_inspect, _args_verify, _cmd_inspect, _cmd_verify
from .keys import _args_convert_key, _cmd_convert_key
from .tickets import _args_envelope, _args_sign, _args_ticket, _cmd_envelope, _cmd_sign, _cmd_ticket
from .warm import DESCRIPTION as _WARM_DESCRIPTION
from .warm import _args_warm, _cmd_warm

# typing is not imported at run time: see the module docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TextIO

    _Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]

__all__ = ["main"]

_DEBUG_HELP = "also show the Python traceback (known secret values masked); the exit code stays the same"


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
         "token and never uses your key for the probe: the service is expected to reject it. Each\n"
         "request ends within --deadline seconds (default 30), however slowly the server answers.\n\n"
         "Exit 0 when nothing failed (WARN and SKIP do not fail); 3 when a network check failed\n"
         "(endpoint, tls, soap, jwks); otherwise 2 when a local one failed (clock, private key, key pair).",
         _args_doctor, _cmd_doctor),
        ("warm", "get a ticket for every tenant of a file, into a fleet's store (--store) or to check them",
         _WARM_DESCRIPTION, _args_warm, _cmd_warm),
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
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    parser.add_argument("--version", action="version", version=f"sut-soap {__version__}")
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
                sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        sub.set_defaults(handler=handler)
    return parser



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
    from .replay import replay_main

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
                _print_traceback(error, err, args.masker)
            _print_error(error, err, args.masker)
            return exit_code_for(error)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except SystemExit as exc:  # the emulator's own argparse
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        except Exception as exc:
            if args.debug:
                _print_traceback(exc, err, args.masker)
            else:
                print(f"sut-soap: unexpected {type(exc).__name__}; run with --debug for the traceback", file=err)
            return EXIT_TRANSPORT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
