"""Fail unless the security-critical modules have 100% line and branch coverage.

Run after ``pytest --cov`` (``make test`` does): reads the coverage data file (``.coverage``,
or ``$COVERAGE_FILE``) with coverage's own API and the settings in pyproject.toml, and lists
every uncovered line and branch of each gated module. The overall floor is pytest-cov's
``--cov-fail-under`` in the Makefile; this script holds the per-module bar of issue 7
(HOSTILE.md figure 5): signing, key loading, answer parsing and transport, JWT validation,
redaction and the errors.

Usage: python tools/coverage_gate.py [--data-file PATH] [module.py ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent

# 100% line and branch coverage, no exceptions (a `# pragma: no cover` needs the lead's approval).
GATED = (
    "sut_soap/signing.py",   # signing the system user token
    "sut_soap/keys.py",      # key loading
    "sut_soap/_soap.py",     # envelope, transport, answer parsing, sanitise (redaction)
    "sut_soap/tokens.py",    # JWT validation and key sources
    "sut_soap/_xml.py",      # the hardened XML parser
    "sut_soap/errors.py",    # the exception tree
    "sut_soap/cache.py",     # the ticket cache
)

def _ranges(lines: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3, 7``."""
    parts: list[str] = []
    start = previous = None
    for line in sorted(lines):
        if start is None:
            start = previous = line
        elif line == previous + 1:
            previous = line
        else:
            parts.append(f"{start}" if start == previous else f"{start}-{previous}")
            start = previous = line
    if start is not None:
        parts.append(f"{start}" if start == previous else f"{start}-{previous}")
    return ", ".join(parts)


def _branch(pair: list[int]) -> str:
    source, target = pair
    return f"{source}->{'exit' if target < 0 else target}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-file", default=None, help="coverage data file (default: .coverage)")
    parser.add_argument("modules", nargs="*", default=list(GATED), help="paths relative to the project root")
    args = parser.parse_args(argv)

    options = {} if args.data_file is None else {"data_file": args.data_file}
    cov = coverage.Coverage(config_file=str(ROOT / "pyproject.toml"), **options)
    cov.load()
    if not cov.get_option("run:branch"):
        print("coverage gate: the data was collected without branch coverage", file=sys.stderr)
        return 1
    wanted = {str((ROOT / module).resolve()): module for module in args.modules}
    measured = {str(Path(name).resolve()) for name in cov.get_data().measured_files()}
    failures: list[str] = []
    for path, module in wanted.items():
        if path not in measured:
            failures.append(f"{module}: not measured at all (was pytest run with --cov?)")
    present = [path for path in wanted if path in measured]
    if present:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "gate.json"
            cov.json_report(morfs=present, outfile=str(out))
            report = json.loads(out.read_text(encoding="utf-8"))
        for name, data in report["files"].items():
            module = wanted.get(str(Path(name).resolve()), name)
            missing_lines = data["missing_lines"]
            missing_branches = data.get("missing_branches", [])
            summary = data["summary"]
            line = (
                f"{module}: {summary['covered_lines']}/{summary['num_statements']} lines, "
                f"{summary.get('covered_branches', 0)}/{summary.get('num_branches', 0)} branches"
            )
            if missing_lines or missing_branches:
                details = []
                if missing_lines:
                    details.append(f"lines {_ranges(missing_lines)}")
                if missing_branches:
                    details.append("branches " + ", ".join(_branch(pair) for pair in missing_branches))
                failures.append(f"{line}; missing {'; '.join(details)}")
            else:
                print(f"coverage gate: {line}: 100%")
    if failures:
        print("coverage gate FAILED: these modules need 100% line and branch coverage", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print(f"coverage gate: {len(wanted)} modules at 100% line and branch coverage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
