"""The validated result of an exchange: a system user ticket for one tenant.

The ticket (``7T:...``) is the credential for the tenant's APIs: REST calls send
``Authorization: SOTicket <ticket>`` and ``SO-AppToken: <client secret>``. SuperOffice keeps
a ticket alive for 6 hours after its last use; ``expires_at`` is the expiry of the JWT that
carried it, which is minutes, not the ticket's own lifetime.
"""

from __future__ import annotations

import base64
import json
import sys
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, NamedTuple

from .contract import (
    CLAIM_ASSOCIATE_ID,
    CLAIM_CTX,
    CLAIM_EMAIL,
    CLAIM_IS_ADMINISTRATOR,
    CLAIM_NETSERVER_URL,
    CLAIM_PREFIX,
    CLAIM_SERIAL,
    CLAIM_SYSTEM_TOKEN,
    CLAIM_TICKET,
    CLAIM_UPN,
    CLAIM_WEBAPI_URL,
    ISSUER,
)

__all__ = ["SystemUserTicket"]


# Claim-name layouts seen so far, shared by every ticket whose JWT had the same names in the same
# order (one per issuer in practice); bounded, because the names come from the network.
_MAX_LAYOUTS = 256


class _Layout(NamedTuple):
    names: tuple[str, ...]
    positions: dict[str, int]


_layouts: dict[tuple[str, ...], _Layout] = {}


def _layout_of(names: tuple[str, ...]) -> _Layout:
    layout = _layouts.get(names)
    if layout is None:
        interned = tuple(sys.intern(name) if type(name) is str else name for name in names)
        layout = _Layout(interned, {name: position for position, name in enumerate(interned)})
        if len(_layouts) < _MAX_LAYOUTS:
            _layouts[interned] = layout
    return layout


class _Claims(Mapping[str, Any]):
    """A ticket's claims, read-only: its own values in a tuple, the names shared between tickets.

    A dict of 15 claims with their own name strings costs about 2 KiB per ticket; this costs
    the values and a tuple. Equal to any mapping with the same items, as the dict was.
    """

    __slots__ = ("_layout", "_values")

    def __init__(self, claims: Mapping[str, Any]) -> None:
        self._layout = _layout_of(tuple(claims))
        self._values = tuple(claims.values())

    def __getitem__(self, name: str) -> Any:
        return self._values[self._layout.positions[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout.names)

    def __len__(self) -> int:
        return len(self._values)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Claims, (dict(self),))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


# A kept JWT's payload is deflated against this preset dictionary: a SuperOffice payload's
# claim names, issuer and URL shapes, so only a tenant's own values cost bytes (an 890-byte
# payload deflates to about 150). Process-internal: pickles and stores carry the JWT itself.
_ZDICT = json.dumps(
    {
        "iss": ISSUER, "aud": "spn:1234567", "iat": 1700000000, "nbf": 1700000000, "exp": 1700000300,
        CLAIM_CTX: "Cust12345", CLAIM_SERIAL: "1234567", CLAIM_TICKET: "7T:",
        CLAIM_WEBAPI_URL: "https://sod.superoffice.com/Cust12345/api/",
        CLAIM_NETSERVER_URL: "https://sod.superoffice.com/Cust12345/Remote/Services88/",
        CLAIM_ASSOCIATE_ID: "5", CLAIM_IS_ADMINISTRATOR: "False", CLAIM_SYSTEM_TOKEN: "Sync-",
        CLAIM_EMAIL: "system.user@", CLAIM_UPN: "SystemUser@", CLAIM_PREFIX: "",
    },
    separators=(",", ":"),
).encode("utf-8")

# Raw deflate with a 4 KiB window (room for the dictionary and a payload) and a small memory
# level: the compressor's state stays a few KiB, which keeps deflating a payload near 10 us
# (the defaults' 380 KiB of state cost over 100 us); compression stays the same.
_WBITS = -12

# Encoded JWT headers seen so far, shared by every kept JWT with the same one (one per issuer
# key in practice); bounded, because they come from the network.
_MAX_HEADERS = 256
_headers: dict[str, str] = {}


def _shared_header(header: str) -> str:
    shared = _headers.get(header)
    if shared is None:
        shared = header
        if len(_headers) < _MAX_HEADERS:
            _headers[header] = header
    return shared


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _JwtClaims(Mapping[str, Any]):
    """The claims of a ticket's own validated JWT, decoded from that JWT when first read, then kept.

    The client builds tickets this way, and the ticket's ``token`` reads the JWT from here, so
    a cached ticket holds its JWT once, compactly: the header shared with other tickets, the
    signature as bytes, the payload deflated (base64url is canonical in a validated JWT, so
    :meth:`token` re-encodes it exactly; a JWT that would not come back byte for byte is kept
    as it came). Its claims are not held a second time until someone reads them.
    """

    __slots__ = ("_decoded", "_header", "_packed", "_split")

    def __init__(self, token: str) -> None:
        self._decoded: _Claims | None = None
        self._header, self._packed, self._split = token, b"", -1
        try:
            header, payload, signature = token.split(".")
            packed_signature = _b64decode(signature)
            deflate = zlib.compressobj(9, zlib.DEFLATED, _WBITS, 4, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
            packed = packed_signature + deflate.compress(_b64decode(payload)) + deflate.flush()
        except ValueError:  # not three base64url segments (binascii.Error is a ValueError)
            return
        self._header, self._packed, self._split = _shared_header(header), packed, len(packed_signature)
        if self.token() != token:  # not canonical: keep it as it came
            self._header, self._packed, self._split = token, b"", -1

    def _payload(self) -> bytes:
        inflate = zlib.decompressobj(_WBITS, _ZDICT)
        return inflate.decompress(self._packed[self._split :]) + inflate.flush()

    def token(self) -> str:
        """The JWT, exactly as it was given."""
        if self._split < 0:
            return self._header
        return f"{self._header}.{_b64encode(self._payload())}.{_b64encode(self._packed[: self._split])}"

    def _claims(self) -> _Claims:
        decoded = self._decoded
        if decoded is None:
            data = self._payload() if self._split >= 0 else _b64decode(self._header.split(".")[1])
            decoded = self._decoded = _Claims(json.loads(data.decode("utf-8")))
        return decoded

    def __getitem__(self, name: str) -> Any:
        return self._claims()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._claims())

    def __len__(self) -> int:
        return len(self._claims())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Claims, (dict(self),))

    def __repr__(self) -> str:
        return repr(self._claims())


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _optional_int(value: Any) -> int | None:
    text = _optional_str(value)
    if text is None or isinstance(value, bool):
        return None
    try:
        return int(text)
    except ValueError:
        return None


@dataclass(frozen=True, repr=False, slots=True)
class SystemUserTicket:
    """A tenant's system user ticket and what the validated JWT said about the tenant.

    Frozen, and safe to share between threads. ``repr`` and ``str`` mask the ticket and leave
    out the JWT; equality ignores ``claims`` and ``token``. Slotted, and the claims are kept as
    a tuple of values under claim names shared by all tickets, since a process may cache tens of
    thousands of tickets.

    Attributes:
        ticket: the ``7T:...`` credential for the tenant's APIs: a secret.
        context_identifier: the tenant, such as ``Cust12345`` (the JWT's ``ctx`` claim).
        serial: the tenant database's serial number.
        webapi_url: base URL of the tenant's REST API, or None when the JWT has none.
        netserver_url: base URL of the tenant's NetServer SOAP services, or None.
        associate_id: the system user's associate id, or None when absent or not an integer.
        expires_at: when the JWT that carried the ticket expires (UTC); minutes away, not the
            ticket's own lifetime of 6 hours after its last use.
        obtained_at: when the exchange started, timezone-aware; the ticket's age counts from it.
        claims: every claim of the JWT, a read-only mapping. Holds the ticket and may hold the
            system user token (``system_token``): never log it whole. A ticket the client
            obtained decodes them from its JWT when first read (a few microseconds, once).
        token: the raw JWT, a secret; ``""`` for a ticket read back from a shared store. A
            ticket the client obtained keeps it compactly and rebuilds the exact string when
            read (a few microseconds): read ``ticket`` on hot paths, not ``token``.
    """

    ticket: str
    context_identifier: str
    serial: str
    webapi_url: str | None
    netserver_url: str | None
    associate_id: int | None
    expires_at: datetime
    obtained_at: datetime
    claims: Mapping[str, Any] = field(compare=False, hash=False)
    token: str = field(compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.claims, (_Claims, _JwtClaims)):
            object.__setattr__(self, "claims", _Claims(self.claims))

    @classmethod
    def from_claims(cls, token: str, claims: Mapping[str, Any], *, obtained_at: datetime) -> SystemUserTicket:
        """Build a ticket from the claims of a JWT that :class:`~sut_soap.tokens.TokenValidator` accepted.

        The claims are not checked again: pass only what the validator returned (or what a
        ticket of yours had). Raises ``KeyError`` when the ticket, ``ctx``, serial or ``exp``
        claim is missing, ``ValueError`` or ``TypeError`` when ``exp`` is not a number.
        """
        return cls._build(token, claims, _Claims(claims), obtained_at, str(claims[CLAIM_CTX]))

    @classmethod
    def _from_validated_jwt(
        cls, token: str, claims: Mapping[str, Any], *, context_identifier: str, obtained_at: datetime
    ) -> SystemUserTicket:
        """As :meth:`from_claims`, for ``claims`` that are exactly the payload of ``token``.

        The ticket then keeps only the JWT and the fields, and decodes ``claims`` from the JWT
        when they are first read: the client's own path, right after validation. The ``ctx``
        claim equals ``context_identifier`` (the validator checked it): the caller's string is
        kept rather than a copy per ticket.
        """
        kept = _JwtClaims(token)
        ticket = cls._build(token, claims, kept, obtained_at, context_identifier)
        _TOKEN_SLOT.__set__(ticket, kept)  # the JWT is read back from the claims: not kept twice
        return ticket

    @classmethod
    def _build(
        cls, token: str, claims: Mapping[str, Any], kept: Mapping[str, Any], obtained_at: datetime, context: str
    ) -> SystemUserTicket:
        return cls(
            ticket=str(claims[CLAIM_TICKET]),
            context_identifier=context,
            serial=str(claims[CLAIM_SERIAL]),
            webapi_url=_optional_str(claims.get(CLAIM_WEBAPI_URL)),
            netserver_url=_optional_str(claims.get(CLAIM_NETSERVER_URL)),
            associate_id=_optional_int(claims.get(CLAIM_ASSOCIATE_ID)),
            expires_at=datetime.fromtimestamp(float(claims["exp"]), tz=timezone.utc),
            obtained_at=obtained_at,
            claims=kept,
            token=token,
        )

    def rest_headers(self, client_secret: str) -> dict[str, str]:
        """Return the HTTP headers that authenticate a REST call to the tenant's web API.

        ``{"Authorization": "SOTicket <ticket>", "SO-AppToken": <client secret>}``: both values
        are secrets, so never log the result. The client secret is not kept in the ticket,
        hence the argument.
        """
        return {"Authorization": f"SOTicket {self.ticket}", "SO-AppToken": client_secret}

    def __getstate__(self) -> dict[str, Any]:
        """The fields for pickle and copy, the read-only claims as a plain dict."""
        state = {item.name: getattr(self, item.name) for item in fields(self)}
        state["claims"] = dict(self.claims)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore the fields from :meth:`__getstate__`; the claims become read-only again."""
        for name, value in state.items():
            object.__setattr__(self, name, _Claims(value) if name == "claims" else value)

    def __repr__(self) -> str:
        return (
            f"SystemUserTicket(ticket='***', context_identifier={self.context_identifier!r}, "
            f"serial={self.serial!r}, webapi_url={self.webapi_url!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, obtained_at={self.obtained_at.isoformat()!r})"
        )

    __str__ = __repr__


# ``token`` reads the slot the dataclass made for it: a str as given, or, for a ticket the client
# built, the ticket's own _JwtClaims, which holds the JWT compactly and re-encodes it on access.
_TOKEN_SLOT: Any = SystemUserTicket.__dict__["token"]


def _get_token(ticket: SystemUserTicket) -> str:
    value = _TOKEN_SLOT.__get__(ticket, SystemUserTicket)
    return value if type(value) is str else value.token()


def _set_token(ticket: SystemUserTicket, value: str) -> None:
    _TOKEN_SLOT.__set__(ticket, value)


setattr(SystemUserTicket, "token", property(_get_token, _set_token, doc="The raw JWT, a secret; see the class."))  # noqa: B010
