"""The testing kit: what a test suite of code that uses sut-soap needs, and no network.

- :class:`Emulator` — a local PartnerSystemUserService on loopback, with fault knobs
  (:class:`Fault`), for tests that exchange for real over HTTP.
- :class:`RecordingTransport`, :func:`save_recording`, :func:`load_recording`,
  :class:`ReplayTransport` and :func:`replay_client` — record an exchange once, with every
  secret redacted (:func:`redact_exchange`), and replay it offline forever. The asyncio twins
  :class:`AsyncRecordingTransport`, :class:`AsyncReplayTransport` and
  ``replay_client(..., asynchronous=True)`` (an :class:`AsyncReplayClient`) do the same for
  :class:`~sut_soap.AsyncSystemUserClient`, in the same format: either client replays what
  either recorded.
- :func:`mint_test_jwt` (and :func:`superoffice_claims`, :func:`sign_jwt`) — SuperOffice-shaped
  JWTs signed with a test key; the emulator and replays mint through the same code.
- :func:`scan_for_secrets` — a check that fixtures hold no real secret.
- A pytest plugin (``sut_soap.testing.pytest_plugin``, registered through the ``pytest11``
  entry point) with the fixtures ``superoffice_emulator``, ``superoffice_partner_key``,
  ``superoffice_tenant``, ``superoffice_client`` and, with pytest-asyncio,
  ``superoffice_async_client``.

Names load on first use, so ``import sut_soap.testing`` is cheap. The library itself never
imports this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emulator import Emulator, Fault, Headers, Reason, RecordedRequest, Tenant
    from .exchanges import FORMAT, PLACEHOLDER_NAMES, Exchange, RecordedError, Recording, placeholder
    from .minting import mint_test_jwt, new_ticket, sign_jwt, stand_in_key, superoffice_claims
    from .recording import AsyncRecordingTransport, RecordingTransport
    from .redaction import redact_exchange
    from .replay import (
        AsyncReplayClient,
        AsyncReplayTransport,
        ReplayClient,
        ReplayMismatch,
        ReplayTransport,
        SentRequest,
        replay_client,
    )
    from .scan import SecretFinding, scan_for_secrets
    from .storage import load_recording, save_recording

_LAZY = {
    "Emulator": "emulator",
    "Fault": "emulator",
    "Headers": "emulator",
    "Reason": "emulator",
    "RecordedRequest": "emulator",
    "Tenant": "emulator",
    "FORMAT": "exchanges",
    "PLACEHOLDER_NAMES": "exchanges",
    "Exchange": "exchanges",
    "RecordedError": "exchanges",
    "Recording": "exchanges",
    "placeholder": "exchanges",
    "mint_test_jwt": "minting",
    "new_ticket": "minting",
    "sign_jwt": "minting",
    "stand_in_key": "minting",
    "superoffice_claims": "minting",
    "AsyncRecordingTransport": "recording",
    "RecordingTransport": "recording",
    "redact_exchange": "redaction",
    "AsyncReplayClient": "replay",
    "AsyncReplayTransport": "replay",
    "ReplayClient": "replay",
    "ReplayMismatch": "replay",
    "ReplayTransport": "replay",
    "SentRequest": "replay",
    "replay_client": "replay",
    "SecretFinding": "scan",
    "scan_for_secrets": "scan",
    "load_recording": "storage",
    "save_recording": "storage",
}

__all__ = [
    "FORMAT",
    "PLACEHOLDER_NAMES",
    "AsyncRecordingTransport",
    "AsyncReplayClient",
    "AsyncReplayTransport",
    "Emulator",
    "Exchange",
    "Fault",
    "Headers",
    "Reason",
    "RecordedError",
    "RecordedRequest",
    "Recording",
    "RecordingTransport",
    "ReplayClient",
    "ReplayMismatch",
    "ReplayTransport",
    "SecretFinding",
    "SentRequest",
    "Tenant",
    "load_recording",
    "mint_test_jwt",
    "new_ticket",
    "placeholder",
    "redact_exchange",
    "replay_client",
    "save_recording",
    "scan_for_secrets",
    "sign_jwt",
    "stand_in_key",
    "superoffice_claims",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sut_soap.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
