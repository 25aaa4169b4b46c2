"""tools/audit.py, make lint's vulnerability audit: what it judges, what fails it, offline."""

from __future__ import annotations

import http.server
import importlib.util
import json
import sys
import threading
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sut_soap_tools_audit", ROOT / "tools" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


audit = _load()

ADVISORY = {
    "id": "PYSEC-2099-1",
    "aliases": ["CVE-2099-0001", "GHSA-xxxx-yyyy-zzzz"],
    "fixed_in": ["2.0.1"],
    "withdrawn": None,
}
WITHDRAWN = {"id": "PYSEC-2099-2", "aliases": [], "fixed_in": [], "withdrawn": "2099-01-02T00:00:00Z"}


def document(latest: str, *vulnerabilities: Mapping[str, Any]) -> dict[str, Any]:
    return {"info": {"version": latest}, "vulnerabilities": list(vulnerabilities)}


def not_found(name: str, version: str) -> dict[str, str]:
    return {"name": name, "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} ({version})"}


class Fetcher:
    """Serves project documents from a dict and records which names were asked for."""

    def __init__(self, documents: Mapping[str, Any]) -> None:
        self.documents = documents
        self.asked: list[str] = []

    def __call__(self, name: str) -> Mapping[str, Any]:
        self.asked.append(name)
        found = self.documents[name]
        if isinstance(found, Exception):
            raise found
        return found  # type: ignore[no-any-return]


def test_latest_release_without_advisories_passes() -> None:
    """An installed version equal to the latest release, with an empty list, is audited clean."""
    assert audit.judge_latest("zeep", "4.3.3", document("4.3.3")) == ([], None)


def test_versions_compare_as_versions_not_strings() -> None:
    """1.0 and 1.0.0 are the same release (PEP 440), so the fallback applies."""
    assert audit.judge_latest("x", "1.0", document("1.0.0")) == ([], None)


def test_latest_release_advisory_is_a_finding_and_withdrawn_ones_are_not() -> None:
    """Each advisory of the latest release is reported with aliases and fixes; a withdrawn one is ignored."""
    findings, reason = audit.judge_latest("lxml", "6.1.3", document("6.1.3", ADVISORY, WITHDRAWN))
    assert reason is None
    assert findings == [
        audit.Finding("lxml", "6.1.3", "PYSEC-2099-1", ("CVE-2099-0001", "GHSA-xxxx-yyyy-zzzz"), ("2.0.1",))
    ]
    assert findings[0].line() == "lxml 6.1.3: PYSEC-2099-1 (CVE-2099-0001, GHSA-xxxx-yyyy-zzzz); fixed in 2.0.1"


def test_older_installed_version_is_unaudited_not_passed() -> None:
    """The latest release's list says nothing about an older one: that package can't be judged."""
    findings, reason = audit.judge_latest("atheris", "3.0.0", document("3.1.0"))
    assert findings == []
    assert reason is not None and "3.0.0" in reason and "3.1.0" in reason and "--upgrade atheris" in reason


@pytest.mark.parametrize(
    "broken",
    [{}, {"info": {}}, {"info": "x", "vulnerabilities": []}, {"info": {"version": "1.0"}}, {"info": {"version": "1.0"}, "vulnerabilities": {}}],
)
def test_malformed_project_document_is_unaudited(broken: dict[str, Any]) -> None:
    """A document without a version string and a vulnerabilities list never counts as clean."""
    findings, reason = audit.judge_latest("x", "1.0", broken)
    assert findings == [] and reason is not None


def test_pip_audit_findings_are_kept() -> None:
    """What pip-audit itself found fails the audit, with its ids and fix versions."""
    report = audit.audit(
        {"dependencies": [{"name": "Requests", "version": "2.0.0", "vulns": [{"id": "GHSA-1", "fix_versions": ["2.32.4"], "aliases": ["CVE-1"]}]}]},
        {"requests": "2.0.0"},
        Fetcher({}),
    )
    assert report.by_pip_audit == ["requests"]
    assert report.findings == [audit.Finding("requests", "2.0.0", "GHSA-1", ("CVE-1",), ("2.32.4",))]
    assert not report.ok


def test_clean_pip_audit_report_passes_without_fetching() -> None:
    """Packages pip-audit checked itself are not fetched again, and the project's own editable install is fine."""
    fetch = Fetcher({})
    report = audit.audit(
        {"dependencies": [{"name": "zeep", "version": "4.3.3", "vulns": []}, {"name": "sut-soap", "skip_reason": "distribution marked as editable"}]},
        {"zeep": "4.3.3", "sut-soap": "0.1.0"},
        fetch,
    )
    assert report.ok and report.by_pip_audit == ["zeep"] and fetch.asked == []


def test_skipped_packages_fall_back_to_the_latest_release() -> None:
    """"Not found" packages are judged from PyPI's project document; an advisory there fails the run."""
    fetch = Fetcher({"lxml": document("6.1.3", ADVISORY), "pyjwt": document("2.12.0")})
    report = audit.audit(
        {"dependencies": [not_found("lxml", "6.1.3"), not_found("PyJWT", "2.12.0")]},
        {"lxml": "6.1.3", "pyjwt": "2.12.0"},
        fetch,
    )
    assert sorted(fetch.asked) == ["lxml", "pyjwt"]
    assert report.by_latest_release == ["lxml", "pyjwt"]
    assert [f.vuln_id for f in report.findings] == ["PYSEC-2099-1"]
    assert not report.ok


def test_fetch_failure_leaves_the_package_unaudited() -> None:
    """A package whose document could not be fetched fails the run instead of passing unchecked."""
    report = audit.audit(
        {"dependencies": [not_found("zeep", "4.3.3")]}, {"zeep": "4.3.3"}, Fetcher({"zeep": OSError("no route")})
    )
    assert set(report.unaudited) == {"zeep"} and "no route" in report.unaudited["zeep"]
    assert not report.ok


def test_other_skip_reasons_and_foreign_editables_are_unaudited() -> None:
    """Only sut-soap's own editable install may be skipped; any other skip is a failure."""
    report = audit.audit(
        {"dependencies": [
            {"name": "mylib", "skip_reason": "distribution marked as editable"},
            {"name": "odd", "skip_reason": "something else"},
        ]},
        {"mylib": "1", "odd": "1"},
        Fetcher({}),
    )
    assert set(report.unaudited) == {"mylib", "odd"}


def test_scope_limits_what_is_judged() -> None:
    """Packages outside the project's closure are listed, not fetched or judged; scope members pip-audit missed fail."""
    fetch = Fetcher({"zeep": document("4.3.3")})
    report = audit.audit(
        {"dependencies": [not_found("zeep", "4.3.3"), not_found("atheris", "3.0.0"), not_found("mutmut", "3.3")]},
        {"zeep": "4.3.3", "atheris": "3.0.0", "mutmut": "3.3", "lxml": "6.1.3"},
        fetch,
        scope={"zeep", "lxml", "sut-soap"},
    )
    assert fetch.asked == ["zeep"]
    assert sorted(report.outside_scope) == ["atheris", "mutmut"]
    assert set(report.unaudited) == {"lxml"}


FAKE_METADATA = {
    "sut-soap": ['zeep>=4', 'pytest>=8; extra == "test"', 'sphinx; extra == "docs"'],
    "zeep": ["lxml", "requests[socks]", 'backports-thing; python_version < "3.0"'],
    "requests": ["urllib3", 'pysocks; extra == "socks"', 'chardet; extra == "chardet"'],
    "pytest": ["pluggy", "sut-soap"],
    "lxml": [],
    "urllib3": [],
    "pluggy": [],
    "pysocks": [],
    "chardet": [],
    "sphinx": [],
    "unrelated": [],
}


def test_dependency_closure_follows_extras_markers_and_cycles() -> None:
    """The closure honours the requested extras at every level, drops other extras and foreign markers, and ends on cycles."""
    closure = audit.dependency_closure("sut-soap", ["test"], FAKE_METADATA.get)
    assert closure == {"sut-soap", "zeep", "lxml", "requests", "urllib3", "pysocks", "pytest", "pluggy"}
    runtime = audit.dependency_closure("sut_soap", [], FAKE_METADATA.get)
    assert runtime == {"sut-soap", "zeep", "lxml", "requests", "urllib3", "pysocks"}


def test_dependency_closure_of_this_environment_holds_the_runtime_dependencies() -> None:
    """In the project's own venv, the closure holds all five runtime dependencies (and urllib3)."""
    closure = audit.dependency_closure("sut-soap", ["test"], audit.installed_requirements)
    assert {"zeep", "lxml", "pyjwt", "cryptography", "requests", "urllib3", "pip-audit", "pytest"} <= closure


class _Pypi(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes]]] = []
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        status, body = type(self).answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def pypi() -> Iterator[tuple[str, type[_Pypi]]]:
    handler = type("Pypi", (_Pypi,), {"answers": [], "paths": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi/{{name}}/json", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.network
def test_fetch_retries_server_errors_then_returns_the_document(pypi: tuple[str, type[_Pypi]]) -> None:
    """A 503 is tried again (with a pause); the document of the second answer is returned."""
    url, handler = pypi
    handler.answers = [(503, b"busy"), (200, json.dumps(document("1.0")).encode())]
    pauses: list[float] = []
    assert audit.fetch_project_document("zeep", url, pauses.append) == document("1.0")
    assert handler.paths == ["/pypi/zeep/json", "/pypi/zeep/json"] and pauses == [1]


@pytest.mark.network
def test_fetch_does_not_retry_a_404(pypi: tuple[str, type[_Pypi]]) -> None:
    """A 404 is final: one request, and the error propagates (so the package is unaudited)."""
    url, handler = pypi
    handler.answers = [(404, b"no")]
    with pytest.raises(audit.urllib.error.HTTPError):
        audit.fetch_project_document("zeep", url, lambda _: None)
    assert len(handler.paths) == 1


@pytest.mark.network
def test_fetch_rejects_a_document_that_is_not_an_object(pypi: tuple[str, type[_Pypi]]) -> None:
    """A JSON array or string is not a project document."""
    url, handler = pypi
    handler.answers = [(200, b"[]")]
    with pytest.raises(ValueError, match="not a JSON object"):
        audit.fetch_project_document("zeep", url, lambda _: None)


def test_fetch_refuses_names_that_would_change_the_url() -> None:
    """Only canonical project names go into the URL."""
    for name in ("../x", "a/b", "Zeep", "", "a?b"):
        with pytest.raises(ValueError, match="canonical"):
            audit.fetch_project_document(name, "http://127.0.0.1:9/{name}", lambda _: None)


def test_accepted_file_parses_and_names_bad_lines() -> None:
    """Comments and blank lines are skipped; a line without a date or a reason is an error naming the line."""
    text = "# header\n\nGHSA-aaaa 2099-01-31 no fixed release yet; only the test extra uses it\n"
    assert audit.read_accepted(text) == [
        audit.Acceptance("GHSA-aaaa", date(2099, 1, 31), "no fixed release yet; only the test extra uses it")
    ]
    with pytest.raises(ValueError, match="line 2: expected"):
        audit.read_accepted("# x\nGHSA-aaaa 2099-01-31\n")
    with pytest.raises(ValueError, match="line 1: 'soon' is not a YYYY-MM-DD date"):
        audit.read_accepted("GHSA-aaaa soon because\n")


def test_acceptance_matches_aliases_and_expires() -> None:
    """An acceptance waives a finding by id or alias until its date (inclusive); after that it counts again."""
    finding = audit.Finding("lxml", "6.1.3", "PYSEC-2099-1", ("CVE-2099-0001",), ())
    other = audit.Finding("zeep", "4.3.3", "PYSEC-2099-7")
    accepted = [audit.Acceptance("CVE-2099-0001", date(2099, 1, 31), "waiting for a release")]
    counted, waived = audit.split_accepted([finding, other], accepted, today=date(2099, 1, 31))
    assert counted == [other] and waived == [(finding, accepted[0])]
    counted, waived = audit.split_accepted([finding, other], accepted, today=date(2099, 2, 1))
    assert counted == [finding, other] and waived == []


def test_main_exit_codes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """main() exits 0 when clean or accepted, 1 on unaudited or vulnerable, 2 on a bad accepted file or no pip-audit."""
    installed = audit.installed_versions()
    scope = audit.dependency_closure("sut-soap", ["test"], audit.installed_requirements) - {"sut-soap"}
    scope |= {name for name in audit.ALWAYS_AUDITED if name in installed}
    report = {"dependencies": [not_found(name, installed[name]) for name in sorted(scope)] + [not_found("atheris", "0")]}
    monkeypatch.setattr(audit, "run_pip_audit", lambda: report)
    monkeypatch.setattr(audit, "fetch_project_document", lambda name: document(installed[name]))
    assert audit.main([]) == 0
    out = capsys.readouterr().out
    assert f"{len(scope)} by their latest release's advisories" in out and "0 unaudited; 0 known vulnerabilities" in out
    assert "not judged, outside sut-soap[test]: atheris" in out

    monkeypatch.setattr(audit, "fetch_project_document", lambda name: document("9999" if name == "zeep" else installed[name]))
    assert audit.main([]) == 1
    assert f"UNAUDITED zeep {installed['zeep']}: installed {installed['zeep']} is not the latest release (9999)" in capsys.readouterr().out

    monkeypatch.setattr(audit, "fetch_project_document", lambda name: document(installed[name], ADVISORY if name == "lxml" else WITHDRAWN))
    assert audit.main([]) == 1
    assert f"VULNERABLE lxml {installed['lxml']}: PYSEC-2099-1" in capsys.readouterr().out

    accepted = tmp_path / "accepted.txt"
    accepted.write_text("PYSEC-2099-1 2999-12-31 no release fixes it yet\n")
    assert audit.main(["--accepted", str(accepted)]) == 0
    out = capsys.readouterr().out
    assert f"ACCEPTED until 2999-12-31 lxml {installed['lxml']}: PYSEC-2099-1" in out and "1 accepted" in out
    accepted.write_text("PYSEC-2099-1 2000-01-01 expired long ago\n")
    assert audit.main(["--accepted", str(accepted)]) == 1
    assert "VULNERABLE lxml" in capsys.readouterr().out
    accepted.write_text("PYSEC-2099-1\n")
    assert audit.main(["--accepted", str(accepted)]) == 2

    def broken() -> Mapping[str, Any]:
        raise RuntimeError("pip-audit exited 3 without a report")

    monkeypatch.setattr(audit, "run_pip_audit", broken)
    assert audit.main([]) == 2
