"""Mutation testing of JWT validation, answer parsing, redaction and the endpoint checks (issue 7).

HOSTILE.md figure 6 asks for at least 90% killed mutants on JWT validation, answer parsing and
redaction, and for no surviving mutant on the exp/nbf/iat/iss/aud/ctx/alg comparisons and on
the endpoint (https / loopback / credentials / fragment) checks. This script drives mutmut 3
(``make mutate`` installs it) and holds the repository to that bar:

1. It copies ``sut_soap/``, ``tests/``, ``fixtures/``, ``wsdl/`` and ``pyproject.toml`` into a
   fresh temporary directory and writes mutmut's ``setup.cfg`` there, so the checkout is never
   touched and no stale mutmut cache is reused. mutmut mutates the whole ``sut_soap`` package
   copy (it must: a lone module would lose to the editable install), but every module except
   tokens, _soap and environments is excluded, and only the functions in :data:`TARGETS` run.
2. ``mutmut run --max-children 2`` forks one worker per mutant from a process that has already
   imported everything, and runs only the tests (from :data:`TEST_FILES`) that reach the mutated
   function. A failing test or a timeout kills the mutant. The hypothesis fuzz suite
   (tests/test_fuzz.py) is left out: 12 s per survivor, and it only asserts "no untyped error".
3. It reads mutmut's result files and prints, per target function, mutants / killed / survived,
   then every survivor with its source line and the mutation (old line -> new line). Survivors
   that only change the wording of an error message or hint inside a ``raise`` are tagged
   ``[text]``: no behaviour but the text of a diagnostic changes.

Exit status 1 if the overall kill rate is under 90%, or if any function in :data:`CRITICAL` has
a survivor (``[text]`` ones included). Usage::

    python tools/mutate.py [--keep] [--workdir DIR] [--max-children N] [function-key ...]

A function key is mutmut's name without the ``__mutmut_N`` suffix, e.g.
``sut_soap.tokens.xǁTokenValidatorǁ_check_times`` or ``sut_soap._soap.x_parse_answer``.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("tokens", "_soap", "environments")
TEST_FILES = (
    "tests/test_tokens.py",
    "tests/test_coverage_tokens.py",
    "tests/test_soap.py",
    "tests/test_coverage_soap.py",
    "tests/test_environments.py",
    "tests/test_mutation_kills.py",
)
MIN_SCORE = 0.90
_SEP = "\u01c1"  # "ǁ", mutmut's separator in the names of mutated methods


def _method(module: str, cls: str, name: str) -> str:
    return f"sut_soap.{module}.x{_SEP}{cls}{_SEP}{name}"


def _function(module: str, name: str) -> str:
    return f"sut_soap.{module}.x_{name}"


TARGETS: dict[str, tuple[str, ...]] = {
    "JWT validation (tokens)": (
        _method("tokens", "TokenValidator", "validate"),
        _method("tokens", "TokenValidator", "_check_header"),
        _method("tokens", "TokenValidator", "_check_signature"),
        _method("tokens", "TokenValidator", "_check_issuer"),
        _method("tokens", "TokenValidator", "_check_audience"),
        _method("tokens", "TokenValidator", "_check_times"),
        _method("tokens", "TokenValidator", "_check_context"),
        _function("tokens", "_check_ticket"),
        _function("tokens", "_numeric_date"),
        _function("tokens", "_split"),
        _function("tokens", "_b64url_decode"),
        _function("tokens", "_json_object"),
        _function("tokens", "_no_duplicates"),
        _function("tokens", "_payload_object"),
    ),
    "answer parsing (_soap)": (
        _function("_soap", "parse_answer"),
        _function("_soap", "_authentication_response"),
        _function("_soap", "_fault"),
        _function("_soap", "_is_nil"),
        _function("_soap", "_text"),
        _function("_soap", "_only_child_element"),
    ),
    "redaction (_soap)": (
        _function("_soap", "sanitise"),
        _function("_soap", "_excerpt"),
    ),
    "endpoint checks (environments)": (
        _function("environments", "validate_endpoint"),
        _function("environments", "is_loopback_host"),
        _function("environments", "resolve_endpoint"),
    ),
}

# No survivor allowed: the alg/iss/aud/exp/nbf/iat/ctx comparisons and the endpoint checks.
CRITICAL = frozenset(
    {
        _method("tokens", "TokenValidator", "_check_header"),
        _method("tokens", "TokenValidator", "_check_issuer"),
        _method("tokens", "TokenValidator", "_check_audience"),
        _method("tokens", "TokenValidator", "_check_times"),
        _method("tokens", "TokenValidator", "_check_context"),
        _function("environments", "validate_endpoint"),
        _function("environments", "is_loopback_host"),
    }
)

# mutmut's exit code per mutant, as mutmut/stats.py reads it; anything else is "suspicious".
_STATUS_BY_EXIT_CODE: dict[int | None, str] = {
    1: "killed",
    3: "killed",  # an internal pytest error counts as a kill in mutmut too
    0: "survived",
    5: "no tests",
    33: "no tests",
    2: "interrupted",
    None: "not checked",
    34: "skipped",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
}
_DETECTED = ("killed", "timeout")


@dataclass
class Mutant:
    key: str
    function: str
    status: str  # "killed", "timeout", "survived", "no tests", "not checked", ...
    line: int = 0
    old: str = ""
    new: str = ""
    text_only: bool = False


def _status(exit_code: int | None) -> str:
    return _STATUS_BY_EXIT_CODE.get(exit_code, "suspicious")


def _prepare(workdir: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in ("sut_soap", "tests", "fixtures", "wsdl"):
        shutil.copytree(ROOT / name, workdir / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", workdir / "pyproject.toml")
    others = sorted(
        f"sut_soap/{path.name}" for path in (ROOT / "sut_soap").glob("*.py") if path.stem not in MODULES
    )
    tests = [name for name in TEST_FILES if (ROOT / name).is_file()]
    lines = [
        "[mutmut]",
        "source_paths=sut_soap",
        "do_not_mutate=",
        *(f"\t{name}" for name in others),
        "pytest_add_cli_args_test_selection=",
        *(f"\t{name}" for name in tests),
        "pytest_add_cli_args=-p no:cacheprovider",
        "also_copy=",
        "\tfixtures",
        "\twsdl",
        "",
    ]
    (workdir / "setup.cfg").write_text("\n".join(lines), encoding="utf-8")


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    found: dict[str, ast.FunctionDef] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
    return found


def _real_start(module: str, function: str) -> int:
    """Line of the target's ``def`` in the checkout (the mutants file keeps bodies, not lines)."""
    tree = ast.parse((ROOT / "sut_soap" / f"{module}.py").read_text(encoding="utf-8"))
    short = function.rsplit(".", 1)[1]
    if short.startswith("x" + _SEP):
        cls, name = short[2:].split(_SEP)
        scopes = [node.body for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls]
    else:
        name = short.removeprefix("x_")
        scopes = [tree.body]
    for body in scopes:
        for node in body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return node.lineno
    return 0


def _differences(old: ast.AST, new: ast.AST, parents: tuple[ast.AST, ...]) -> list[tuple[ast.AST, ast.AST, tuple]]:
    """The smallest differing node pairs of two ASTs, each with the chain of its parents."""
    if type(old) is not type(new):
        return [(old, new, parents)]
    if isinstance(old, ast.Constant) and isinstance(new, ast.Constant):
        same = type(old.value) is type(new.value) and old.value == new.value
        return [] if same else [(old, new, parents)]
    found: list[tuple[ast.AST, ast.AST, tuple]] = []
    for field in old._fields:
        a, b = getattr(old, field, None), getattr(new, field, None)
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return [(old, new, parents)]
            for x, y in zip(a, b, strict=True):
                if isinstance(x, ast.AST) and isinstance(y, ast.AST):
                    found += _differences(x, y, (*parents, old))
                elif x != y:
                    return [(old, new, parents)]
        elif isinstance(a, ast.AST) and isinstance(b, ast.AST):
            found += _differences(a, b, (*parents, old))
        elif a != b:
            return [(old, new, parents)]
    return found


def _is_text_only(old: ast.FunctionDef, new: ast.FunctionDef) -> bool:
    """True when the mutant only rewords a message or hint string inside a ``raise``."""
    diffs = _differences(old, new, ())
    if not diffs:
        return False
    for a, b, parents in diffs:
        if not (isinstance(a, ast.Constant) and isinstance(b, ast.Constant)):
            return False
        if not (isinstance(a.value, str) and isinstance(b.value, str)):
            return False
        if not any(isinstance(p, ast.Raise) for p in parents):
            return False
        # check="..." (and _time_error's check argument) name the failed step: behaviour, not text.
        if any(isinstance(p, ast.keyword) and p.arg == "check" for p in parents):
            return False
        call = next((p for p in reversed(parents) if isinstance(p, ast.Call)), None)
        if (
            call is not None
            and isinstance(call.func, ast.Name)
            and call.func.id == "_time_error"
            and len(call.args) > 1
            and call.args[1] is a
        ):
            return False
    return True


def _describe(mutants_dir: Path, results: list[Mutant]) -> None:
    by_module: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in results:
        if mutant.status not in _DETECTED:
            by_module[mutant.key.split(".")[1]].append(mutant)
    for module, survivors in by_module.items():
        source = (mutants_dir / "sut_soap" / f"{module}.py").read_text(encoding="utf-8")
        lines = source.splitlines()
        defs = _functions(ast.parse(source))
        starts: dict[str, int] = {}
        for mutant in survivors:
            short = mutant.key.rsplit(".", 1)[1]
            base = mutant.function.rsplit(".", 1)[1]
            orig, new = defs.get(f"{base}__mutmut_orig"), defs.get(short)
            if orig is None or new is None or orig.end_lineno is None or new.end_lineno is None:
                continue
            old_lines = lines[orig.lineno - 1 : orig.end_lineno]
            new_lines = [line.replace(short, f"{base}__mutmut_orig") for line in lines[new.lineno - 1 : new.end_lineno]]
            if mutant.function not in starts:
                starts[mutant.function] = _real_start(module, mutant.function)
            for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old_lines, b=new_lines).get_opcodes():
                if tag != "equal":
                    mutant.line = starts[mutant.function] + i1 if starts[mutant.function] else 0
                    real = base.rsplit(_SEP, 1)[-1].removeprefix("x_")
                    mutant.old = " | ".join(s.strip() for s in old_lines[i1:i2]).replace(f"{base}__mutmut_orig", real)
                    mutant.new = " | ".join(s.strip() for s in new_lines[j1:j2]).replace(f"{base}__mutmut_orig", real)
                    mutant.new = mutant.new or "(line removed)"
                    break
            renamed = ast.parse(ast.unparse(new)).body[0]
            assert isinstance(renamed, ast.FunctionDef)
            renamed.name = orig.name
            mutant.text_only = _is_text_only(orig, renamed)


def _collect(mutants_dir: Path, wanted: set[str]) -> list[Mutant]:
    results: list[Mutant] = []
    for module in MODULES:
        meta_path = mutants_dir / "sut_soap" / f"{module}.py.meta"
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        for key, code in meta.get("exit_code_by_key", {}).items():
            function = key.rsplit("__mutmut_", 1)[0]
            if function in wanted:
                results.append(Mutant(key, function, _status(code)))
    return results


def _short(function: str) -> str:
    module, name = function.split(".")[1:3]
    return f"{module}.{name.removeprefix('x_').replace(_SEP, '.').lstrip('x.')}"


def _report(results: list[Mutant], wanted: list[str]) -> bool:
    by_function: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in results:
        by_function[mutant.function].append(mutant)
    ok = True
    header = f"{'target':52} {'mutants':>7} {'killed':>7} {'surv.':>6} {'[text]':>6} {'score':>7}"
    print(header)
    print("-" * len(header))
    total = killed_all = survived_all = text_all = 0
    for group, functions in TARGETS.items():
        g_total = g_killed = g_text = 0
        print(f"{group}:")
        for function in functions:
            if function not in wanted:
                continue
            mutants = by_function.get(function, [])
            n = len(mutants)
            killed = sum(m.status in _DETECTED for m in mutants)
            survived = n - killed
            text = sum(m.text_only for m in mutants if m.status not in _DETECTED)
            critical = "  *" if function in CRITICAL else ""
            score = f"{killed / n:7.1%}" if n else "    n/a"
            print(f"  {_short(function) + critical:50} {n:7} {killed:7} {survived:6} {text:6} {score}")
            g_total, g_killed, g_text = g_total + n, g_killed + killed, g_text + text
        if g_total:
            print(f"  {'= ' + group:50} {g_total:7} {g_killed:7} {g_total - g_killed:6} {g_text:6} "
                  f"{g_killed / g_total:7.1%}")
        total, killed_all = total + g_total, killed_all + g_killed
        survived_all, text_all = survived_all + g_total - g_killed, text_all + g_text
    print("-" * len(header))
    score = killed_all / total if total else 0.0
    print(f"{'TOTAL':52} {total:7} {killed_all:7} {survived_all:6} {text_all:6} {score:7.1%}")
    if total - text_all:
        print(f"{'  excluding [text] survivors from the count':52} {total - text_all:7} {killed_all:7} "
              f"{survived_all - text_all:6} {'':6} {killed_all / (total - text_all):7.1%}")
    print("(* = critical: no survivor allowed; [text] = survivor only rewords a raised message or hint)")
    other = [m for m in results if m.status not in (*_DETECTED, "survived")]
    if other:
        print(f"note: {len(other)} mutants counted as survived had status: "
              + ", ".join(sorted({m.status for m in other})))
    survivors = [m for m in results if m.status not in _DETECTED]
    if survivors:
        print("\nSurvivors:")
        for m in sorted(survivors, key=lambda m: (m.function, m.line, m.key)):
            tag = " [text]" if m.text_only else ""
            print(f"  {m.key.rsplit('.', 1)[1]}{tag} ({m.status})")
            print(f"      sut_soap/{m.key.split('.')[1]}.py:{m.line}: {m.old}")
            print(f"      -> {m.new}")
    if score < MIN_SCORE:
        ok = False
        print(f"\nFAIL: {score:.1%} killed, under {MIN_SCORE:.0%}")
    if any(m.function in CRITICAL for m in survivors):
        ok = False
        print("FAIL: a critical comparison or endpoint check has a surviving mutant")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("functions", nargs="*", help="function keys to mutate (default: all TARGETS)")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="directory to copy the project into (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (mutmut's mutants/)")
    parser.add_argument("--report", type=Path, metavar="DIR", help="only re-read the results of a kept work directory")
    args = parser.parse_args(argv)

    every = [f for functions in TARGETS.values() for f in functions]
    wanted = args.functions or every
    unknown = [f for f in wanted if f not in every]
    if unknown:
        parser.error(f"not a target: {', '.join(unknown)}")

    if args.report is not None:
        results = _collect(args.report / "mutants", set(wanted))
        _describe(args.report / "mutants", results)
        return 0 if _report(results, wanted) else 1

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sut-soap-mutate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if any(workdir.iterdir()):
        parser.error(f"{workdir} is not empty")
    started = time.monotonic()
    try:
        _prepare(workdir)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        command = [
            sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children),
            *(f"{f}__mutmut_*" for f in wanted),
        ]
        print("$ (cd", workdir, "&&", " ".join(command[1:4]), "...)", flush=True)
        run = subprocess.run(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: S603
                             text=True, check=False)
        log = workdir / "mutmut.log"
        log.write_text(run.stdout, encoding="utf-8")
        mutants_dir = workdir / "mutants"
        results = _collect(mutants_dir, set(wanted))
        if run.returncode != 0 or not results:
            tail = run.stdout[-3000:]
            print(f"mutmut run failed (exit {run.returncode}); last output:\n{tail}", file=sys.stderr)
            args.keep = True
            return 2
        _describe(mutants_dir, results)
        ok = _report(results, wanted)
        print(f"\n{len(results)} mutants in {time.monotonic() - started:.0f} s with {args.max_children} workers")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
