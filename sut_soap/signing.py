"""Signing the system user token.

SuperOffice expects ``<token>.<yyyyMMddHHmm>.<signature>``: the signature is
RSASSA-PKCS1-v1_5 with SHA-256 over the UTF-8 bytes of ``<token>.<yyyyMMddHHmm>``, in
standard Base64. The time is UTC; a local-time stamp is the most common field failure, so
the stamp is always computed in UTC whatever the process time zone. PKCS#1 v1.5 is
deterministic: the same key, token and minute give the same bytes in any language.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ._clock import SYSTEM_CLOCK
from .errors import ConfigurationError
from .keys import PrivateKeyInput, load_private_key

__all__ = ["check_text_value", "sign_system_user_token", "timestamp"]

# What a value fit for XML and for SuperOffice may not hold: C0 controls (line breaks among
# them), DEL, surrogates and the two non-characters. One C-speed scan instead of a loop.
_UNFIT = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def check_text_value(value: object, what: str) -> str:
    """Return ``value`` if it is a non-empty string fit for XML; never echo it.

    Args:
        value: the value to check (a secret, a token, a tenant id).
        what: how to name it in the error, such as ``"client secret"``.

    Whitespace inside a value is kept (system user tokens hold spaces), but none of
    SuperOffice's values begins or ends with whitespace or holds a line break: those come from
    a pasted line or a file read with its newline. They are refused, not stripped, so that
    what is signed and sent is always exactly the value given.

    Raises:
        ConfigurationError: not a ``str``, empty or only whitespace, with leading or trailing
            whitespace, or holding a line break, another control character, a surrogate or a
            non-character. The message names ``what`` and the code point, never the value.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a string, not {type(value).__name__}")
    stripped = value.strip()
    if not stripped:
        raise ConfigurationError(f"{what} is empty")
    if len(stripped) != len(value):
        raise ConfigurationError(
            f"{what} has leading or trailing whitespace",
            hint="remove the spaces or line break around the value (pasted, or read from a file with its newline?)",
        )
    unfit = _UNFIT.search(value)
    if unfit is not None:
        ch = unfit.group()
        code = ord(ch)
        if ch in "\n\r":
            raise ConfigurationError(
                f"{what} contains a line break (U+{code:04X})", hint="the value must be one line, as it was issued"
            )
        if code in (0xFFFE, 0xFFFF):
            raise ConfigurationError(f"{what} contains a non-character (U+{code:04X})")
        raise ConfigurationError(f"{what} contains a control character (U+{code:04X})")
    return value


def timestamp(at: datetime | None = None) -> str:
    """Return ``yyyyMMddHHmm`` of ``at`` (default now) in UTC; naive datetimes are refused.

    Raises:
        ConfigurationError: ``at`` has no time zone.
    """
    if at is None:
        at = SYSTEM_CLOCK.now()
    elif at.tzinfo is None or at.utcoffset() is None:
        raise ConfigurationError("at= must be a timezone-aware datetime", hint="use datetime.now(timezone.utc)")
    return at.astimezone(timezone.utc).strftime("%Y%m%d%H%M")


def sign_system_user_token(
    system_user_token: str,
    private_key: PrivateKeyInput,
    *,
    at: datetime | None = None,
    password: bytes | str | None = None,
) -> str:
    """Return ``<token>.<yyyyMMddHHmm>.<base64 signature>`` for the moment ``at`` (default now).

    The signature is RSASSA-PKCS1-v1_5 with SHA-256 over ``<token>.<yyyyMMddHHmm>``, the
    minute in UTC. The result is what the SOAP request carries as ``SignedSystemToken``: a
    secret for the minutes it is accepted.

    Args:
        system_user_token: the tenant's system user token, exactly as received.
        private_key: anything :func:`~sut_soap.keys.load_private_key` accepts.
        at: the moment to sign for, timezone-aware; default: the system clock's now.
        password: the passphrase of an encrypted key given as a path or content.

    Raises:
        ConfigurationError: an empty token or one with control characters, a key that cannot
            be loaded, or a naive ``at``.
    """
    token = check_text_value(system_user_token, "system user token")
    key = load_private_key(private_key, password=password)
    stamp = timestamp(at)
    signed = f"{token}.{stamp}".encode()
    signature = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return f"{token}.{stamp}.{base64.b64encode(signature).decode('ascii')}"
