"""A recording on disk: saving it file by file, loading it back with placeholders filled."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as _xml_escape

from sut_soap.errors import (
    ConfigurationError,
)
from sut_soap.testing._raw import _latin
from sut_soap.testing.exchanges import _PLACEHOLDER, FORMAT, Exchange, RecordedError, Recording, _substitutions
from sut_soap.testing.redaction import redact_exchange

__all__ = ["load_recording", "save_recording"]


_MAX_BODY_FILE = 64 * 1024 * 1024
_EXCHANGE_FILE = re.compile(r"([0-9]{2,6})-exchange\.json")
_OWN_FILE = re.compile(r"[0-9]{2,6}-(exchange\.json|request\.[a-z]+|response\.[a-z]+)")
_SAFE_NAME = re.compile(r"[0-9]{2,6}-(request|response)\.[a-z]{2,4}")


def _extension(headers: Mapping[str, str], body: bytes) -> str:
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "").lower()
    if "html" in content_type:
        return ".html"
    if "xml" in content_type:
        return ".xml"
    if "json" in content_type:
        return ".json"
    stripped = body.lstrip()
    if stripped.startswith(b"<"):
        return ".html" if stripped[:100].lower().startswith((b"<!doctype html", b"<html")) else ".xml"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return ".bin"
    return ".txt"


def _placeholders_in(*chunks: Any) -> list[str]:
    names: set[str] = set()
    for chunk in chunks:
        text = _latin(chunk) if isinstance(chunk, bytes) else json.dumps(chunk)
        names.update(_PLACEHOLDER.findall(text))
    return sorted(names)


def _existing_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and _OWN_FILE.fullmatch(p.name))


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the recording file {path}: {exc.strerror or type(exc).__name__}",
            hint="that the recording directory is writable",
        ) from None


def _refuse_existing(directory: Path) -> None:
    existing = _existing_files(directory)
    if existing:
        raise ConfigurationError(
            f"{directory} already holds a recording ({len(existing)} files)",
            hint="choose an empty directory or pass overwrite=True to replace it",
        )


def _prepare_directory(directory: Path, *, overwrite: bool) -> None:
    if not overwrite:
        _refuse_existing(directory)
    existing = _existing_files(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path in existing:
            path.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot prepare the recording directory {directory}: {exc.strerror or type(exc).__name__}"
        ) from None


def _write_exchange(directory: Path, number: int, exchange: Exchange) -> list[Path]:
    stem = f"{number:02d}"
    written: list[Path] = []
    request_name = response_name = None
    if exchange.request_body is not None:
        request_name = f"{stem}-request{_extension(exchange.request_headers, exchange.request_body)}"
        _write(directory / request_name, exchange.request_body)
        written.append(directory / request_name)
    if exchange.status is not None:
        body = exchange.response_body or b""
        response_name = f"{stem}-response{_extension(exchange.response_headers, body)}"
        _write(directory / response_name, body)
        written.append(directory / response_name)
    document: dict[str, Any] = {
        "format": FORMAT,
        "source": exchange.source,
        "note": exchange.note,
        "recorded_at": None if exchange.recorded_at is None else exchange.recorded_at.isoformat(timespec="seconds"),
        "redacted": _placeholders_in(
            exchange.request_body or b"", exchange.response_body or b"", dict(exchange.response_headers),
            dict(exchange.jwt_claims or {}), exchange.error.message if exchange.error else "",
        ),
        "request": {
            "method": exchange.method,
            "url": exchange.url,
            "headers": dict(exchange.request_headers),
            "body": request_name,
        },
        "response": None
        if exchange.status is None
        else {
            "status": exchange.status,
            "reason": exchange.reason,
            "headers": dict(exchange.response_headers),
            "body": response_name,
        },
        "error": None if exchange.error is None else {
            "type": exchange.error.type,
            "message": exchange.error.message,
            "context": exchange.error.context,
            "status": exchange.error.status,
            "retryable": exchange.error.retryable,
            **({} if exchange.error.host is None else {"host": exchange.error.host}),
            **({} if exchange.error.phase is None else {"phase": exchange.error.phase}),
        },
        "jwt": None
        if exchange.jwt_claims is None
        else {"header": dict(exchange.jwt_header or {}), "claims": dict(exchange.jwt_claims)},
    }
    if exchange.signed_at is not None:
        document["request"]["signed_at"] = exchange.signed_at
    path = directory / f"{stem}-exchange.json"
    _write(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return [path, *written]


def save_recording(
    directory: str | os.PathLike[str],
    exchanges: Iterable[Exchange],
    *,
    overwrite: bool = False,
    client_secret: str | None = None,
    system_user_token: str | None = None,
    context_identifier: str | None = None,
    redact_context_identifier: bool = False,
) -> list[Path]:
    """Redact ``exchanges`` and write them to ``directory``; return the files written.

    A directory that already holds a recording is refused unless ``overwrite=True``, which
    removes the old exchange files first (other files, such as a README, stay).
    """
    target = Path(directory)
    items = list(exchanges)
    _prepare_directory(target, overwrite=overwrite)
    written: list[Path] = []
    for number, exchange in enumerate(items, start=1):
        redacted = redact_exchange(
            exchange,
            client_secret=client_secret,
            system_user_token=system_user_token,
            context_identifier=context_identifier,
            redact_context_identifier=redact_context_identifier,
        )
        written += _write_exchange(target, number, redacted)
    return written


def _bad(path: Path, what: str) -> ConfigurationError:
    return ConfigurationError(f"the recording file {path} {what}", hint="re-record, or fix the file by hand")


def _read_body(directory: Path, name: object, json_path: Path) -> bytes | None:
    if name is None:
        return None
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise _bad(json_path, f"names a body file {str(name)[:60]!r}, which is not a file of this directory")
    return _read_file_of(directory, directory / name)


def _read_file_of(directory: Path, path: Path) -> bytes:
    """A regular file of the recording, at most _MAX_BODY_FILE bytes.

    A tampered recording must not make a replay read elsewhere (a symlink out of the
    directory) or block forever (a FIFO).
    """
    try:
        if not path.resolve().is_relative_to(directory.resolve()):
            raise _bad(path, "is a link to a file outside the recording directory")
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise _bad(path, "is not a regular file")
        if info.st_size > _MAX_BODY_FILE:
            raise _bad(path, f"is larger than {_MAX_BODY_FILE} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise _bad(path, f"cannot be read: {exc.strerror or type(exc).__name__}") from None


def _str_map(value: object, path: Path, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _bad(path, f"has {what} that are not a JSON object of strings")
    return dict(value)


def _read_exchange(directory: Path, path: Path) -> Exchange:
    data = _read_file_of(directory, path)
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _bad(path, f"is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _bad(path, f"is not in the format {FORMAT}")
    request = document.get("request")
    if not isinstance(request, dict):
        raise _bad(path, "has no request object")
    response = document.get("response")
    error = document.get("error")
    if (response is None) == (error is None):
        raise _bad(path, "must have exactly one of response and error")
    recorded_at = _recorded_at(document.get("recorded_at"), path)
    status: int | None = None
    reason = ""
    response_headers: dict[str, str] = {}
    response_body = None
    recorded_error = None
    if isinstance(response, dict):
        status = response.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise _bad(path, "has a response status that is not an HTTP status code")
        reason = str(response.get("reason") or "")
        response_headers = _str_map(response.get("headers"), path, "response headers")
        response_body = _read_body(directory, response.get("body"), path) or b""
    elif isinstance(error, dict) and isinstance(error.get("type"), str):
        recorded_error = _recorded_error(error)
    else:
        raise _bad(path, "has a response or error that is not an object")
    jwt_part = document.get("jwt")
    jwt_header = jwt_claims = None
    if isinstance(jwt_part, dict) and isinstance(jwt_part.get("claims"), dict):
        jwt_claims = jwt_part["claims"]
        jwt_header = jwt_part.get("header") if isinstance(jwt_part.get("header"), dict) else {}
    return Exchange(
        url=str(request.get("url") or ""),
        method=str(request.get("method") or "POST"),
        request_headers=_str_map(request.get("headers"), path, "request headers"),
        request_body=_read_body(directory, request.get("body"), path),
        status=status,
        reason=reason,
        response_headers=response_headers,
        response_body=response_body,
        error=recorded_error,
        recorded_at=recorded_at,
        jwt_header=jwt_header,
        jwt_claims=jwt_claims,
        signed_at=request.get("signed_at") if isinstance(request.get("signed_at"), str) else None,
        source=str(document.get("source") or "recorded"),
        note=str(document.get("note") or ""),
    )


def _fill_text(text: str, values: Mapping[str, str], *, xml: bool = False) -> str:
    def swap(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return match.group(0)
        return _xml_escape(value) if xml else value

    return _PLACEHOLDER.sub(swap, text)


def _fill_body(data: bytes, values: Mapping[str, str]) -> bytes:
    if b"{{SUT_SOAP:" not in data:
        return data
    text = data.decode("utf-8", errors="surrogateescape")
    if data.lstrip()[:1] == b"{":  # a REST body: each value goes inside a JSON string
        def swap(match: re.Match[str]) -> str:
            return json.dumps(values.get(match.group(1), match.group(0)), ensure_ascii=False)[1:-1]

        return _PLACEHOLDER.sub(swap, text).encode("utf-8", errors="surrogateescape")
    return _fill_text(text, values, xml=True).encode("utf-8", errors="surrogateescape")


def _fill_json(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _fill_text(value, values)
    if isinstance(value, list):
        return [_fill_json(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _fill_json(item, values) for key, item in value.items()}
    return value


def load_recording(
    directory: str | os.PathLike[str],
    *,
    jwt: str | None = None,
    ticket: str | None = None,
    client_secret: str | None = None,
    context_identifier: str | None = None,
    system_user_token: str | None = None,
    signed_token: str | None = None,
) -> Recording:
    """Read a recording; fill the placeholders of its answers with the values given.

    Requests keep their placeholders (a replay matches them against what the client sends);
    answers get the given values now and, at replay, the rest from what the client sent.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigurationError(f"{root} is not a directory", hint="the path of a recording directory")
    files = sorted(
        (int(m.group(1)), p) for p in root.iterdir() if (m := _EXCHANGE_FILE.fullmatch(p.name)) and p.is_file()
    )
    if not files:
        raise ConfigurationError(f"{root} holds no NN-exchange.json file", hint="the path of a recording directory")
    values = _substitutions(
        jwt=jwt, ticket=ticket, client_secret=client_secret, context_identifier=context_identifier,
        system_user_token=system_user_token, signed_token=signed_token,
    )
    exchanges = []
    for _, path in files:
        exchange = _read_exchange(root, path)
        if values and exchange.response_body is not None:
            exchange = replace(
                exchange,
                response_body=_fill_body(exchange.response_body, values),
                response_headers={k: _fill_text(v, values) for k, v in exchange.response_headers.items()},
            )
        exchanges.append(exchange)
    return Recording(tuple(exchanges), root, values)


def _recorded_at(value: object, path: Path) -> datetime | None:
    """The exchange's recording time (UTC when the file gives no offset), or None when absent."""
    if not value:
        return None
    try:
        recorded_at = datetime.fromisoformat(str(value))
    except ValueError:
        raise _bad(path, "has a recorded_at that is not an ISO 8601 time") from None
    return recorded_at if recorded_at.tzinfo is not None else recorded_at.replace(tzinfo=timezone.utc)


def _recorded_error(error: dict[str, Any]) -> RecordedError:
    """The transport failure an exchange recorded instead of an answer."""
    status = error.get("status")
    retryable = error.get("retryable")
    context = error.get("context")
    host = error.get("host")
    phase = error.get("phase")
    return RecordedError(
        type=error["type"],
        message=str(error.get("message") or ""),
        context=context if isinstance(context, str) else None,
        status=status if isinstance(status, int) else None,
        retryable=retryable if isinstance(retryable, bool) else None,
        host=host if isinstance(host, str) else None,
        phase=phase if isinstance(phase, str) else None,
    )
