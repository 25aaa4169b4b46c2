"""What a rejected exchange (``IsSuccessful=false``) means: its error, with a hint for its reason.

SuperOffice's ``ErrorMessage`` starts with a reason code for the failures it documents
(``InvalidApplicationToken``, ``InvalidSystemToken``, ...); the code picks the hint. Other
texts are matched by the words they contain, in the order of :data:`_REJECTION_HINTS`.
"""

from __future__ import annotations

from .errors import AuthenticationRejectedError, _reason_code

__all__ = ["rejection"]

# Hints for the error codes SuperOffice documents; matched case-insensitively in ErrorMessage.
_REJECTION_HINTS: tuple[tuple[str, str], ...] = (
    ("timestamp", "the clock: the signed token carries UTC time and must be within minutes of the server's"),
    ("signature", "the private key: it must be the one registered for the application, "
                  "and the system user token must be signed exactly as received"),
    ("revoked", "the tenant's approval of the application: an administrator revoked it"),
    ("expired", "the tenant's approval of the application or its subscription"),
    ("denied", "the tenant's approval of the application"),
    ("reapproval", "the tenant's approval: an administrator must approve the application again"),
    ("application", "the client secret (ApplicationToken) of the application and the environment"),
    ("context", "the ContextIdentifier (tenant id, e.g. Cust12345) and the environment"),
    ("tenant", "the ContextIdentifier (tenant id, e.g. Cust12345) and the environment"),
    ("system", "the system user token: it is fixed per tenant and application"),
)


# A reason code that starts ErrorMessage decides first: the explanation after it may name
# other things ("the system user token of the application ...").
_REASON_HINTS: dict[str, str] = {
    "invalidapplicationtoken": "the client secret (ApplicationToken) of the application and the environment",
    "unknowntenant": "the ContextIdentifier (tenant id, e.g. Cust12345) and the environment",
    "invalidtimestamp": _REJECTION_HINTS[0][1],
    "invalidsystemtoken": "the system user token: it is fixed per tenant and application, "
                          "and must be passed exactly as received",
    "invalidsignature": _REJECTION_HINTS[1][1],
    "unsupportedtokentype": "the ReturnTokenType: sut-soap asks for Jwt, the only type it accepts",
    "needsreapproval": "the tenant's approval: an administrator must approve the application again",
}


def rejection(context: str, error_message: str | None) -> AuthenticationRejectedError:
    """The error for tenant ``context``'s rejected exchange, hinted by the reason its ``error_message`` gives."""
    text = error_message or "(no ErrorMessage)"
    lowered = text.lower()
    hint = _REASON_HINTS.get(_reason_code(error_message or "").lower())
    if hint is None:
        hint = next((h for key, h in _REJECTION_HINTS if key in lowered), None)
    return AuthenticationRejectedError(
        f"SuperOffice rejected the exchange for tenant {context}: {text}",
        error_message=error_message or "",
        hint=hint,
    )
