"""The tenants file of ``sut-soap warm``: CSV with a header, or JSON lines, checked line by line.

Each record names a tenant and its system user token::

    context_identifier,system_user_token
    Cust12345,Acme Sync-8k8Q7DmBgo
    Cust67890,                            <- refused: no token

    {"context_identifier": "Cust12345", "system_user_token_env": "ACME_CUST12345_TOKEN"}

The token is given in the file (``system_user_token``) or as the name of an environment
variable holding it (``system_user_token_env``), one of the two per record; a CSV header may
carry both columns and each row fills one. The tokens are secrets, so a refusal names the line
and the column, never a value that could be a token: not the text of an unknown CSV column (a
file without its header puts a token there), not a bad context identifier (a swapped column puts
a token there), not the name in ``system_user_token_env`` (users put the token itself there by
mistake). A context identifier is named once it has the shape of one.

Refused, each as a :class:`TenantFileError` (a ``ConfigurationError``, exit code 2): a file that
is not UTF-8 (a UTF-8 BOM is allowed), a line over :data:`MAX_LINE_BYTES`, more than
:data:`MAX_TENANTS` tenants or :data:`MAX_LINES` lines, a CSV that does not parse, a header with an unknown, repeated or
missing column, a record with too many or too few fields, a missing or empty value, both token
columns filled, a value with surrounding whitespace or a control character, a context
identifier that is not letters, digits, ``.``, ``_`` and ``-`` (at most 64), a variable name that
is not one or a variable that is not set, a tenant listed twice (an error rather than a silent
choice between two tokens), and a file with no tenants. Blank lines are skipped. Problems with
single records are collected: the error names the first and the line numbers of up to ten more.
"""

from __future__ import annotations

import re

from ..errors import ConfigurationError

# typing is not imported at run time: see sut_soap.cli's docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import IO

__all__ = [
    "COLUMNS",
    "FORMATS",
    "MAX_LINES",
    "MAX_LINE_BYTES",
    "MAX_TENANTS",
    "TenantEntry",
    "TenantFileError",
    "format_for",
    "read_tenants",
]

#: The column names (CSV header) and keys (JSON lines) a tenants file may use.
COLUMNS = ("context_identifier", "system_user_token", "system_user_token_env")
#: The formats, and the file name endings that select them.
FORMATS = {"csv": (".csv",), "jsonl": (".jsonl", ".ndjson")}
#: The most tenants one file may list: what the default in-memory ticket store holds
#: (``sut_soap.cache.DEFAULT_MAX_ENTRIES``); beyond it a run would evict its own tickets.
MAX_TENANTS = 100_000
#: The most lines, blank ones and the header included.
MAX_LINES = MAX_TENANTS + 1
#: The longest line, in bytes with its line break; a record is a tenant id, a token or a variable name.
MAX_LINE_BYTES = 16 * 1024

_CONTEXT_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VARIABLE_SHAPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY_SHOWN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_MORE_SHOWN = 10
_HEADER_HINT = "the first line must be a header: context_identifier,system_user_token (or system_user_token_env)"


class TenantFileError(ConfigurationError):
    """The tenants file cannot be used; the message names the line, never a token.

    Attributes:
        line: the line of the (first) problem, or None for the file as a whole.
        more_lines: the lines of further problems, at most ten.
    """

    default_hint = "the tenants file (see `sut-soap warm --help` for its format)"

    def __init__(
        self, message: str, *, line: int | None = None, more_lines: tuple[int, ...] = (), hint: str | None = None
    ) -> None:
        self.line = line
        self.more_lines = more_lines
        where = "the tenants file" if line is None else f"line {line} of the tenants file"
        text = f"{where}: {message}"
        if more_lines:
            text += "; more problems on line(s) " + ", ".join(str(n) for n in more_lines)
        super().__init__(text, hint=hint)


class TenantEntry:
    """One tenant of the file: its context identifier, system user token and line; the repr hides the token."""

    __slots__ = ("context_identifier", "line", "system_user_token")

    def __init__(self, context_identifier: str, system_user_token: str, line: int) -> None:
        self.context_identifier = context_identifier
        self.system_user_token = system_user_token
        self.line = line

    def __repr__(self) -> str:
        return f"TenantEntry({self.context_identifier!r}, system_user_token='***', line={self.line})"


class _Problem(Exception):
    """A record that cannot be used: collected, then reported with the others."""


def format_for(name: str, given: str | None) -> str:
    """The format of the file ``name`` (``-`` for stdin): ``given`` (--format), else from its ending.

    Raises:
        ConfigurationError: no --format for stdin or for a name with another ending.
    """
    if given is not None:
        return given
    lowered = name.lower()
    for fmt, endings in FORMATS.items():
        if lowered.endswith(endings):
            return fmt
    what = "the tenants file on stdin" if name == "-" else "the tenants file's name ending"
    raise ConfigurationError(
        f"{what} does not say its format",
        hint="name it .csv, .jsonl or .ndjson, or pass --format csv|jsonl",
    )


def read_tenants(stream: IO[bytes] | IO[str], fmt: str, *, environ: Mapping[str, str]) -> list[TenantEntry]:
    """Read and check every tenant of ``stream`` (bytes are decoded as strict UTF-8).

    Args:
        stream: the file, opened in binary (or text, such as a test's stdin).
        fmt: ``"csv"`` or ``"jsonl"``.
        environ: where ``system_user_token_env`` names are looked up.

    Returns:
        The tenants in file order.

    Raises:
        TenantFileError: anything the module docstring lists.
    """
    lines = _lines(stream)
    records = _csv_records(lines) if fmt == "csv" else _jsonl_records(lines)
    tenants: list[TenantEntry] = []
    first_line: dict[str, int] = {}
    problems: list[tuple[int, str]] = []
    for line, record in records:
        try:
            entry = _entry(record, line, environ)
            if entry.context_identifier in first_line:
                raise _Problem(
                    f"tenant {entry.context_identifier} is listed again (first on line "
                    f"{first_line[entry.context_identifier]})"
                )
        except _Problem as problem:
            problems.append((line, str(problem)))
            if len(problems) > _MORE_SHOWN:
                break
            continue
        first_line[entry.context_identifier] = line
        tenants.append(entry)
        if len(tenants) > MAX_TENANTS:
            raise TenantFileError(f"lists more than {MAX_TENANTS} tenants", line=line,
                                  hint="split the file and run warm once per part")
    if problems:
        (line, message), *more = problems
        raise TenantFileError(message, line=line, more_lines=tuple(n for n, _ in more))
    if not tenants:
        raise TenantFileError("lists no tenants", hint=_HEADER_HINT + ", then one line per tenant")
    return tenants


def _lines(stream: IO[bytes] | IO[str]) -> Iterator[tuple[int, str]]:
    """(line number, text without its line break), each line bounded and decoded as UTF-8."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if number > MAX_LINES:
            raise TenantFileError(f"is past the limit of {MAX_LINES} lines (blank lines count)", line=number,
                                  hint="split the file and run warm once per part")
        if isinstance(raw, bytes):
            if len(raw) > MAX_LINE_BYTES:
                raise TenantFileError(f"is longer than {MAX_LINE_BYTES} bytes", line=number)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TenantFileError(
                    f"is not UTF-8 (byte {exc.start + 1} of the line)", line=number,
                    hint="save the file as UTF-8",
                ) from None
        else:
            text = raw
            if len(text.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
                raise TenantFileError(f"is longer than {MAX_LINE_BYTES} bytes", line=number)
        if number == 1:
            text = text.removeprefix("\ufeff")
        yield number, text.rstrip("\r\n")


def _csv_records(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, dict[str, str]]]:
    import csv

    current = 0

    def texts() -> Iterator[str]:
        nonlocal current
        for current, text in lines:  # noqa: B007 - current is read by the caller through nonlocal
            yield text

    reader = csv.reader(texts(), strict=True)
    header: list[str] | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            # csv's messages can quote a character of the field: not shown.
            raise TenantFileError(
                "is not valid CSV (a quote not closed or followed by text, or a NUL byte)", line=current,
                hint="quote a value holding a comma or a quote with \"...\", and double quotes inside it",
            ) from None
        if not any(field.strip() for field in row):
            continue
        if header is None:
            header = _header(row, current)
            continue
        if len(row) != len(header):
            yield current, {"": f"has {len(row)} fields; the header has {len(header)}"}
            continue
        yield current, {name: value for name, value in zip(header, row, strict=True)}


def _header(row: list[str], line: int) -> list[str]:
    names = [field.strip() for field in row]
    for position, name in enumerate(names, start=1):
        if name not in COLUMNS:
            raise TenantFileError(
                f"column {position} of the header is not one of {', '.join(COLUMNS)} "
                "(its text is not shown: without a header it would be a token)",
                line=line, hint=_HEADER_HINT,
            )
        if names.index(name) != position - 1:
            raise TenantFileError(f"the header names {name} twice", line=line, hint=_HEADER_HINT)
    _check_columns(names, line, "header")
    return names


def _check_columns(names: list[str], line: int, what: str) -> None:
    if "context_identifier" not in names:
        raise TenantFileError(f"the {what} has no context_identifier", line=line, hint=_HEADER_HINT)
    if "system_user_token" not in names and "system_user_token_env" not in names:
        raise TenantFileError(
            f"the {what} has neither system_user_token nor system_user_token_env", line=line, hint=_HEADER_HINT
        )


def _jsonl_records(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, dict[str, str]]]:
    import json

    for line, text in lines:
        if not text.strip():
            continue
        try:
            value = json.loads(text, object_pairs_hook=_unique_keys)
        except _Problem as problem:
            yield line, {"": str(problem)}
            continue
        except RecursionError:
            yield line, {"": "is not JSON (nested too deeply)"}
            continue
        except json.JSONDecodeError as exc:
            # The position only: the document is not shown.
            yield line, {"": f"is not JSON (column {exc.colno})"}
            continue
        if not isinstance(value, dict):
            yield line, {"": f"is JSON but not an object (a {type(value).__name__})"}
            continue
        unknown = [key for key in value if key not in COLUMNS]
        if unknown:
            shown = [key for key in unknown if _KEY_SHOWN.fullmatch(key)]
            named = f" ({', '.join(shown)})" if len(shown) == len(unknown) else ""
            yield line, {"": f"has a key that is not one of {', '.join(COLUMNS)}{named}"}
            continue
        wrong = [key for key, item in value.items() if not isinstance(item, str)]
        if wrong:
            yield line, {"": f"{wrong[0]} must be a string, not {type(value[wrong[0]]).__name__}"}
            continue
        yield line, value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Problem("has an object with a key given twice")
    return dict(pairs)


def _entry(record: Mapping[str, str], line: int, environ: Mapping[str, str]) -> TenantEntry:
    """The tenant of one record, or the _Problem that makes it unusable."""
    if "" in record:
        raise _Problem(record[""])
    context = record.get("context_identifier", "")
    if not context:
        raise _Problem("context_identifier is missing or empty")
    _check_text(context, "context_identifier")
    if not _CONTEXT_SHAPE.fullmatch(context):
        raise _Problem(
            "context_identifier is not a tenant id like Cust12345: letters, digits, '.', '_' and '-', at most 64 "
            "(not shown, in case a token is in that column)"
        )
    token = record.get("system_user_token", "")
    variable = record.get("system_user_token_env", "")
    if token and variable:
        raise _Problem("gives both system_user_token and system_user_token_env; give one")
    if variable:
        if not _VARIABLE_SHAPE.fullmatch(variable):
            raise _Problem(
                "system_user_token_env is not the name of an environment variable "
                "(not shown: it may be the token itself)"
            )
        if variable not in environ:
            raise _Problem(
                "the variable named in system_user_token_env is not set (its name is not shown, in case it is "
                "the token itself)"
            )
        token = environ[variable]
        if not token:
            raise _Problem("the variable named in system_user_token_env is set but empty")
        _check_text(token, "the variable named in system_user_token_env")
    elif token:
        _check_text(token, "system_user_token")
    else:
        raise _Problem("has no system_user_token (or system_user_token_env)")
    return TenantEntry(context, token, line)


def _check_text(value: str, what: str) -> None:
    from ..signing import check_text_value

    try:
        check_text_value(value, what)
    except ConfigurationError as error:
        raise _Problem(error.message) from None
