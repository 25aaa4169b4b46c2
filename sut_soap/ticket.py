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

from ._contract import (
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
    """A tenant's system user ticket and what the validated JWT said about the tenant."""

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
        """Build a ticket from the claims of a JWT that :class:`~sut_soap.tokens.TokenValidator` accepted."""
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
        """Return the HTTP headers that authenticate a REST call to the tenant's web API."""
        return {"Authorization": f"SOTicket {self.ticket}", "SO-AppToken": client_secret}

    def __repr__(self) -> str:
        return (
            f"SystemUserTicket(ticket='***', context_identifier={self.context_identifier!r}, "
            f"serial={self.serial!r}, webapi_url={self.webapi_url!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, obtained_at={self.obtained_at.isoformat()!r})"
        )

    __str__ = __repr__
