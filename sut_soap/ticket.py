"""The validated result of an exchange: a system user ticket for one tenant.

The ticket (``7T:...``) is the credential for the tenant's APIs: REST calls send
``Authorization: SOTicket <ticket>`` and ``SO-AppToken: <client secret>``. SuperOffice keeps
a ticket alive for 6 hours after its last use; ``expires_at`` is the expiry of the JWT that
carried it, which is minutes, not the ticket's own lifetime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from .contract import (
    CLAIM_ASSOCIATE_ID,
    CLAIM_CTX,
    CLAIM_NETSERVER_URL,
    CLAIM_SERIAL,
    CLAIM_TICKET,
    CLAIM_WEBAPI_URL,
)

__all__ = ["SystemUserTicket"]


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


@dataclass(frozen=True, repr=False)
class SystemUserTicket:
    """A tenant's system user ticket and what the validated JWT said about the tenant.

    Frozen, and safe to share between threads. ``repr`` and ``str`` mask the ticket and leave
    out the JWT; equality ignores ``claims`` and ``token``.

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
        claims: every claim of the JWT, read-only. Holds the ticket and may hold the system
            user token (``system_token``): never log it whole.
        token: the raw JWT, a secret; ``""`` for a ticket read back from a shared store.
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

    @classmethod
    def from_claims(cls, token: str, claims: Mapping[str, Any], *, obtained_at: datetime) -> SystemUserTicket:
        """Build a ticket from the claims of a JWT that :class:`~sut_soap.tokens.TokenValidator` accepted.

        The claims are not checked again: pass only what the validator returned (or what a
        ticket of yours had). Raises ``KeyError`` when the ticket, ``ctx``, serial or ``exp``
        claim is missing, ``ValueError`` or ``TypeError`` when ``exp`` is not a number.
        """
        return cls(
            ticket=str(claims[CLAIM_TICKET]),
            context_identifier=str(claims[CLAIM_CTX]),
            serial=str(claims[CLAIM_SERIAL]),
            webapi_url=_optional_str(claims.get(CLAIM_WEBAPI_URL)),
            netserver_url=_optional_str(claims.get(CLAIM_NETSERVER_URL)),
            associate_id=_optional_int(claims.get(CLAIM_ASSOCIATE_ID)),
            expires_at=datetime.fromtimestamp(float(claims["exp"]), tz=timezone.utc),
            obtained_at=obtained_at,
            claims=MappingProxyType(dict(claims)),
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
        return {**self.__dict__, "claims": dict(self.claims)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore the fields from :meth:`__getstate__`; the claims become read-only again."""
        for name, value in state.items():
            object.__setattr__(self, name, MappingProxyType(dict(value)) if name == "claims" else value)

    def __repr__(self) -> str:
        return (
            f"SystemUserTicket(ticket='***', context_identifier={self.context_identifier!r}, "
            f"serial={self.serial!r}, webapi_url={self.webapi_url!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, obtained_at={self.obtained_at.isoformat()!r})"
        )

    __str__ = __repr__
