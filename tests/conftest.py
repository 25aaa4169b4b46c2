"""Every test starts without the user's sut-soap settings or CA bundle from the environment; the per-test
``emu`` over a module's ``emulator`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import reset_emulator

from sut_soap.testing.emulator import Emulator

_SUT_SOAP_VARIABLES = ("CLIENT_SECRET", "PRIVATE_KEY", "SYSTEM_USER_TOKEN", "CONTEXT_IDENTIFIER", "ENVIRONMENT", "ENDPOINT")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SUT_SOAP_VARIABLES:
        monkeypatch.delenv(f"SUT_SOAP_{name}", raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    """The module's ``emulator`` with no faults before or after the test, and no internal error."""
    yield from reset_emulator(emulator)
