"""``doctor``: check endpoint, TLS, SOAP (or REST), clock, JWKS and keys without a tenant."""

from __future__ import annotations

import argparse

from ..errors import (
    ConfigurationError,
    ProtocolError,
    SoapFaultError,
    TokenValidationError,
    TransportError,
)
from ._common import (
    _CLOCK_FAIL,
    _CLOCK_WARN,
    _MAX_READ,
    _add_deadline,
    _add_key,
    _add_target,
    _add_timeout,
    _clock_skew,
    _deadline,
    _load_key,
    _Masker,
    _missing,
    _target,
    _timeout,
)
from .exitcodes import EXIT_OK, EXIT_TRANSPORT, EXIT_USAGE

# typing is not imported at run time: see sut_soap.cli's docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

    from ..transport import Response, Transport


def _args_doctor(doctor: argparse.ArgumentParser) -> None:
    _add_target(doctor)
    doctor.add_argument("--jwks-url", metavar="URL", help="JWKS to check (default: the environment's)")
    _add_key(doctor)
    doctor.add_argument(
        "--public-key", metavar="FILE",
        help="the partner public key or certificate registered for the application (PEM, DER, .NET XML)",
    )
    _add_timeout(doctor)
    _add_deadline(doctor, "each request")


class _Fetched:
    """What doctor keeps of one HTTP exchange: the answer, how long it took, when it arrived."""

    def __init__(self, response: Response, elapsed: float, received_at: float) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.content
        self.tls_version: str | None = getattr(response, "tls_version", None)
        self.elapsed = elapsed
        self.received_at = received_at


def _fetch(
    transport: Transport, method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> _Fetched:
    """One request through the library's transport: no redirects, 1 MiB at most, its deadline."""
    import time

    from ..transport import call_transport

    started = time.perf_counter()
    response = call_transport(transport, method, url, body=body, headers=headers)
    return _Fetched(response, time.perf_counter() - started, time.time())


def _load_partner_public_key(path: str) -> RSAPublicKey:
    """The partner's public key from PEM/DER key or certificate, a JWK, or .NET XML (Modulus, Exponent)."""
    import base64
    import binascii

    from cryptography.hazmat.primitives.asymmetric import rsa
    from lxml import etree

    from ..safexml import hardened_parser, name_of
    from ..tokens import key_source_from_public_key

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

    REMOTE = ("endpoint", "tls", "soap", "rest", "jwks")

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

    from ..environments import (
        endpoint_for,
        jwks_url_for,
        normalise_environment,
        rest_endpoint_for,
        validate_endpoint,
    )

    environment, endpoint = _target(args)
    if environment is not None:
        environment = normalise_environment(environment)
        endpoint = rest_endpoint_for(environment) if args.protocol == "rest" else endpoint_for(environment)
        jwks_url = args.jwks_url or jwks_url_for(environment)
    elif endpoint is not None:
        endpoint = validate_endpoint(endpoint)
        parts = urlsplit(endpoint)
        jwks_url = args.jwks_url or f"{parts.scheme}://{parts.netloc}/login/.well-known/jwks"
    else:
        raise _missing("--environment or --endpoint", "SUT_SOAP_ENVIRONMENT", "SUT_SOAP_ENDPOINT")
    jwks_url = validate_endpoint(jwks_url, what="--jwks-url")
    timeout = _timeout(args)
    deadline = _deadline(args)
    from ..transport import HttpTransport

    print(f"sut-soap doctor: {endpoint}", file=err)
    report = _Report(out, args.masker)

    transport = HttpTransport(timeout=timeout, deadline=deadline)
    try:
        transport.prepare((endpoint, jwks_url))
        _doctor_remote(report, transport, endpoint, jwks_url, rest=args.protocol == "rest")
    finally:
        transport.close()

    # private key, key pair
    private_key = _doctor_private_key_line(report, args)
    _doctor_key_pair_line(report, args, private_key)

    counts = report.counts
    summary = ", ".join(f"{counts[s]} {s}" for s in ("OK", "WARN", "FAIL", "SKIP") if counts[s])
    verdict = f"failed: {', '.join(report.failed)}" if report.failed else "nothing failed"
    print(f"sut-soap doctor: {summary}; {verdict}", file=err)
    return report.exit_code()


def _doctor_remote(report: _Report, transport: Transport, endpoint: str, jwks_url: str, *, rest: bool = False) -> None:
    """The endpoint, tls, soap (or rest), clock and jwks lines, each from one request through ``transport``."""
    from urllib.parse import urlsplit

    from ..environments import is_loopback_host

    parse: Callable[..., Any]
    if rest:
        from .. import rest as rest_layer

        body, headers = rest_layer.probe_request()
        parse, show = rest_layer.parse_answer, _doctor_rest_line
    else:
        from .. import soap as soap_layer

        body, headers = soap_layer.probe_request(endpoint)
        parse, show = soap_layer.parse_answer, _doctor_soap_line
    exchange = "rest" if rest else "soap"

    get: _Fetched | None = None
    https = urlsplit(endpoint).scheme == "https"
    host = urlsplit(endpoint).hostname or ""
    try:
        get = _fetch(transport, "GET", endpoint)
    except (TransportError, ProtocolError) as error:
        report.line("FAIL", "endpoint", f"GET {endpoint}: {error.message}")
        if not https:
            report.line("SKIP", "tls", "(http on loopback)")
        elif getattr(error, "phase", None) == "TLS":
            # A refused handshake is the certificate's or the CA bundle's; a slow one is the network's.
            advice = "" if error.retryable else (
                ": check the system CA bundle (REQUESTS_CA_BUNDLE) and any TLS-intercepting proxy"
            )
            report.line("FAIL", "tls", f"{error.message}{advice}")
        else:
            report.line("SKIP", "tls", "(no connection)")
    else:
        _doctor_endpoint_line(report, get)
        if https:
            version = f" ({get.tls_version})" if get.tls_version else ""
            report.line("OK", "tls", f"certificate verified for {host}{version}")
        else:
            report.line("SKIP", "tls", "(http on loopback)" if is_loopback_host(host) else "(http)")

    post: _Fetched | None = None
    if get is None:
        report.line("SKIP", exchange, "(endpoint unreachable)")
    else:
        try:
            post = _fetch(transport, "POST", endpoint, body=body, headers=headers)
        except (TransportError, ProtocolError) as error:
            report.line("FAIL", exchange, f"POST of the probe: {error.message}")
        else:
            show(report, post, parse)

    dated = next((f for f in (get, post) if f is not None and f.headers.get("Date")), None)
    if dated is None:
        report.line("SKIP" if get is None else "WARN", "clock",
                    "(endpoint unreachable)" if get is None else "no Date header in the answer; cannot compare")
    else:
        _doctor_clock_line(report, dated)

    try:
        fetched = _fetch(transport, "GET", jwks_url, headers={"Accept": "application/json"})
    except (TransportError, ProtocolError) as error:
        report.line("FAIL", "jwks", f"GET {jwks_url}: {error.message}")
    else:
        _doctor_jwks_line(report, jwks_url, fetched)


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
    _probe_answer_line(report, "soap", "SOAP 1.1 AuthenticationResponse", answer)


def _doctor_rest_line(report: _Report, post: _Fetched, parse_answer: Callable[..., Any]) -> None:
    try:
        answer = parse_answer(post)
    except (TransportError, ProtocolError) as error:
        report.line("FAIL", "rest", f"the probe got no REST answer: {error.message}")
        return
    _probe_answer_line(report, "rest", "JSON AuthenticationResponse", answer)


def _probe_answer_line(report: _Report, check: str, what: str, answer: Any) -> None:
    """The verdict on an answer to the dummy probe: rejected is right, accepted is suspicious."""
    if answer.is_successful:
        report.line("WARN", check, "the service ACCEPTED a dummy probe: is this really SuperOffice?")
    else:
        reason = (answer.error_message or "no ErrorMessage")[:120]
        report.line("OK", check, f"{what}; the dummy probe was rejected as expected ({reason})")


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

    from ..tokens import key_source_from_public_key

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

    from ..keys import KeyFilePermissionWarning, public_key_fingerprint

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
    from ..keys import public_key_fingerprint

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


