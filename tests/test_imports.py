"""What importing the library loads: the light names never pull in the heavy dependencies."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("zeep", "requests", "urllib3", "lxml", "jwt", "cryptography", "aiohttp")


@pytest.mark.parametrize(
    "statement",
    [
        "import sut_soap",
        "from sut_soap import TicketCache, CachedTicket, SystemUserTicket",
        "from sut_soap import InMemoryTicketCache, SutSoapError",
        "import sut_soap.contract",
        "from sut_soap import Clock",
        "import sut_soap.testing",
        "import sut_soap.testing.pytest_plugin",
        "from sut_soap import TenantAuth, TenantState, TenantNotRunningError",
    ],
)
def test_light_imports_load_no_heavy_dependency(statement: str) -> None:
    """The package, its cache and ticket names and the protocol constants load none of zeep, requests, urllib3, lxml, PyJWT, cryptography or aiohttp."""
    probe = (
        f"{statement}\n"
        "import sys\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == ""


def test_sync_transport_loads_no_aiohttp_until_the_async_one_is_asked_for() -> None:
    """sut_soap.transport (and HttpTransport) loads aiohttp only when AiohttpTransport is first looked up."""
    probe = (
        "import sys\nimport sut_soap.transport as t\nfrom sut_soap.transport import HttpTransport, AsyncTransport\n"
        "print('aiohttp' in sys.modules, t.AiohttpTransport.__name__, 'aiohttp' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "AiohttpTransport", "True"]


def test_transport_package_has_no_other_lazy_name() -> None:
    """A name the transport package does not have is an AttributeError, not an import."""
    import sut_soap.transport as transport

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        transport.Nope  # noqa: B018


def test_heavy_probe_sees_a_heavy_import() -> None:
    """The probe above does notice a heavy dependency when one is loaded (the client loads zeep)."""
    probe = "import sut_soap.client, sys\nprint('zeep' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "True"


def test_protocol_constants_have_one_home() -> None:
    """The claim names and namespaces the tokens, SOAP layer and emulator use are the ones in contract."""
    from sut_soap import contract, soap, tokens
    from sut_soap.testing import emulator

    assert tokens.CLAIM_TICKET is contract.CLAIM_TICKET
    assert tokens.ISSUER is contract.ISSUER
    assert soap.SOAP_ACTION is contract.SOAP_ACTION
    assert emulator.SOAP_ACTION is contract.SOAP_ACTION
    assert emulator.CLAIM_PREFIX is contract.CLAIM_PREFIX
    assert contract.SOAP_ACTION == "http://www.superoffice.com/superid/partnersystemuser/0.1/IPartnerSystemUserService/Authenticate"


def test_testing_kit_names_load_on_first_use() -> None:
    """sut_soap.testing hands out each name from its module, lists them in dir(), and refuses unknown ones."""
    import sut_soap.testing as kit
    from sut_soap.testing.emulator import Emulator
    from sut_soap.testing.replay import replay_client

    assert kit.Emulator is Emulator and kit.replay_client is replay_client
    assert set(kit.__all__) <= set(dir(kit))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        kit.Nope  # noqa: B018


def test_library_never_imports_the_testing_kit_or_the_cli() -> None:
    """No module of the library imports sut_soap.testing or sut_soap.cli (the arrows run one way)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1] / "sut_soap"
    pattern = re.compile(r"^\s*(from|import)\s+(sut_soap\.|\.+)(testing|cli)\b", re.M)
    offenders = [
        str(path.relative_to(root))
        for path in root.glob("*.py")
        if path.name != "__main__.py"  # python -m sut_soap is the command line's door, not library
        and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_command_line_uses_only_public_names_of_the_library_and_testing_kit() -> None:
    """sut_soap/cli/ imports no private module or private name of the library or the testing kit."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "sut_soap" / "cli"
    private = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            outside = node.level >= 2 or (node.level == 0 and node.module.startswith("sut_soap.") and
                                           not node.module.startswith("sut_soap.cli"))
            if not outside:
                continue
            parts = node.module.split(".")
            names = [alias.name for alias in node.names]
            if any(part.startswith("_") for part in parts) or any(name.startswith("_") for name in names):
                private.append(f"{path.name}: from {'.' * node.level}{node.module} import {', '.join(names)}")
    assert private == []


def test_only_the_transport_package_imports_the_http_libraries() -> None:
    """requests, urllib3, aiohttp (with yarl) and httpx are imported (outside type checking) by sut_soap/transport/ only, but for the httpx auth adapter."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "sut_soap"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.parent == root / "transport":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            where = str(path.relative_to(root))
            for name in names:
                library = name.split(".")[0]
                if library in ("requests", "urllib3", "aiohttp", "yarl", "httpx") and (where, library) != (
                    "apiauth/_httpx.py", "httpx"  # the caller's httpx, for calling the tenant's API
                ):
                    offenders.append(f"{where}:{node.lineno}")
    assert offenders == []


def test_httpx_is_imported_by_its_adapter_only() -> None:
    """httpx is imported (outside type checking) by sut_soap/apiauth/_httpx.py alone, and the auth decisions import no HTTP library."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "sut_soap"
    importers = set()
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(inner) for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                if name.split(".")[0] in ("httpx", "requests", "urllib3", "aiohttp") and "apiauth" in str(path):
                    importers.add((str(path.relative_to(root)), name.split(".")[0]))
    assert importers == {("apiauth/_httpx.py", "httpx")}


def test_auth_package_loads_no_http_library_until_an_auth_object_is_built() -> None:
    """Importing the client does not load the auth package; the package itself loads neither requests nor httpx."""
    probe = (
        "import sys, sut_soap.client\n"
        "print('sut_soap.apiauth' in sys.modules)\n"
        "for name in [m for m in sys.modules if m.split('.')[0] in ('httpx', 'requests', 'urllib3', 'zeep')]:\n"
        "    del sys.modules[name]\n"
        "import sut_soap.apiauth\n"
        "print('httpx' in sys.modules, 'requests' in sys.modules, 'sut_soap.apiauth._httpx' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "False", "False", "False"]
