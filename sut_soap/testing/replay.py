"""Replay: a client answered from a recording, offline, checking what it sends."""

from __future__ import annotations

import difflib
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, overload
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from sut_soap import errors as _errors
from sut_soap._clock import as_clock
from sut_soap.async_client import AsyncSystemUserClient
from sut_soap.client import SystemUserClient
from sut_soap.contract import CLAIM_TICKET, REST_PATH, SOAP11_ENV, TNS, XSI
from sut_soap.environments import endpoint_for
from sut_soap.errors import (
    ConfigurationError,
    ProtocolError,
    TransportError,
)
from sut_soap.keys import PrivateKeyInput
from sut_soap.safexml import hardened_parser, has_dtd
from sut_soap.testing._raw import _decode_jwt, _element_value, _json_object, _request_values
from sut_soap.testing.exchanges import _PLACEHOLDER, Exchange, RecordedError, Recording, _substitutions
from sut_soap.testing.minting import _shift_times, mint_test_jwt, new_ticket, sign_jwt, stand_in_key
from sut_soap.testing.storage import _fill_body, _fill_json, _fill_text, load_recording
from sut_soap.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    HeaderMap,
    HttpResponse,
)

__all__ = [
    "STAND_IN_CLIENT_SECRET",
    "STAND_IN_SYSTEM_USER_TOKEN",
    "AsyncReplayClient",
    "AsyncReplayTransport",
    "ReplayClient",
    "ReplayMismatch",
    "ReplayTransport",
    "SentRequest",
    "replay_client",
]


_MATCHED_HEADERS = ("SOAPAction", "Content-Type", "Accept")
STAND_IN_CLIENT_SECRET = "sut-soap-replay-client-secret"  # noqa: S105 -- a stand-in, not a secret
STAND_IN_SYSTEM_USER_TOKEN = "sut-soap-replay-system-user-token"  # noqa: S105
_NS_SHORT = {SOAP11_ENV: "soap", TNS: "tns", XSI: "xsi"}


@dataclass(frozen=True, repr=False)
class SentRequest:
    """What the client handed to a :class:`ReplayTransport`."""

    address: str
    body: bytes
    headers: Mapping[str, str]

    def element_text(self, local_name: str) -> str | None:
        """The text of the first element with this local name (any prefix), unescaped."""
        return _element_value(self.body, local_name)

    @property
    def context_identifier(self) -> str | None:
        """The ContextIdentifier header the client sent."""
        return self.element_text("ContextIdentifier")

    @property
    def signed_at(self) -> str | None:
        """The ``yyyyMMddHHmm`` UTC stamp of the signed system token the client sent."""
        signed = self.element_text("SignedSystemToken")
        parts = signed.rsplit(".", 2) if signed else []
        return parts[1] if len(parts) == 3 else None

    def __repr__(self) -> str:
        ctx = self.context_identifier
        return f"SentRequest({self.address!r}, body={len(self.body)} bytes, context_identifier={ctx!r})"


class ReplayMismatch(BaseException):
    """A replay went off script: the client sent something else, or more than was recorded.

    Deliberately not an ``Exception`` (``pytest.fail`` does the same), so that neither the
    client's error boundary nor an ``except Exception`` in the code under test swallows it.
    """




def _split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _short(tag: str) -> str:
    namespace, local = _split_tag(tag)
    prefix = _NS_SHORT.get(namespace)
    if prefix is not None:
        return f"{prefix}:{local}"
    return f"{{{namespace}}}{local}" if namespace else local


def _xml_lines(body: bytes) -> list[tuple[str, str, str]] | None:
    """``(structure, text, local name)`` per element in document order; None if not XML."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return None
    try:
        root = etree.fromstring(body, parser=hardened_parser())
    except (etree.XMLSyntaxError, ValueError):
        return None
    if has_dtd(root):
        return None
    lines: list[tuple[str, str, str]] = []

    def walk(element: Any, depth: int) -> None:
        attributes = "".join(f' {_short(k)}="{v}"' for k, v in sorted(element.attrib.items()))
        text = (element.text or "").strip()
        lines.append(("  " * depth + _short(element.tag) + attributes, text, _split_tag(element.tag)[1]))
        for child in element:
            if isinstance(child.tag, str):
                walk(child, depth + 1)

    walk(root, 0)
    return lines


def _body_lines(body: bytes) -> list[tuple[str, str, str]] | None:
    """A REST body's members, or an envelope's elements, as :func:`_xml_lines` gives them; None if neither."""
    document = _json_object(body)
    if document is None:
        return _xml_lines(body)
    return [(json.dumps(k), v if isinstance(v, str) else json.dumps(v), k) for k, v in document.items()]


def _text_pattern(template: str, values: Mapping[str, str]) -> re.Pattern[str]:
    pieces: list[str] = []
    for index, part in enumerate(_PLACEHOLDER.split(template)):
        if index % 2 == 0:
            pieces.append(re.escape(part))
        elif part in values:
            pieces.append(re.escape(values[part]))
        elif part == "SIGNED_TOKEN":
            token = values.get("SYSTEM_USER_TOKEN")
            lead = re.escape(token) if token else r"(?s:.+)"
            pieces.append(lead + r"\.[0-9]{12}\.[A-Za-z0-9+/]+={0,2}")
        else:
            pieces.append(r"(?s:.+?)")
    return re.compile("".join(pieces))


def _masked(local_name: str, text: str) -> str:
    if local_name == "ApplicationToken":
        return "***" if text else ""
    if local_name == "SignedSystemToken":
        parts = text.rsplit(".", 2)
        return f"***.{parts[1]}.***" if len(parts) == 3 else "*** (not <token>.<yyyyMMddHHmm>.<signature>)"
    return text


def _render(structure: str, text: str) -> str:
    return f"{structure} {json.dumps(text, ensure_ascii=False)}" if text else structure


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _request_diff(
    recorded: Exchange, address: str, body: bytes, headers: Mapping[str, str], values: Mapping[str, str]
) -> str | None:
    """A unified diff between the recorded request and the one sent, or None when they match."""
    template_lines: list[str] = []
    sent_lines: list[str] = []
    ok = True

    def pair(template: str, sent: str, same: bool) -> None:
        nonlocal ok
        ok = ok and same
        template_lines.append(sent if same else template)
        sent_lines.append(sent)

    recorded_path = urlsplit(recorded.url).path
    sent_path = urlsplit(address).path
    pair(f"{recorded.method} {recorded_path}", f"POST {sent_path}", recorded_path.lower() == sent_path.lower())
    for name in _MATCHED_HEADERS:
        expected = _header(recorded.request_headers, name)
        if expected is None:
            continue
        actual = _header(headers, name)
        pair(f"{name}: {expected}", f"{name}: {actual}" if actual is not None else f"({name} not sent)",
             expected == actual)
    template_xml = _body_lines(recorded.request_body or b"")
    sent_xml = _body_lines(body)
    if template_xml is None:
        raise ConfigurationError("the recorded request is not well-formed XML", hint="re-record the exchange")
    if sent_xml is None:
        template_lines += [_render(s, t) for s, t, _ in template_xml]
        sent_lines.append(f"(not well-formed XML, {len(body)} bytes)")
        ok = False
    elif [s for s, _, _ in template_xml] != [s for s, _, _ in sent_xml]:
        template_lines += [_render(s, t) for s, t, _ in template_xml]
        sent_lines += [_render(s, _masked(n, t)) for s, t, n in sent_xml]
        ok = False
    else:
        for (structure, template_text, _), (_, sent_text, local) in zip(template_xml, sent_xml, strict=True):
            same = _text_pattern(template_text, values).fullmatch(sent_text) is not None
            sent_line = _render(structure, _masked(local, sent_text))
            pair(_render(structure, template_text), sent_line, same)
    if ok:
        return None
    diff = difflib.unified_diff(template_lines, sent_lines, "recorded request", "sent request", lineterm="")
    return "\n".join(diff)


class ReplayClient(SystemUserClient):
    """A :class:`~sut_soap.SystemUserClient` answered from a recording; ``replay`` is its transport."""

    replay: ReplayTransport


class AsyncReplayClient(AsyncSystemUserClient):
    """An :class:`~sut_soap.AsyncSystemUserClient` answered from a recording; ``replay`` is its transport."""

    replay: AsyncReplayTransport


class _Replayer:
    """The replay :class:`ReplayTransport` and :class:`AsyncReplayTransport` share; see them for the arguments."""

    def __init__(
        self,
        recording: Recording | str | os.PathLike[str],
        *,
        jwt: str | None = None,
        jwt_key: rsa.RSAPrivateKey | None = None,
        ticket: str | None = None,
        client_secret: str | None = None,
        context_identifier: str | None = None,
        system_user_token: str | None = None,
        signed_token: str | None = None,
        check_request: bool = True,
        repeat: bool = False,
        clock: Callable[[], datetime] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        given = _substitutions(
            jwt=jwt, ticket=ticket, client_secret=client_secret, context_identifier=context_identifier,
            system_user_token=system_user_token, signed_token=signed_token,
        )
        if not isinstance(recording, Recording):
            recording = load_recording(recording, **{k.lower(): v for k, v in given.items()})
        elif given:
            recording = Recording(recording.exchanges, recording.directory, {**recording.substitutions, **given})
        self.recording = recording
        values = recording.substitutions
        for number, exchange in enumerate(recording.exchanges, start=1):
            body = exchange.response_body or b""
            if b"{{SUT_SOAP:JWT}}" in body and "JWT" not in values and jwt_key is None:
                raise ConfigurationError(
                    f"exchange {number} of the recording answers with a redacted JWT",
                    hint="pass jwt= (e.g. mint_test_jwt(key)) or jwt_key= (a test RSA key), "
                    "and give the client that key's public half as public_key=",
                )
        self._jwt_key = jwt_key
        self._check = check_request
        self._repeat = repeat
        self._clock = as_clock(clock).now
        self._lock = threading.Lock()
        self._position = 0
        self.sent: list[SentRequest] = []
        self.responses: list[HttpResponse] = []
        self.mismatches: list[str] = []

    @property
    def remaining(self) -> int:
        """How many recorded exchanges have not been replayed yet."""
        return max(0, len(self.recording.exchanges) - self._position)

    def assert_all_used(self) -> None:
        """Raise :class:`ReplayMismatch` if some recorded exchanges were never requested."""
        if self.remaining:
            raise ReplayMismatch(
                f"{self.remaining} of {len(self.recording.exchanges)} recorded exchanges were never requested"
            )

    def _answer(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str] | None, max_bytes: int | None
    ) -> HttpResponse:
        """Answer a POST with the next recorded exchange after checking it; never touches the network.

        Raises:
            ReplayMismatch: a request that is not a POST (give the client ``public_key=``, as
                :func:`replay_client` does, so the JWT is checked offline), one more request
                than the recording holds, or a request that differs from the recorded one.
        """
        if method != "POST":
            raise ReplayMismatch(
                f"the client tried to reach {method} {url} during a replay; "
                "give the client public_key= (replay_client does) so the JWT is checked offline"
            )
        sent = SentRequest(url, body or b"", dict(headers or {}))
        position = self._next_position(sent)
        exchange = self.recording.exchanges[position]
        if self._check and exchange.request_body is not None:
            self._check_request(exchange, position, sent)
        if exchange.error is not None:
            raise _rebuild_error(exchange.error, url)
        values = self._values(exchange, sent)
        content = _fill_body(exchange.response_body or b"", values)
        cap = min(self.max_response_bytes, max_bytes or self.max_response_bytes)
        if len(content) > cap:
            raise ProtocolError(f"the answer is larger than {cap} bytes; reading stopped", status=exchange.status)
        response = HttpResponse(
            exchange.status or 0,
            HeaderMap({k: _fill_text(v, values) for k, v in exchange.response_headers.items()}),
            content,
            reason=exchange.reason or "",
        )
        with self._lock:
            self.responses.append(response)
        return response

    def _next_position(self, sent: SentRequest) -> int:
        """Keep ``sent``; the index of the exchange that answers it (the last one again when repeating)."""
        exchanges = self.recording.exchanges
        with self._lock:
            self.sent.append(sent)
            position = self._position
            if position < len(exchanges):
                self._position += 1
                return position
        if not (self._repeat and exchanges):
            raise ReplayMismatch(
                f"the client sent request {position + 1}, but the recording "
                f"{self.recording.directory} holds only {len(exchanges)} exchange(s)"
                " (pass repeat=True to answer again with the last one)"
            )
        return len(exchanges) - 1

    def _check_request(self, exchange: Exchange, position: int, sent: SentRequest) -> None:
        """Raise ReplayMismatch, with a diff, when ``sent`` is not the recorded request."""
        diff = _request_diff(exchange, sent.address, sent.body, dict(sent.headers), self.recording.substitutions)
        if diff is not None:
            where = f"{self.recording.directory}, exchange {position + 1}"
            message_text = f"the request the client sent does not match the recording ({where}):\n{diff}"
            self.mismatches.append(message_text)
            raise ReplayMismatch(message_text + "\n(re-record, or pass check_request=False)")

    def _values(self, exchange: Exchange, sent: SentRequest) -> dict[str, str]:
        values = dict(self.recording.substitutions)
        for name, value in _request_values(sent.body).items():
            values.setdefault(name, value)
        body = exchange.response_body or b""
        if "JWT" not in values and b"{{SUT_SOAP:JWT}}" in body and self._jwt_key is not None:
            values.setdefault("TICKET", new_ticket())
            values["JWT"] = self._mint(exchange, values, self._jwt_key)
        if "TICKET" not in values:
            decoded = _decode_jwt(values.get("JWT"))
            ticket = decoded[1].get(CLAIM_TICKET) if decoded else None
            values["TICKET"] = ticket if isinstance(ticket, str) and ticket else new_ticket()
        return values

    def _mint(self, exchange: Exchange, values: Mapping[str, str], key: rsa.RSAPrivateKey) -> str:
        if exchange.jwt_claims is None:
            return mint_test_jwt(
                key,
                context_identifier=values.get("CONTEXT_IDENTIFIER", "Cust12345"),
                ticket=values["TICKET"],
                now=self._clock(),
            )
        claims = _fill_json(dict(exchange.jwt_claims), values)
        header = _fill_json(dict(exchange.jwt_header or {"alg": "RS256", "typ": "JWT"}), values)
        if exchange.recorded_at is not None:
            claims = _shift_times(claims, round((self._clock() - exchange.recorded_at).total_seconds()))
        return sign_jwt(claims, key, header=header)


class ReplayTransport(_Replayer):
    """A :class:`~sut_soap.Transport` that answers from a recording and never opens a socket.

    Use it as ``SystemUserClient(..., transport=ReplayTransport(...))``. ``recording`` is a
    :class:`Recording` or a directory; the keyword values fill placeholders (see
    :func:`load_recording`). The JWT of a recorded success is ``jwt=`` when given, else it is
    signed again with ``jwt_key`` from the recorded claims (times moved forward by the time
    since the recording, measured with ``clock``), or minted by :func:`mint_test_jwt` when no
    claims were recorded. Exchanges are answered in order; ``repeat=True`` answers any further
    request with the last one. ``sent`` keeps every request; ``check_request=False`` turns
    the request check off. Recorded transport failures are raised again, and an answer larger
    than ``max_response_bytes`` fails as it would over the network.
    """

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> HttpResponse:
        """Answer a POST with the next recorded exchange after checking it; never touches the network.

        Raises:
            ReplayMismatch: a request that is not a POST (give the client ``public_key=``, as
                :func:`replay_client` does, so the JWT is checked offline), one more request
                than the recording holds, or a request that differs from the recorded one.
        """
        return self._answer(method, url, body, headers, max_bytes)

    def close(self) -> None:
        """Nothing to release: a replay holds no connection."""


class AsyncReplayTransport(_Replayer):
    """An :class:`~sut_soap.AsyncTransport` that answers from a recording and never opens a socket.

    The asyncio twin of :class:`ReplayTransport`, with the same arguments, checks, diffs,
    recorded failures and attributes (``sent``, ``remaining``, ``assert_all_used``): use it as
    ``AsyncSystemUserClient(..., transport=AsyncReplayTransport(...))``, or call
    ``replay_client(..., asynchronous=True)``. A replayed answer is computed on the event loop
    without waiting for anything (no thread, no socket): the request check, filling the
    placeholders and, when it signs the recorded claims again, one RSA signature (about a
    millisecond).
    """

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> HttpResponse:
        """Answer a POST with the next recorded exchange after checking it, as :meth:`ReplayTransport.request`.

        Raises:
            ReplayMismatch: as for :meth:`ReplayTransport.request`.
        """
        return self._answer(method, url, body, headers, max_bytes)

    async def aclose(self) -> None:
        """Nothing to release: a replay holds no connection."""


def _rebuild_error(error: RecordedError, url: str) -> BaseException:
    module, _, name = error.type.rpartition(".")
    if module == "sut_soap.errors":
        cls = getattr(_errors, name, None)
        if cls is ProtocolError:
            rebuilt: BaseException = cls(error.message, status=error.status, retryable=error.retryable)
        else:
            rebuilt = TransportError(
                error.message, status=error.status, retryable=error.retryable, host=error.host, phase=error.phase
            )
        return rebuilt
    # A failure recorded from an HTTP library (recordings made before the Transport seam)
    # comes back as the TransportError the default transport maps it to, naming its type only.
    host = urlsplit(url).hostname or "the endpoint"
    context = error.context or ""
    if name == "ConnectTimeout":
        return _foreign(f"connecting to {host} timed out", name, host, "connect")
    if "Timeout" in name or "Protocol" in context:
        waited = "the read timeout passed" if "Timeout" in name else "the connection closed"
        return _foreign(
            f"{waited} while waiting for the response headers from {host}; the request may have reached the server",
            name, host, "wait for headers",
        )
    if "Read" in context or name == "ChunkedEncodingError":
        return _foreign(f"the connection broke while reading the response body from {host}", name, host, "body")
    if name in ("ConnectionError", "OSError", "ConnectionResetError", "ConnectionRefusedError"):
        return _foreign(f"cannot connect to {host}", name, host, "connect")
    return TransportError(f"the transport failed for {host}: {name}", retryable=False, host=host)


def _foreign(message: str, name: str, host: str, phase: str) -> TransportError:
    return TransportError(f"{message} (recorded {name})", retryable=True, host=host, phase=phase)


_Recorded = Recording | str | os.PathLike[str]


@overload
def replay_client(
    recording: _Recorded,
    *,
    jwt: str | None = ...,
    public_key: Any = ...,
    jwt_key: rsa.RSAPrivateKey | None = ...,
    ticket: str | None = ...,
    client_secret: str | None = ...,
    context_identifier: str | None = ...,
    system_user_token: str | None = ...,
    private_key: PrivateKeyInput | None = ...,
    endpoint: str | None = ...,
    check_request: bool = ...,
    repeat: bool = ...,
    asynchronous: Literal[False] = ...,
    **client_options: Any,
) -> ReplayClient: ...


@overload
def replay_client(
    recording: _Recorded,
    *,
    jwt: str | None = ...,
    public_key: Any = ...,
    jwt_key: rsa.RSAPrivateKey | None = ...,
    ticket: str | None = ...,
    client_secret: str | None = ...,
    context_identifier: str | None = ...,
    system_user_token: str | None = ...,
    private_key: PrivateKeyInput | None = ...,
    endpoint: str | None = ...,
    check_request: bool = ...,
    repeat: bool = ...,
    asynchronous: Literal[True],
    **client_options: Any,
) -> AsyncReplayClient: ...


@overload
def replay_client(
    recording: _Recorded,
    *,
    jwt: str | None = ...,
    public_key: Any = ...,
    jwt_key: rsa.RSAPrivateKey | None = ...,
    ticket: str | None = ...,
    client_secret: str | None = ...,
    context_identifier: str | None = ...,
    system_user_token: str | None = ...,
    private_key: PrivateKeyInput | None = ...,
    endpoint: str | None = ...,
    check_request: bool = ...,
    repeat: bool = ...,
    asynchronous: bool,
    **client_options: Any,
) -> ReplayClient | AsyncReplayClient: ...


def replay_client(
    recording: _Recorded,
    *,
    jwt: str | None = None,
    public_key: Any = None,
    jwt_key: rsa.RSAPrivateKey | None = None,
    ticket: str | None = None,
    client_secret: str | None = None,
    context_identifier: str | None = None,
    system_user_token: str | None = None,
    private_key: PrivateKeyInput | None = None,
    endpoint: str | None = None,
    check_request: bool = True,
    repeat: bool = False,
    asynchronous: bool = False,
    **client_options: Any,
) -> ReplayClient | AsyncReplayClient:
    """A :class:`~sut_soap.SystemUserClient` that answers from ``recording``, fully offline.

    Without ``jwt=``, a test key (``jwt_key``, else one generated per process) signs the
    recorded claims again and the client validates with its public half. With ``jwt=``, give
    ``public_key=`` to validate it. ``client_secret`` and ``private_key`` default to stand-ins
    (the signature is not checked in a replay); a given ``client_secret``,
    ``context_identifier`` or ``system_user_token`` must match what was recorded. The endpoint
    is the recorded URL, and a recording of the REST endpoint replays with ``protocol="rest"``.
    ``client_options`` go to ``SystemUserClient`` (``clock=``,
    ``leeway=``, ...); ``client.replay`` is the :class:`ReplayTransport`.

    With ``asynchronous=True`` the client is an :class:`AsyncReplayClient` (an
    :class:`~sut_soap.AsyncSystemUserClient`, ``client_options`` going to it) on an
    :class:`AsyncReplayTransport`: the same recording, options, checks and errors, awaited.
    Any recording replays in either client, whichever client made it.
    """
    if jwt is not None and public_key is None:
        raise ConfigurationError("jwt= needs public_key= (the public half of the key that signed it)")
    if jwt is None:
        if public_key is not None and jwt_key is None:
            raise ConfigurationError("public_key= is for validating jwt=; give jwt_key= to sign with your own key")
        jwt_key = jwt_key or stand_in_key()
        public_key = jwt_key.public_key()
    clock: Callable[[], datetime] | None = client_options.get("clock")
    replay_options: dict[str, Any] = {
        "jwt": jwt, "jwt_key": jwt_key, "ticket": ticket, "client_secret": client_secret,
        "context_identifier": context_identifier, "system_user_token": system_user_token,
        "check_request": check_request, "repeat": repeat, "clock": clock,
    }
    transport: ReplayTransport | AsyncReplayTransport = (
        AsyncReplayTransport(recording, **replay_options) if asynchronous
        else ReplayTransport(recording, **replay_options)
    )
    if endpoint is None:
        recorded_urls = [e.url for e in transport.recording.exchanges if e.url.startswith(("http://", "https://"))]
        endpoint = recorded_urls[0] if recorded_urls else endpoint_for("sod")
    if urlsplit(endpoint).path.lower() == REST_PATH.lower():  # recorded over REST: replay it over REST
        client_options.setdefault("protocol", "rest")
    options: dict[str, Any] = {
        "client_secret": client_secret or STAND_IN_CLIENT_SECRET,
        "private_key": private_key if private_key is not None else stand_in_key(),
        "endpoint": endpoint,
        "public_key": public_key,
        **client_options,
    }
    if isinstance(transport, AsyncReplayTransport):
        async_client = AsyncReplayClient(transport=transport, **options)
        async_client.replay = transport
        return async_client
    client = ReplayClient(transport=transport, **options)
    client.replay = transport
    return client
