"""What every command shares: secret masking, the argument parser and formatter, option builders,
and the readers of secrets and settings from flags, stdin and environment variables."""

from __future__ import annotations

import argparse
import os
import sys

from ..contract import CLAIM_SYSTEM_TOKEN, CLAIM_TICKET
from ..errors import (
    AuthenticationRejectedError,
    ConfigurationError,
    SutSoapError,
    TokenValidationError,
)
from .exitcodes import EXIT_USAGE

# typing is not imported at run time: see sut_soap.cli's docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from typing import Any, TextIO

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  the service said no (IsSuccessful=false or a SOAP fault)
  2  usage or configuration (bad flags, unreadable or wrong key, bad endpoint)
  3  transport or protocol (network, timeout, HTTP error, malformed or hostile answer)
  4  the JWT failed validation
  5  warm: not every tenant got a ticket (the report names each failure)
  130  interrupted (Ctrl-C)
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
_ALWAYS_MASKED_CLAIMS = (CLAIM_SYSTEM_TOKEN,)
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
                self._values.add(_json_escape(value))

    def text(self, text: str) -> str:
        """``text`` with every known secret value replaced by ``***`` (longest first)."""
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text

    def envelope(self, data: bytes) -> str:
        """A SOAP envelope or REST body for display: secret element texts or members and known secret values masked."""
        import re

        text = data.decode("utf-8", errors="replace")
        names = "|".join(_SECRET_ELEMENTS)
        # A REST body's secret members, in any case; up to the closing quote, or the end if cut off.
        text = re.sub(rf'("(?i:{names})"\s*:\s*")(?:[^"\\]|\\.)*("|\Z)', rf"\g<1>{MASK}\g<2>", text)
        # Up to the next tag or the end: also masks an element cut off in a truncated answer.
        text = re.sub(rf"(<(?:[\w.-]+:)?(?:{names})(?:\s[^>]*)?(?<!/)>)[^<]*", rf"\g<1>{MASK}", text)
        text = re.sub(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}", MASK, text)
        text = self.text(text)
        return _mask_elements_parsed(text)


def _json_escape(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)[1:-1]


def _xml_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mask_elements_parsed(text: str) -> str:
    """Second pass: parse (hardened) and blank any secret element the regex could not see."""
    from lxml import etree

    from ..safexml import hardened_parser, name_of

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


# What to check per rejection reason (the first word of ErrorMessage), in the command line's terms.
_REJECTION_HINTS = {
    "invalidapplicationtoken": "--client-secret (SUT_SOAP_CLIENT_SECRET): the client secret of the application, "
                               "registered in this --environment",
    "unknowntenant": "--context-identifier (SUT_SOAP_CONTEXT_IDENTIFIER): the tenant id, e.g. Cust12345, "
                     "of a tenant in this --environment",
    "invalidtimestamp": "the local clock: the token is signed with the UTC minute and must be within minutes "
                        "of the server's (sync it with NTP; `sut-soap doctor` compares them)",
    "invalidsystemtoken": "--system-user-token (SUT_SOAP_SYSTEM_USER_TOKEN): the token of this tenant and "
                          "application, exactly as received when the tenant approved it",
    "invalidsignature": "--private-key: the key registered for the application; the system user token is "
                        "signed exactly as given",
    "unsupportedtokentype": "the ReturnTokenType: sut-soap asks for Jwt, the only type it accepts",
    "revoked": "the tenant's approval: an administrator revoked the application; they must approve it again",
    "denied": "the tenant's approval: an administrator denied the application access",
    "needsreapproval": "the tenant's approval: an administrator must approve the application again",
    "expired": "the tenant's approval of the application, or its subscription, has expired",
}

# The library's hints name Python parameters; the command line's flags stand in for them.
_FLAG_FOR_PARAMETER = (
    ("choose an empty directory or pass overwrite=True to replace it",
     "choose another --record directory, or remove the recording in it"),
    ("pass allow_remote=True if you really mean it", "pass --allow-remote if you really mean it"),
    ("or pass endpoint=", "or pass --endpoint URL"),
    ("pass environment='sod' | 'qaonline' | 'online' or endpoint='https://...'",
     "pass --environment sod|qaonline|online or --endpoint https://..."),
    ("the expected_serial setting", "--expected-serial"),
    ("the password= argument", "--password-env"),
    ("a larger deadline=", "a larger --deadline"),
)


def _cli_hint(error: SutSoapError) -> str:
    """The hint to print: per rejection reason, and with CLI flags for the library's parameter names."""
    if isinstance(error, AuthenticationRejectedError) and error.reason.lower() in _REJECTION_HINTS:
        return _REJECTION_HINTS[error.reason.lower()]
    hint = error.hint
    for parameter, flag in _FLAG_FOR_PARAMETER:
        hint = hint.replace(parameter, flag)
    return hint


def _print_error(error: SutSoapError, err: TextIO, masker: _Masker, prog: str = "sut-soap") -> None:
    message = error.message
    if isinstance(error, TokenValidationError):
        message = f"the JWT failed the {error.check!r} check: {message}"
    print(f"{prog}: {masker.text(message)}", file=err)
    hint = _cli_hint(error)
    if hint:
        print(f"  check: {masker.text(hint)}", file=err)


def _print_traceback(error: BaseException, err: TextIO, masker: _Masker) -> None:
    """--debug: the traceback on stderr, with every secret value known to this run masked."""
    import traceback

    err.write(masker.text("".join(traceback.format_exception(type(error), error, error.__traceback__))))


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


def _missing(flag: str, *envs: str) -> ConfigurationError:
    """The error for a value not given: a variable that is set but empty is named as such."""
    empty = [env for env in envs if env in os.environ and not os.environ[env]]
    if empty:
        return ConfigurationError(
            f"{flag} is not given and {empty[0]} is set but empty",
            hint=f"give {flag}, or put the value in {empty[0]} (or unset it)",
        )
    return ConfigurationError(f"{flag} is required" + (f" (or set {envs[0]})" if envs else ""))


def _require(value: str | None, flag: str, env: str | None = None, *, text: bool = False) -> str:
    """``value``, or the error naming ``flag`` and ``env``; ``text`` values are also checked as sent.

    A text value (secret, tenant, token) with surrounding whitespace or a line break is refused
    rather than stripped: SuperOffice's values never have them, so they come from a pasted
    line or a file read with its newline, and a stripped value would no longer be the one given.
    """
    if not value:
        raise _missing(flag, *([env] if env else []))
    if text:
        from ..signing import check_text_value

        check_text_value(value, f"{flag} ({env})" if env else flag)
    return value


def _password(args: argparse.Namespace) -> str | None:
    var = getattr(args, "password_env", None)
    if not var:
        return None
    value = os.environ.get(var)
    if value is None:
        # Not named: users type the password itself here by mistake.
        raise ConfigurationError(
            "the variable named by --password-env is not set (its name is not shown, in case it is the password)",
            hint="--password-env takes the NAME of a variable holding the password, e.g. "
                 "--password-env KEY_PASSWORD after export KEY_PASSWORD=...",
        )
    return value


def _timeout(args: argparse.Namespace) -> tuple[float, float]:
    seconds: float = args.timeout
    if not 0 < seconds < 3600:
        raise ConfigurationError("--timeout must be between 0 and 3600 seconds")
    return (min(5.0, seconds), seconds)


_MAX_DEADLINE = 3600.0


def _deadline(args: argparse.Namespace) -> float:
    """--deadline, checked as the library checks ``deadline=`` but named as the flag."""
    seconds: float = args.deadline
    if not 0 < seconds <= _MAX_DEADLINE:
        raise ConfigurationError(
            "--deadline must be above 0 and at most 3600 seconds", hint="--deadline SECONDS, e.g. --deadline 30"
        )
    return seconds


def _target(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(environment, endpoint) from the flags, else from SUT_SOAP_ENVIRONMENT / SUT_SOAP_ENDPOINT."""
    environment: str | None = args.environment
    endpoint: str | None = args.endpoint
    if environment is None and endpoint is None:
        environment = _env_default("SUT_SOAP_ENVIRONMENT")
        endpoint = None if environment else _env_default("SUT_SOAP_ENDPOINT")
    return environment, endpoint


def _required_target(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """:func:`_target`, refusing neither being given."""
    environment, endpoint = _target(args)
    if environment is None and endpoint is None:
        raise _missing("--environment or --endpoint", "SUT_SOAP_ENVIRONMENT", "SUT_SOAP_ENDPOINT")
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
        return _read_token(value, args.stdin, "--system-user-token")
    return _require(value, what, "SUT_SOAP_SYSTEM_USER_TOKEN", text=True)


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
    parser.add_argument(
        "--protocol", choices=("soap", "rest"), default="soap",
        help="soap (default): the PartnerSystemUserService; rest: the same exchange as JSON at "
        "/Login/api/PartnerSystemUser/Authenticate",
    )


def _add_jwt_keys(parser: argparse.ArgumentParser) -> None:
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--jwks-url", metavar="URL", help="JWKS that signs the JWT (default: the environment's)")
    keys.add_argument("--public-key", metavar="FILE", help="PEM key, certificate or JWKS file for offline checks")


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", metavar="SECONDS", type=float, default=10.0,
        help="read timeout; connecting gets at most 5 s (default 10)",
    )


def _add_deadline(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--deadline", metavar="SECONDS", type=float, default=30.0,
        help=f"seconds {what} may take in all (default 30, at most 3600)",
    )


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

def _throwaway_key() -> RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _load_key(args: argparse.Namespace) -> RSAPrivateKey:
    path = _require(args.private_key, "--private-key", "SUT_SOAP_PRIVATE_KEY")
    return _load_private_key(path, _password(args))


def _load_private_key(source: str | os.PathLike[str], password: str | None) -> RSAPrivateKey:
    """load_private_key, whose permission warnings count only for a file that is a private key.

    The chmod 600 advice is read before the content: for a public key or certificate given by
    mistake (or any file that is refused) it is noise next to the real error.
    """
    import warnings

    from ..keys import KeyFilePermissionWarning, load_private_key

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KeyFilePermissionWarning)
        key = load_private_key(source, password=password)
    for warning in caught:
        warnings.warn(warning.message, stacklevel=2)
    return key


def _masked_claims(claims: dict[str, Any], *, show_ticket: bool) -> dict[str, Any]:
    shown = dict(claims)
    for name in _ALWAYS_MASKED_CLAIMS:
        if name in shown:
            shown[name] = MASK
    if not show_ticket and CLAIM_TICKET in shown:
        shown[CLAIM_TICKET] = MASK
    return shown


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


