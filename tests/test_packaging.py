"""Packaging: the wheel carries the WSDL and the licence and works away from the checkout, offline."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import sut_soap

ROOT = Path(__file__).resolve().parents[1]

OFFLINE_CHECK = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("network disabled in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
import sut_soap
from sut_soap.soap import SoapService, bundled_wsdl_path
service = SoapService(endpoint="https://online.superoffice.com/x")
body, headers = service.build(signed_token="t.202601011200.c2ln", client_secret="s", context_identifier="Cust1")
print(sut_soap.__file__)
print(bundled_wsdl_path())
print(b"AuthenticationRequest" in body)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("sut_soap-*.whl")
    return built


def test_wheel_contains_wsdl_and_marker(wheel: Path) -> None:
    """The wheel ships the WSDL inside the package, and py.typed."""
    names = zipfile.ZipFile(wheel).namelist()
    assert "sut_soap/wsdl/PartnerSystemUserService.wsdl" in names
    assert "sut_soap/py.typed" in names


def test_wheel_ships_the_testing_kit_and_registers_its_pytest_plugin(wheel: Path) -> None:
    """The wheel holds sut_soap/testing/ and sut_soap/cli/, and its entry points name the pytest plugin."""
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert {"sut_soap/testing/__init__.py", "sut_soap/testing/pytest_plugin.py", "sut_soap/cli/__init__.py"} <= set(names)
    entry_points = archive.read(f"sut_soap-{sut_soap.__version__}.dist-info/entry_points.txt").decode()
    assert "[pytest11]\nsut_soap = sut_soap.testing.pytest_plugin" in entry_points


def test_wheel_carries_the_mit_licence(wheel: Path) -> None:
    """The wheel's metadata says MIT as an SPDX expression and ships LICENSE in dist-info/licenses."""
    archive = zipfile.ZipFile(wheel)
    dist_info = f"sut_soap-{sut_soap.__version__}.dist-info"
    assert archive.read(f"{dist_info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    fields = archive.read(f"{dist_info}/METADATA").decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: MIT" in fields and "License-File: LICENSE" in fields


def test_sdist_carries_the_licence(tmp_path: Path) -> None:
    """The sdist, built by the project's own backend, holds LICENSE beside pyproject.toml."""
    build = f"import hatchling.build as b; print(b.build_sdist({str(tmp_path)!r}))"
    result = subprocess.run([sys.executable, "-c", build], cwd=ROOT, capture_output=True, text=True, check=True)
    name = result.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        top = f"sut_soap-{sut_soap.__version__}"
        licence = sdist.extractfile(f"{top}/LICENSE")
        assert licence is not None and licence.read() == (ROOT / "LICENSE").read_bytes()
        assert f"{top}/pyproject.toml" in sdist.getnames()


def test_test_extra_holds_no_linter_or_audit_tool() -> None:
    """The test extra is what the tests need; linters and pip-audit, which goes online, are in dev."""
    requires = metadata.requires("sut-soap") or []

    def names(extra: str) -> set[str]:
        parsed = [Requirement(line) for line in requires]
        return {r.name for r in parsed if r.marker is not None and r.marker.evaluate({"extra": extra})}

    assert {"pytest", "hypothesis", "pytest-socket", "pytest-cov", "coverage"} <= names("test")
    tools = {"ruff", "mypy", "bandit", "pip-audit", "types-requests", "lxml-stubs"}
    assert not tools & names("test") and tools <= names("dev")


def test_installed_wheel_loads_wsdl_offline(wheel: Path, tmp_path: Path) -> None:
    """Installed elsewhere, the package loads its own WSDL with every socket refused."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    result = subprocess.run(
        [sys.executable, "-P", "-c", OFFLINE_CHECK],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    package_file, wsdl_path, built = result.stdout.strip().splitlines()
    assert package_file.startswith(str(site))
    assert wsdl_path.startswith(str(site))
    assert built == "True"


def test_public_api_does_not_drift() -> None:
    """__all__ names exactly what the package exports, and each name resolves."""
    assert sorted(sut_soap.__all__) == sorted(
        [
            "AuthenticationRejectedError", "ConfigurationError", "ProtocolError", "SoapFaultError", "SutSoapError",
            "SystemUserClient", "SystemUserTicket", "TokenValidationError", "TransportError", "__version__",
            "load_private_key", "sign_system_user_token",
            "RetryPolicy", "TicketCache", "LockingTicketCache", "InMemoryTicketCache", "CachedTicket", "Clock",
            "Transport", "HttpTransport", "HttpResponse", "Response", "HeaderMap", "RedisTicketCache", "AsyncRedisTicketCache", "AsyncTicketCache",
            "TenantAuth", "TenantNotRunningError", "TenantState",
            "AsyncSystemUserClient", "AsyncTenantAuth", "AsyncTransport", "ThreadedAsyncTransport",
        ]
    )
    for name in sut_soap.__all__:
        assert getattr(sut_soap, name) is not None
    from sut_soap.cache import InMemoryTicketCache
    from sut_soap.retry import RetryPolicy

    assert sut_soap.RetryPolicy is RetryPolicy and sut_soap.InMemoryTicketCache is InMemoryTicketCache


def test_import_is_light() -> None:
    """import sut_soap loads neither zeep nor cryptography."""
    code = "import sys, sut_soap; print('zeep' in sys.modules, 'cryptography' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"


def test_package_dir_lists_the_public_api() -> None:
    """dir(sut_soap) is the sorted public API, lazy names included."""
    assert dir(sut_soap) == sorted(sut_soap.__all__)
