"""SuperOffice-shaped JWTs signed with test keys: the one JWT minter of the testing kit.

The emulator's answers, a replay's re-signed recordings and a user's own test tokens are all
made here, so they carry the same claims in the same form as SuperOffice's: ``iss``
``SuperOffice AS``, ``aud`` ``spn:<serial>``, ``iat``/``nbf``/``exp`` as integers, and under
``http://schemes.superoffice.net/identity/`` the tenant's ``ctx``, ``serial``, ``ticket``
(``7T:...``), URLs and associate, with numbers and booleans as strings.

Signing is written out (RSASSA-PKCS1-v1_5 with SHA-256 over the compact JWS input) rather than
delegated to PyJWT, so the testing kit can also sign a header or claims that PyJWT would refuse
to produce, such as a recorded header kept byte for byte.
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sut_soap._clock import SYSTEM_CLOCK
from sut_soap.contract import CLAIM_PREFIX, CLAIM_TICKET, ISSUER
from sut_soap.keys import PrivateKeyInput, load_private_key

__all__ = ["mint_test_jwt", "new_ticket", "sign_jwt", "stand_in_key", "superoffice_claims"]

_TIME_CLAIMS = ("iat", "nbf", "exp", "auth_time")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_ticket() -> str:
    """A fresh random ticket value in SuperOffice's ``7T:...`` form (64 characters of base64url)."""
    return "7T:" + secrets.token_urlsafe(48)


def superoffice_claims(
    *,
    context_identifier: str = "Cust12345",
    serial: str = "1234567",
    ticket: str | None = None,
    issued_at: datetime | None = None,
    lifetime: float = 300.0,
    webapi_url: str | None = None,
    netserver_url: str | None = None,
    associate_id: str = "5",
    is_administrator: bool = False,
    system_user_token: str | None = None,
    email: str | None = None,
    upn: str | None = None,
) -> dict[str, Any]:
    """The claims SuperOffice puts in a system user JWT, for one tenant.

    ``issued_at`` defaults to now (the system clock) and sets ``iat`` and ``nbf``; ``exp`` is
    ``lifetime`` seconds later. ``ticket`` defaults to :func:`new_ticket`. The URLs default to
    the tenant's paths on ``https://sod.superoffice.com``. ``system_user_token``, ``email`` and
    ``upn`` are claims only when given. Returns a new dict the caller may change.
    """
    issued = int((issued_at or SYSTEM_CLOCK.now()).timestamp())
    base_url = f"https://sod.superoffice.com/{context_identifier}"
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": f"spn:{serial}",
        "iat": issued,
        "nbf": issued,
        "exp": issued + round(lifetime),
        CLAIM_PREFIX + "ctx": context_identifier,
        CLAIM_PREFIX + "serial": serial,
        CLAIM_TICKET: ticket or new_ticket(),
        CLAIM_PREFIX + "webapi_url": webapi_url or f"{base_url}/api/",
        CLAIM_PREFIX + "netserver_url": netserver_url or f"{base_url}/Remote/Services88/",
        CLAIM_PREFIX + "associateid": associate_id,
        CLAIM_PREFIX + "is_administrator": "True" if is_administrator else "False",
    }
    optional = {"system_token": system_user_token, "email": email, "upn": upn}
    claims.update({CLAIM_PREFIX + name: value for name, value in optional.items() if value is not None})
    return claims


def sign_jwt(
    claims: Mapping[str, Any],
    private_key: rsa.RSAPrivateKey,
    *,
    kid: str | None = "sut-soap-test",
    header: Mapping[str, Any] | None = None,
) -> str:
    """``claims`` as a compact RS256 JWS signed with ``private_key``.

    The header is ``{"alg": "RS256", "typ": "JWT", "kid": kid}`` (no ``kid`` when it is
    ``None``), or ``header`` exactly as given, which lets a replay sign a recorded header again.
    """
    first = _default_header(kid) if header is None else _segment(header)
    signing_input = first + "." + _segment(claims)
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def _segment(part: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(dict(part), separators=(",", ":")).encode("utf-8"))


@functools.lru_cache(maxsize=64)
def _default_header(kid: str | None) -> str:
    """The encoded default header for ``kid``: the same for every JWT an emulator key signs."""
    return _segment({"alg": "RS256", "typ": "JWT"} | ({} if kid is None else {"kid": kid}))


def mint_test_jwt(
    private_key: PrivateKeyInput | rsa.RSAPrivateKey,
    *,
    context_identifier: str = "Cust12345",
    serial: str = "1234567",
    ticket: str | None = None,
    lifetime: float = 300.0,
    now: datetime | None = None,
    kid: str | None = "sut-soap-test",
    webapi_url: str | None = None,
    netserver_url: str | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A SuperOffice-shaped RS256 JWT signed with ``private_key`` (a test key, never a real one).

    It validates with ``SystemUserClient(public_key=<the key's public half>)`` for
    ``context_identifier``. ``ticket`` defaults to a fresh random ``7T:`` value, ``now`` to the
    system clock. ``claims`` adds or replaces claims by full name; a value of ``None`` removes
    the claim. ``private_key`` is a key object or anything :func:`sut_soap.load_private_key`
    reads; a key it cannot read raises :class:`~sut_soap.ConfigurationError`.
    """
    key = private_key if isinstance(private_key, rsa.RSAPrivateKey) else load_private_key(private_key)
    body = superoffice_claims(
        context_identifier=context_identifier, serial=serial, ticket=ticket, issued_at=now,
        lifetime=lifetime, webapi_url=webapi_url, netserver_url=netserver_url,
    )
    for name, value in (claims or {}).items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return sign_jwt(body, key, kid=kid)


@functools.lru_cache(maxsize=1)
def stand_in_key() -> rsa.RSAPrivateKey:
    """One throwaway RSA-2048 key per process: what replays sign with when given no key of yours."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _shift_times(claims: dict[str, Any], seconds: int) -> dict[str, Any]:
    """Move the time claims by ``seconds``, keeping each one's type (number or digit string)."""
    if not seconds:
        return claims
    for name in _TIME_CLAIMS:
        value = claims.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            claims[name] = value + seconds
        elif isinstance(value, str) and value.isdigit():
            claims[name] = str(int(value) + seconds)
    return claims
