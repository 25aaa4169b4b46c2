"""Recordings on disk: refusals of damaged files and the DER key scan, not covered elsewhere (issue 7)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jwt_factory import rsa_key

from sut_soap.errors import ConfigurationError
from sut_soap.testing import Exchange, load_recording, placeholder, save_recording, scan_for_secrets

SUCCESS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings" / "success"


def copy_success(tmp_path: Path) -> Path:
    target = tmp_path / "success"
    shutil.copytree(SUCCESS, target)
    return target


def edit(directory: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = directory / "01-exchange.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def refused(directory: Path) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        load_recording(directory)
    assert caught.value.hint == "re-record, or fix the file by hand"
    return caught.value


def test_exchange_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    """An NN-exchange.json that is not JSON is refused, naming the file and the decoding problem."""
    directory = copy_success(tmp_path)
    (directory / "01-exchange.json").write_bytes(b"{not json")
    error = refused(directory)
    assert error.message == f"the recording file {directory / '01-exchange.json'} is not readable JSON (JSONDecodeError)"


def test_exchange_without_request_object_is_refused(tmp_path: Path) -> None:
    """An exchange whose request is not an object is refused."""
    directory = copy_success(tmp_path)
    path = edit(directory, lambda d: d.update(request="POST /"))
    assert refused(directory).message == f"the recording file {path} has no request object"


def test_body_name_outside_the_directory_is_refused(tmp_path: Path) -> None:
    """A body file name that leaves the recording directory (../) is refused, never read."""
    directory = copy_success(tmp_path)
    path = edit(directory, lambda d: d["request"].update(body="../../etc/passwd"))
    error = refused(directory)
    assert error.message.startswith(f"the recording file {path} names a body file '../../etc/passwd'")


def test_missing_body_file_is_refused_with_the_os_reason(tmp_path: Path) -> None:
    """A body file the exchange names but the directory lacks is refused with the OS reason."""
    directory = copy_success(tmp_path)
    (directory / "01-response.xml").unlink()
    error = refused(directory)
    assert error.message == f"the recording file {directory / '01-response.xml'} cannot be read: No such file or directory"


def test_headers_that_are_not_strings_are_refused(tmp_path: Path) -> None:
    """Response headers that are not a JSON object of strings are refused."""
    directory = copy_success(tmp_path)
    path = edit(directory, lambda d: d["response"].update(headers={"Content-Length": 12}))
    assert refused(directory).message == f"the recording file {path} has response headers that are not a JSON object of strings"


def test_recorded_at_that_is_not_iso_is_refused(tmp_path: Path) -> None:
    """A recorded_at that is not an ISO 8601 time is refused."""
    directory = copy_success(tmp_path)
    path = edit(directory, lambda d: d.update(recorded_at="yesterday"))
    assert refused(directory).message == f"the recording file {path} has a recorded_at that is not an ISO 8601 time"


def test_recorded_at_without_zone_is_read_as_utc(tmp_path: Path) -> None:
    """A recorded_at without a time zone is taken as UTC."""
    directory = copy_success(tmp_path)
    edit(directory, lambda d: d.update(recorded_at="2026-11-28T14:15:37"))
    (exchange,) = load_recording(directory).exchanges
    assert exchange.recorded_at is not None
    assert exchange.recorded_at.tzinfo is timezone.utc
    assert exchange.recorded_at.hour == 14


def test_error_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    """An exchange with an error that is not an object (and no response) is refused."""
    directory = copy_success(tmp_path)
    path = edit(directory, lambda d: d.update(response=None, error="boom"))
    assert refused(directory).message == f"the recording file {path} has a response or error that is not an object"


@pytest.mark.parametrize(
    ("encryption", "kind"),
    [
        (serialization.NoEncryption(), "DER private key"),
        (serialization.BestAvailableEncryption(b"pw"), "DER private key (encrypted)"),
    ],
    ids=["plain", "encrypted"],
)
def test_scan_finds_der_private_keys(tmp_path: Path, encryption: Any, kind: str) -> None:
    """The secret scan flags a binary DER private key, encrypted or not, by kind and never by value."""
    der = rsa_key(0).private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption)
    (tmp_path / "key.bin").write_bytes(der)
    (tmp_path / "noise.bin").write_bytes(b"\x00\x01\x02 not a key")
    findings = scan_for_secrets(tmp_path)
    assert [(f.path.name, f.kind, f.excerpt) for f in findings] == [("key.bin", kind, "binary")]


def test_request_without_body_or_headers_loads_empty(tmp_path: Path) -> None:
    """An exchange whose request has no body file and no headers loads with body None and no headers."""
    directory = copy_success(tmp_path)
    edit(directory, lambda d: d["request"].update(body=None, headers=None))
    (exchange,) = load_recording(directory).exchanges
    assert exchange.request_body is None
    assert exchange.request_headers == {}
    assert exchange.response_body


@pytest.mark.parametrize(
    ("headers", "body", "suffix"),
    [
        ({"Content-Type": "text/html; charset=utf-8"}, b"<p>busy</p>", ".html"),
        ({"Content-Type": "application/json"}, b"{}", ".json"),
        ({}, b"  <!DOCTYPE html><html><body>busy</body></html>", ".html"),
        ({}, b"<s:Envelope/>", ".xml"),
        ({}, b"plain words", ".txt"),
        ({}, b"\xff\xfe\x00binary", ".bin"),
    ],
    ids=["html-type", "json-type", "sniffed-html", "sniffed-xml", "text", "binary"],
)
def test_saved_response_file_is_named_by_its_content(tmp_path: Path, headers: dict[str, str], body: bytes, suffix: str) -> None:
    """A saved answer's file extension follows its Content-Type, else what its bytes look like."""
    exchange = Exchange(url="http://127.0.0.1:9/x", request_body=None, status=503, response_headers=headers, response_body=body)
    written = save_recording(tmp_path / "rec", [exchange])
    assert [path.name for path in written if "response" in path.name] == [f"01-response{suffix}"]
    (loaded,) = load_recording(tmp_path / "rec").exchanges
    assert loaded.response_body == body


def test_unknown_placeholder_name_is_refused() -> None:
    """placeholder() refuses a name outside PLACEHOLDER_NAMES, listing the valid ones."""
    assert placeholder("TICKET") == "{{SUT_SOAP:TICKET}}"
    with pytest.raises(ValueError, match="unknown placeholder 'PASSWORD'; expected one of"):
        placeholder("PASSWORD")


def test_empty_substitution_is_refused(tmp_path: Path) -> None:
    """load_recording refuses an empty string as a value to fill a placeholder with."""
    with pytest.raises(ConfigurationError, match="the substitution for TICKET must be a non-empty string"):
        load_recording(copy_success(tmp_path), ticket="")


def test_recording_directory_that_cannot_be_made_is_refused(tmp_path: Path) -> None:
    """Saving under a path whose parent is a file is a ConfigurationError naming the directory."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    exchange = Exchange(url="http://127.0.0.1:9/x", request_body=b"<x/>")
    with pytest.raises(ConfigurationError) as caught:
        save_recording(blocker / "rec", [exchange])
    assert caught.value.message.startswith(f"cannot prepare the recording directory {blocker / 'rec'}: ")


def test_unwritable_recording_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body file that cannot be written (disk full) is a ConfigurationError naming the file."""

    def full(self: Path, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    exchange = Exchange(url="http://127.0.0.1:9/x", request_body=b"<x/>")
    with pytest.raises(ConfigurationError) as caught:
        save_recording(tmp_path / "rec", [exchange])
    assert caught.value.message == f"cannot write the recording file {tmp_path / 'rec' / '01-request.xml'}: No space left on device"
    assert caught.value.hint == "that the recording directory is writable"
