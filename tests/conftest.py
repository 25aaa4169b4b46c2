"""Every test starts without the user's sut-soap settings or CA bundle from the environment."""

from __future__ import annotations

import pytest

_SUT_SOAP_VARIABLES = ("CLIENT_SECRET", "PRIVATE_KEY", "SYSTEM_USER_TOKEN", "CONTEXT_IDENTIFIER", "ENVIRONMENT", "ENDPOINT")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SUT_SOAP_VARIABLES:
        monkeypatch.delenv(f"SUT_SOAP_{name}", raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
