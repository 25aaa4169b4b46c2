"""The tenant side of the emulator: the state API and a small authenticated tenant API.

What is decided (which tickets are valid, which state a tenant is in, which faults apply) is
decided in :class:`~sut_soap.testing.emulator.Emulator`; this module reads the paths and writes
the answers, shaped as SuperOffice's documentation shows them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple
from urllib.parse import unquote

from sut_soap.contract import APP_TOKEN_HEADER, RUNNING_STATES, STATE_PATH, TICKET_SCHEME
from sut_soap.testing._aspnet import _JSON
from sut_soap.testing._wcf import Headers, _Reply

__all__: list[str] = []

CURRENT_PRINCIPAL = "v1/user/currentprincipal"
ECHO = "v1/echo"
_TENANT_PATH = re.compile(r"/([^/]+)/api/(.*)", re.IGNORECASE)


class ApiRequest(NamedTuple):
    """One request to the emulator's tenant API as it arrived; ``headers`` carry secrets: never print them."""

    method: str
    path: str
    headers: Headers
    body: bytes

    @property
    def ticket(self) -> str | None:
        """The ticket of its ``Authorization: SOTicket`` header, if any."""
        value = self.headers.get("Authorization") or ""
        prefix = TICKET_SCHEME + " "
        return value[len(prefix) :] if value.startswith(prefix) else None

    @property
    def app_token(self) -> str | None:
        """Its ``SO-AppToken`` header, if any."""
        return self.headers.get(APP_TOKEN_HEADER)

    def __repr__(self) -> str:
        return f"ApiRequest(method={self.method!r}, path={self.path!r}, body=<{len(self.body)} bytes>)"


def state_context(path: str) -> str | None:
    """The ContextIdentifier of a state API path (``/api/state/{ctx}``), else None."""
    if not path.lower().startswith(STATE_PATH):
        return None
    rest = unquote(path[len(STATE_PATH) :])
    return rest if rest and "/" not in rest else None


def tenant_route(path: str) -> tuple[str, str] | None:
    """``(ctx, rest)`` of a tenant API path (``/{ctx}/api/{rest}``, rest in lower case), else None.

    ``/Login/...`` is the login service's (the REST exchange is ``/Login/api/...``), never a tenant's.
    """
    match = _TENANT_PATH.fullmatch(path)
    if match is None or match.group(1).lower() == "login":
        return None
    return unquote(match.group(1)), match.group(2).lower().rstrip("/")


def _timestamp(moment: datetime) -> str:
    """``ValidUntil`` as .NET writes it: seven fraction digits and ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def state_answer(ctx: str, state: str, *, base_url: str, now: datetime, valid_for: float, known: bool) -> _Reply:
    """The state API's JSON for a tenant (``Unknown`` with no URLs for one the emulator does not know)."""
    running = state in RUNNING_STATES
    document: dict[str, Any] = {
        "ContextIdentifier": ctx,
        "Endpoint": f"{base_url}/{ctx}" if known else None,
        "State": state,
        "IsRunning": running,
        "ValidUntil": _timestamp(now + timedelta(seconds=valid_for)),
        "Api": f"{base_url}/{ctx}/api" if known else None,
    }
    return _Reply(200, json.dumps(document).encode("utf-8"), _JSON)


def json_reply(status: int, document: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> _Reply:
    """An answer of the tenant API: JSON, with extra headers."""
    return _Reply(status, json.dumps(document).encode("utf-8"), _JSON, headers=headers)


def unauthorized(reason: str) -> _Reply:
    """HTTP 401 with the scheme the tenant API expects; ``reason`` names no secret."""
    return json_reply(401, {"Error": "Unauthorized", "Message": reason}, (("WWW-Authenticate", TICKET_SCHEME),))
