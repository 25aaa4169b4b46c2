"""A scan of files for secret-looking values (JWTs, tickets, signed tokens, private keys)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from sut_soap.testing._raw import _TICKET_SHAPE, _jwt_spans

__all__ = ["SecretFinding", "scan_for_secrets"]


@dataclass(frozen=True)
class SecretFinding:
    """A secret-looking value in a file; ``excerpt`` shows only its first characters."""

    path: Path
    line: int
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} ({self.excerpt})"


_PEM_PRIVATE = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_XML_PRIVATE = re.compile(r"<(?:[\w.-]+:)?(D|P|Q|DP|DQ|InverseQ)>\s*[A-Za-z0-9+/=\s]{40,}</(?:[\w.-]+:)?\1>")
_SCAN_SIGNED = re.compile(r"\.[0-9]{12}\.[A-Za-z0-9+/]{100,}={0,2}")


def scan_for_secrets(
    root: str | os.PathLike[str], *, allowed_keys: Iterable[str | os.PathLike[str]] = ()
) -> list[SecretFinding]:
    """Find secret-looking values in every file under ``root``.

    Flags JWTs (three base64url segments whose header is JSON with ``alg``), ``7T:`` tickets,
    signed system tokens, PEM private keys, ``<RSAKeyValue>`` private members and DER private
    keys. Files in ``allowed_keys`` (documented test keys) may hold private keys.
    """
    allowed = {Path(p).resolve() for p in allowed_keys}
    findings: list[SecretFinding] = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        text = data.decode("utf-8", errors="replace")
        is_key_file = path.resolve() in allowed

        def flag(kind: str, match: re.Match[str], path: Path = path, text: str = text) -> None:
            line = text.count("\n", 0, match.start()) + 1
            findings.append(SecretFinding(path, line, kind, match.group(0)[:8] + "..."))

        for start, _ in _jwt_spans(text):
            line = text.count("\n", 0, start) + 1
            findings.append(SecretFinding(path, line, "JWT", text[start : start + 8] + "..."))
        for match in _TICKET_SHAPE.finditer(text):
            flag("7T: ticket", match)
        for match in _SCAN_SIGNED.finditer(text):
            flag("signed system token", match)
        if is_key_file:
            continue
        for match in _PEM_PRIVATE.finditer(text):
            flag("PEM private key", match)
        xml_key = _XML_PRIVATE.search(text)
        if xml_key is not None:
            flag("RSAKeyValue private key", xml_key)
        if b"\x00" in data[:4096] or text.count("\ufffd") > 0:
            try:
                serialization.load_der_private_key(data, password=None)
            except TypeError:  # an encrypted DER private key
                findings.append(SecretFinding(path, 1, "DER private key (encrypted)", "binary"))
            except ValueError:
                pass
            else:
                findings.append(SecretFinding(path, 1, "DER private key", "binary"))
    return findings

