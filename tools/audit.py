"""Fail on any known vulnerability in what sut-soap and its test tools install.

``make lint`` runs this (issue 7, supply chain). Its scope is the installed closure of
``sut-soap[test]`` (runtime and test dependencies, transitively, with their extras and
markers) plus pip and setuptools; tools that ``make fuzz`` or ``make mutate`` install on
demand, or anything added by hand, are listed but not judged.

It runs pip-audit over the environment it is started in, then looks after what pip-audit had
to skip. pip-audit asks PyPI's JSON API for each installed *version*
(``/pypi/NAME/VERSION/json``); some package mirrors and proxies answer that with 404 while
still serving the project document (``/pypi/NAME/json``), whose ``vulnerabilities`` list is
the one of the project's latest release. So a package pip-audit skipped as "not found" is
judged from that document when its installed version *is* the latest release, and counts as
unaudited otherwise. Unaudited packages fail the run, as ``pip-audit --strict`` would:
passing with nothing checked is what this must never do.

An advisory that cannot be fixed yet may be accepted in ``tools/audit-accepted.txt``, one per
line: ``ID YYYY-MM-DD reason``. The ID is the advisory's or one of its aliases; the date is
when the acceptance ends (it then counts again); the reason is required.

Usage: python tools/audit.py [--workers N] [--accepted FILE]
Exit status: 0 nothing known and everything audited, 1 vulnerable or unaudited, 2 the audit
itself could not run.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import subprocess  # nosec B404: runs pip-audit from this same interpreter
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ACCEPTED_FILE = Path(__file__).resolve().parent / "audit-accepted.txt"
PROJECT = "sut-soap"
PROJECT_EXTRAS = ("test",)
ALWAYS_AUDITED = ("pip", "setuptools")
PYPI_PROJECT_URL = "https://pypi.org/pypi/{name}/json"
NOT_FOUND_PREFIX = "Dependency not found on PyPI"
ATTEMPTS = 3


@dataclass(frozen=True)
class Finding:
    name: str
    version: str
    vuln_id: str
    aliases: tuple[str, ...] = ()
    fixed_in: tuple[str, ...] = ()

    def line(self) -> str:
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        fixed = f"; fixed in {', '.join(self.fixed_in)}" if self.fixed_in else "; no fixed release"
        return f"{self.name} {self.version}: {self.vuln_id}{aliases}{fixed}"


@dataclass
class Report:
    by_pip_audit: list[str] = field(default_factory=list)
    by_latest_release: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    unaudited: dict[str, str] = field(default_factory=dict)
    outside_scope: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.unaudited


@dataclass(frozen=True)
class Acceptance:
    vuln_id: str
    until: date
    reason: str


def read_accepted(text: str) -> list[Acceptance]:
    """Parse the accepted-advisories file; ValueError names the first bad line."""
    accepted = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise ValueError(f"line {number}: expected 'ID YYYY-MM-DD reason'")
        try:
            until = date.fromisoformat(parts[1])
        except ValueError:
            raise ValueError(f"line {number}: {parts[1]!r} is not a YYYY-MM-DD date") from None
        accepted.append(Acceptance(parts[0], until, parts[2]))
    return accepted


def split_accepted(
    findings: Iterable[Finding], accepted: Iterable[Acceptance], today: date
) -> tuple[list[Finding], list[tuple[Finding, Acceptance]]]:
    """(findings that still count, findings accepted until a date not yet passed)."""
    live = [a for a in accepted if a.until >= today]
    counted: list[Finding] = []
    waived: list[tuple[Finding, Acceptance]] = []
    for finding in findings:
        ids = {finding.vuln_id, *finding.aliases}
        match = next((a for a in live if a.vuln_id in ids), None)
        if match is None:
            counted.append(finding)
        else:
            waived.append((finding, match))
    return counted, waived


def judge_latest(name: str, installed: str, document: Mapping[str, Any]) -> tuple[list[Finding], str | None]:
    """Findings for ``name==installed`` from PyPI's project document, or why it can't be judged."""
    info = document.get("info")
    latest = info.get("version") if isinstance(info, Mapping) else None
    vulnerabilities = document.get("vulnerabilities")
    if not isinstance(latest, str) or not isinstance(vulnerabilities, list):
        return [], "PyPI's project document has no version or vulnerabilities list"
    try:
        same = Version(installed) == Version(latest)
    except InvalidVersion:
        same = installed == latest
    if not same:
        return [], (
            f"installed {installed} is not the latest release ({latest}), and the per-version advisories "
            f"are unreachable: upgrade it (.venv/bin/python -m pip install --upgrade {name}) or audit where "
            "pypi.org/pypi/NAME/VERSION/json answers"
        )
    findings = []
    for entry in vulnerabilities:
        if not isinstance(entry, Mapping) or entry.get("withdrawn"):
            continue
        findings.append(
            Finding(
                name=name,
                version=installed,
                vuln_id=str(entry.get("id", "unnamed advisory")),
                aliases=tuple(str(a) for a in entry.get("aliases") or ()),
                fixed_in=tuple(str(v) for v in entry.get("fixed_in") or ()),
            )
        )
    return findings, None


def audit(
    pip_audit_report: Mapping[str, Any],
    installed: Mapping[str, str],
    fetch: Callable[[str], Mapping[str, Any]],
    scope: set[str] | None = None,
    workers: int = 8,
) -> Report:
    """Combine pip-audit's JSON report with the latest-release fallback; ``fetch`` gets a project document.

    Only names in ``scope`` (all when None) are judged; the rest go to ``outside_scope``.
    """
    report = Report()
    skipped: list[str] = []
    listed: set[str] = set()
    for dependency in pip_audit_report.get("dependencies", []):
        name = canonicalize_name(str(dependency.get("name", "")))
        listed.add(name)
        skip_reason = dependency.get("skip_reason")
        if scope is not None and name not in scope and name != PROJECT:
            report.outside_scope.append(name)
        elif skip_reason is None:
            report.by_pip_audit.append(name)
            for vuln in dependency.get("vulns") or ():
                report.findings.append(
                    Finding(
                        name=name,
                        version=str(dependency.get("version", "?")),
                        vuln_id=str(vuln.get("id", "unnamed advisory")),
                        aliases=tuple(str(a) for a in vuln.get("aliases") or ()),
                        fixed_in=tuple(str(v) for v in vuln.get("fix_versions") or ()),
                    )
                )
        elif name == PROJECT and "editable" in str(skip_reason):
            continue
        elif str(skip_reason).startswith(NOT_FOUND_PREFIX) and name in installed:
            skipped.append(name)
        else:
            report.unaudited[name] = str(skip_reason)

    def one(name: str) -> tuple[str, list[Finding], str | None]:
        try:
            document = fetch(name)
        except Exception as exc:  # any failure to fetch leaves the package unaudited, never passed
            return name, [], f"PyPI's project document could not be fetched: {type(exc).__name__}: {exc}"
        findings, reason = judge_latest(name, installed[name], document)
        return name, findings, reason

    if scope is not None:
        for name in sorted(scope - listed - {PROJECT}):
            if name in installed:
                report.unaudited[name] = "installed, but missing from pip-audit's report"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for name, findings, reason in pool.map(one, sorted(skipped)):
            if reason is None:
                report.by_latest_release.append(name)
                report.findings.extend(findings)
            else:
                report.unaudited[name] = reason
    return report


def installed_versions(distributions: Iterable[metadata.Distribution] | None = None) -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in distributions if distributions is not None else metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[canonicalize_name(name)] = dist.version
    return found


def dependency_closure(
    root: str,
    extras: Iterable[str],
    requirements_of: Callable[[str], list[str] | None],
) -> set[str]:
    """Canonical names of the installed distributions ``root[extras]`` needs, transitively, root included.

    ``requirements_of(name)`` gives a distribution's Requires-Dist lines, or None when it is not
    installed (a requirement whose marker excludes this interpreter is then simply absent).
    """
    found: set[str] = set()
    visited: set[tuple[str, frozenset[str]]] = set()
    pending = [(canonicalize_name(root), frozenset(extras))]
    while pending:
        name, wanted = pending.pop()
        if (name, wanted) in visited:
            continue
        visited.add((name, wanted))
        lines = requirements_of(name)
        if lines is None:
            continue
        found.add(name)
        environments = [{"extra": extra} for extra in sorted(wanted)] or [{"extra": ""}]
        for line in lines:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate(env) for env in environments):
                continue
            pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return found


def installed_requirements(name: str) -> list[str] | None:
    try:
        return list(metadata.distribution(name).requires or [])
    except metadata.PackageNotFoundError:
        return None


def fetch_project_document(
    name: str,
    url_template: str = PYPI_PROJECT_URL,
    pause: Callable[[float], None] = time.sleep,
) -> Mapping[str, Any]:
    """PyPI's project document for ``name``; 5xx and connection failures are tried ATTEMPTS times."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise ValueError(f"not a canonical project name: {name!r}")
    url = url_template.format(name=name)
    context = ssl.create_default_context() if url.startswith("https:") else None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(url, timeout=30, context=context) as answer:  # noqa: S310  # nosec B310: PyPI, or a test server
                document = json.load(answer)
            if not isinstance(document, Mapping):
                raise ValueError("PyPI's project document is not a JSON object")
            return document
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == ATTEMPTS:
                raise
        except (urllib.error.URLError, TimeoutError):
            if attempt == ATTEMPTS:
                raise
        pause(attempt)
    raise AssertionError("unreachable")


def run_pip_audit() -> Mapping[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "pip-audit.json"
        command = [
            sys.executable, "-m", "pip_audit", "--format", "json", "--output", str(output),
            "--skip-editable", "--progress-spinner", "off",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603: fixed argv
        # pip-audit exits 1 when it found something; anything else without a report is a failure to run.
        if not output.exists() or done.returncode not in (0, 1):
            sys.stderr.write(done.stderr)
            raise RuntimeError(f"pip-audit exited {done.returncode} without a report")
        loaded = json.loads(output.read_text())
    if not isinstance(loaded, Mapping):
        raise RuntimeError("pip-audit's report is not a JSON object")
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8, help="parallel requests to PyPI (default 8)")
    parser.add_argument("--accepted", type=Path, default=ACCEPTED_FILE, help="accepted advisories (ID date reason)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        accepted = read_accepted(args.accepted.read_text(encoding="utf-8")) if args.accepted.exists() else []
    except ValueError as exc:
        print(f"audit: {args.accepted}: {exc}", file=sys.stderr)
        return 2
    try:
        pip_audit_report = run_pip_audit()
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"audit: could not run pip-audit: {exc}", file=sys.stderr)
        return 2
    installed = installed_versions()
    scope = dependency_closure(PROJECT, PROJECT_EXTRAS, installed_requirements)
    if PROJECT not in scope:
        print(f"audit: {PROJECT} is not installed in this environment", file=sys.stderr)
        return 2
    scope.update(name for name in ALWAYS_AUDITED if name in installed)
    report = audit(pip_audit_report, installed, fetch_project_document, scope=scope, workers=args.workers)
    report.findings, waived = split_accepted(report.findings, accepted, date.today())
    for finding, acceptance in waived:
        print(f"ACCEPTED until {acceptance.until} {finding.line()}: {acceptance.reason}")
    for finding in report.findings:
        print(f"VULNERABLE {finding.line()}")
    for name, reason in sorted(report.unaudited.items()):
        print(f"UNAUDITED {name} {installed.get(name, '?')}: {reason}")
    if report.outside_scope:
        outside = ", ".join(sorted(report.outside_scope))
        print(f"audit: not judged, outside {PROJECT}[{','.join(PROJECT_EXTRAS)}]: {outside}")
    elapsed = time.perf_counter() - started
    print(
        f"audit: {len(report.by_pip_audit)} packages by pip-audit, {len(report.by_latest_release)} by their "
        f"latest release's advisories on PyPI, {len(report.unaudited)} unaudited; "
        f"{len(report.findings)} known vulnerabilities, {len(waived)} accepted ({elapsed:.1f} s)"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
