"""``sign``, ``envelope`` and ``ticket``: sign a system user token, show the request envelope,
and perform the exchange for a validated ticket."""

from __future__ import annotations

import argparse
import os
import re
import time

from ..errors import (
    ConfigurationError,
)
from ._common import (
    _add_context,
    _add_deadline,
    _add_jwt_keys,
    _add_key,
    _add_secret,
    _add_target,
    _add_timeout,
    _add_token,
    _clock_skew,
    _deadline,
    _load_key,
    _masked_claims,
    _Masker,
    _parse_timestamp,
    _read_token,
    _require,
    _required_target,
    _system_user_token,
    _target,
    _throwaway_key,
    _timeout,
)
from .exitcodes import EXIT_OK

# typing is not imported at run time: see sut_soap.cli's docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TextIO

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from ..client import SystemUserClient
    from ..testing.recording import RecordingTransport
    from ..ticket import SystemUserTicket
    from ..transport import HttpTransport, Response, Transport


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
    _add_jwt_keys(ticket)
    _add_timeout(ticket)
    _add_deadline(ticket, "the exchange, a JWKS fetch included,")
    ticket.add_argument(
        "--json", action="store_true",
        help="print one JSON object: ticket, context_identifier, serial, webapi_url, netserver_url, "
        "expires_at, claims (the system_token claim masked)",
    )
    ticket.add_argument("-v", "--verbose", action="store_true", help="show each step on stderr (secrets masked)")
    ticket.add_argument(
        "--jwt-out", metavar="FILE",
        help="also write the JWT of the answer to FILE (mode 0600, replaced whole), for `sut-soap verify` "
        "or `inspect`; written also when the JWT fails validation",
    )
    ticket.add_argument(
        "--record", metavar="DIR",
        help="also save the exchange, secrets replaced by placeholders, for `sut-soap replay DIR` "
        "(an existing recording is not overwritten)",
    )


def _cmd_sign(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..signing import sign_system_user_token

    token = _system_user_token(args)
    args.masker.add(token)
    at = _parse_timestamp(args.timestamp)
    key = _load_key(args)
    print(sign_system_user_token(token, key, at=at), file=out)
    return EXIT_OK


def _signed_minute(signed: str) -> str | None:
    parts = signed.rsplit(".", 2)
    if len(parts) == 3 and len(parts[1]) == 12 and parts[1].isdigit():
        return parts[1]
    return None


_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _signed_token_problem(signed: str) -> str | None:
    """What makes ``signed`` not ``<token>.<yyyyMMddHHmm>.<base64 signature>``, or None."""
    from datetime import datetime

    parts = signed.rsplit(".", 2)
    if len(parts) != 3:
        return "it does not have a timestamp and a signature after the token"
    token, stamp, signature = parts
    if not token:
        return "the system user token before the timestamp is empty"
    if not re.fullmatch(r"[0-9]{12}", stamp):
        return "the timestamp is not 12 digits (yyyyMMddHHmm, UTC)"
    try:
        datetime.strptime(stamp, "%Y%m%d%H%M")
    except ValueError:
        return "the timestamp is not a valid minute (yyyyMMddHHmm, UTC)"
    if not signature or not _BASE64.fullmatch(signature):
        return "the signature is not standard Base64"
    return None


def _read_signed_token(args: argparse.Namespace) -> str:
    """--signed-token (``-`` for stdin), refused unless it has the shape the service expects."""
    signed = _read_token(args.signed_token, args.stdin, "--signed-token")
    args.masker.add(signed)
    problem = _signed_token_problem(signed)
    if problem is not None:
        raise ConfigurationError(
            f"--signed-token is not <system user token>.<yyyyMMddHHmm>.<base64 signature>: {problem}",
            hint="pass the output of `sut-soap sign`, or sign here with --system-user-token and --private-key",
        )
    return signed


def _cmd_envelope(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..client import SystemUserClient
    from ..signing import sign_system_user_token

    secret = _require(args.client_secret, "--client-secret", "SUT_SOAP_CLIENT_SECRET", text=True)
    args.masker.add(secret)
    context = _require(args.context_identifier, "--context-identifier", "SUT_SOAP_CONTEXT_IDENTIFIER", text=True)
    environment, endpoint = _target(args)
    if args.signed_token is not None:
        if args.timestamp is not None:
            raise ConfigurationError("--timestamp applies only when signing here; --signed-token is already signed")
        signed = _read_signed_token(args)
        key: RSAPrivateKey = _throwaway_key()  # the client needs a key; building an envelope never uses it
    else:
        token = _system_user_token(args, "--system-user-token (or --signed-token)")
        args.masker.add(token)
        key = _load_key(args)
        signed = sign_system_user_token(token, key, at=_parse_timestamp(args.timestamp))
        args.masker.add(signed)
    with SystemUserClient(
        client_secret=secret, private_key=key,
        environment=environment if environment or endpoint else "online", endpoint=endpoint, protocol=args.protocol,
    ) as client:
        body, headers = client.build_envelope(context_identifier=context, signed_system_token=signed)
        url = client.endpoint if environment or endpoint else None
    print(f"POST {url or '<the endpoint: give --environment or --endpoint>'} HTTP/1.1", file=err)
    for name, value in headers.items():
        print(f"{name}: {value}", file=err)
    print(f"Content-Length: {len(body)}", file=err)
    notes = ["nothing was sent", f"the token is signed for UTC minute {signed.rsplit('.', 2)[1]}"]
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


def _print_prefixed(err: TextIO, prefix: str, text: str) -> None:
    for line in text.splitlines() or [""]:
        print(prefix + line, file=err)


_TOKEN_TEXT = re.compile(
    r"<(?:[\w.-]+:)?(?:SignedSystemToken|Token)(?:\s[^>]*)?>([^<]+)<"
    r'|"(?i:SignedSystemToken|Token)"\s*:\s*"([^"\\]+)"'  # a REST body's member (escaped values are masked anyway)
)


class _ShowingTransport:
    """A transport that shows what goes through ``inner``: request line, envelopes, timing."""

    def __init__(self, inner: Transport, masker: _Masker, step: Callable[[str], None], err: TextIO) -> None:
        self.inner = inner
        self._masker = masker
        self._step = step
        self._err = err

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> Response:
        """Send through the inner transport, printing the request before and the answer after."""
        from ..transport import call_transport

        self._show_request(method, url, body, headers)
        started = time.perf_counter()
        response = call_transport(
            self.inner, method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes
        )
        received = time.time()
        for found in _TOKEN_TEXT.findall(response.content.decode("utf-8", errors="replace")):
            self._masker.add(*found)
        self._step(f"HTTP {response.status_code} in {(time.perf_counter() - started) * 1000:.0f} ms")
        if method != "POST":
            self._step(f"{len(response.content)} bytes")
            return response
        for name in _SHOWN_RESPONSE_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                note = _clock_note(value, received) if name == "Date" else ""
                print(f"< {name}: {self._masker.text(value)}{note}", file=self._err)
        _print_prefixed(self._err, "< ", self._masker.envelope(response.content))
        return response

    def _show_request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str] | None) -> None:
        for found in _TOKEN_TEXT.findall((body or b"").decode("utf-8", errors="replace")):
            value = found[0] or found[1]
            self._masker.add(value)
            minute = _signed_minute(value)
            if minute:
                self._step(f"signed the system user token for UTC minute {minute}")
        self._step(f"{method} {url}")
        if method == "POST":
            for name, value in (headers or {}).items():
                print(f"> {name}: {value}", file=self._err)
            _print_prefixed(self._err, "> ", self._masker.envelope(body or b""))

    def prepare(self, urls: Any, *, allow_insecure_tls: bool = False) -> None:
        """Let the inner transport check its TLS policy for ``urls``."""
        prepare = getattr(self.inner, "prepare", None)
        if callable(prepare):
            prepare(urls, allow_insecure_tls=allow_insecure_tls)

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()


class _TicketTransport:
    """ticket's innermost transport: remembers the JWT of the answer.

    The JWT is what --jwt-out writes, also when the JWT then fails validation, so that
    ``verify`` can show why.
    """

    def __init__(self, inner: HttpTransport, protocol: str = "soap") -> None:
        self.inner = inner
        self.protocol = protocol
        self.jwt: str | None = None

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> Response:
        """Send through the inner transport; keep the Token of a SOAP or REST answer."""
        from ..errors import SutSoapError

        if self.protocol == "rest":
            from ..rest import parse_answer
        else:
            from ..soap import parse_answer

        response = self.inner.request(method, url, body=body, headers=headers, deadline=deadline, max_bytes=max_bytes)
        if method == "POST":
            try:
                self.jwt = parse_answer(response).token
            except SutSoapError:
                self.jwt = None
        return response

    def prepare(self, urls: Any, *, allow_insecure_tls: bool = False) -> None:
        """Let the inner transport check its TLS policy for ``urls``."""
        self.inner.prepare(urls, allow_insecure_tls=allow_insecure_tls)

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()


def _recording_transport(
    directory: str, inner: Transport | None, timeout: tuple[float, float], *, secret: str, token: str, context: str
) -> RecordingTransport:
    try:
        from ..testing.recording import RecordingTransport
    except ImportError:
        raise ConfigurationError("--record is not available in this installation of sut-soap") from None
    return RecordingTransport(
        directory, timeout=timeout, transport=inner, client_secret=secret, system_user_token=token,
        context_identifier=context, note="sut-soap ticket --record",
    )


def _write_private_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, whole or not at all (a temporary file, then a rename)."""
    import contextlib
    import tempfile

    target = os.path.abspath(path)
    temp: str | None = None
    try:
        descriptor, temp = tempfile.mkstemp(prefix=".sut-soap-", suffix=".tmp", dir=os.path.dirname(target))
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:  # mkstemp creates it 0600
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as exc:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        raise ConfigurationError(
            f"cannot write --jwt-out {path!r}: {exc.strerror or type(exc).__name__}",
            hint="the directory of the file and its permissions",
        ) from None


def _after_exchange(
    args: argparse.Namespace, shown: _TicketTransport, recorder: RecordingTransport | None, err: TextIO, *, failed: bool
) -> None:
    """Say where --record and --jwt-out wrote. After a failure, a file that cannot be written is a warning."""
    import warnings

    if recorder is not None and recorder.saved:
        print(f"sut-soap: recorded {len(recorder.saved)} file(s) in {args.record}; "
              f"replay them with: sut-soap replay {args.record}", file=err)
    if args.jwt_out and shown.jwt:
        args.masker.add(shown.jwt)
        try:
            _write_private_text(args.jwt_out, shown.jwt + "\n")
        except ConfigurationError as error:
            if not failed:
                raise
            warnings.warn(f"{error.message}", stacklevel=2)
            return
        print(f"sut-soap: the JWT was written to {args.jwt_out} (mode 0600)", file=err)


def _ticket_client(
    args: argparse.Namespace, secret: str, key: RSAPrivateKey, transport: Transport, deadline: float
) -> SystemUserClient:
    from ..client import SystemUserClient

    environment, endpoint = _required_target(args)
    return SystemUserClient(
        client_secret=secret, private_key=key, environment=environment, endpoint=endpoint,
        jwks_url=args.jwks_url, public_key=args.public_key, timeout=_timeout(args), deadline=deadline,
        transport=transport, protocol=args.protocol,
    )


def _cmd_ticket(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import json

    from ..errors import SutSoapError
    from ..keys import public_key_fingerprint
    from ..transport import HttpTransport

    context = _require(args.context_identifier, "--context-identifier", "SUT_SOAP_CONTEXT_IDENTIFIER", text=True)
    token = _system_user_token(args)
    secret = _require(args.client_secret, "--client-secret", "SUT_SOAP_CLIENT_SECRET", text=True)
    args.masker.add(token, secret)
    _required_target(args)
    timeout = _timeout(args)
    deadline = _deadline(args)

    def step(text: str) -> None:
        if args.verbose:
            print(f"* {args.masker.text(text)}", file=err)

    key = _load_key(args)
    step(f"private key: RSA {key.key_size} bits, public key {public_key_fingerprint(key)}")
    shown = _TicketTransport(HttpTransport(timeout=timeout, deadline=deadline), args.protocol)
    transport: Transport = _ShowingTransport(shown, args.masker, step, err) if args.verbose else shown
    recorder = None
    if args.record:
        recorder = _recording_transport(args.record, transport, timeout, secret=secret, token=token, context=context)
        transport = recorder
        step(f"recording to {args.record}")
    try:
        with _ticket_client(args, secret, key, transport, deadline) as client:
            step(f"endpoint {client.endpoint}")
            step(f"JWT keys from {client.jwks_url or args.public_key}")
            step(f"exchanging for tenant {context}")
            ticket = client.authenticate(context_identifier=context, system_user_token=token)
    except SutSoapError:
        _after_exchange(args, shown, recorder, err, failed=True)
        raise
    args.masker.add(ticket.token)
    _after_exchange(args, shown, recorder, err, failed=False)
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
