"""``verify`` and ``inspect``: validate a JWT offline as the client does, or decode it unverified."""

from __future__ import annotations

import argparse

from ..contract import CLAIM_TICKET
from ._common import (
    _add_context,
    _env_default,
    _masked_claims,
    _missing,
    _read_token,
    _require,
)
from .exitcodes import EXIT_OK

# typing is not imported at run time: see sut_soap.cli's docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO


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

    from ..environments import jwks_url_for
    from ..tokens import JwksKeySource, KeySource, TokenValidator, decode_unverified, key_source_from_public_key

    token = _read_token(args.token, args.stdin)
    args.masker.add(token)
    context = _require(args.context_identifier, "--context-identifier", "SUT_SOAP_CONTEXT_IDENTIFIER", text=True)
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
        raise _missing("a key (--public-key, --jwks-url, --jwks-file or --environment)", "SUT_SOAP_ENVIRONMENT")
    try:
        validator = TokenValidator(source, leeway=args.leeway, expected_serial=args.expected_serial)
        claims = validator.validate(token, context_identifier=context)
    finally:
        if isinstance(source, JwksKeySource):
            source.close()
    header, _ = decode_unverified(token)
    args.masker.add(str(claims.get(CLAIM_TICKET) or ""))
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

    from ..tokens import decode_unverified

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


