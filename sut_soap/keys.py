"""The partner's RSA private key: reading it in every form partners hold it, and writing it back.

A system user token is signed (see ``sut_soap.signing``) with the RSA private key whose public
half is registered for the partner application in SuperOffice's developer portal. Partners
hold that key in one of these forms, all read by :func:`load_private_key`:

.NET ``<RSAKeyValue>`` XML
    What the developer portal hands out: the output of .NET's ``RSA.ToXmlString(true)``::

        <RSAKeyValue><Modulus>...</Modulus><Exponent>AQAB</Exponent><P>...</P><Q>...</Q>
        <DP>...</DP><DQ>...</DQ><InverseQ>...</InverseQ><D>...</D></RSAKeyValue>

    Each value is standard Base64 of a big-endian unsigned integer: n, e, the primes p and q,
    d mod (p-1), d mod (q-1), q^-1 mod p (``cryptography`` calls it ``iqmp``) and d. Files
    saved on Windows often start with a UTF-8 byte order mark, end lines with CRLF and wrap
    long values; all of that is tolerated, as are an XML declaration and leading zero bytes
    (Java's ``BigInteger.toByteArray`` adds one). A document holding only ``Modulus`` and
    ``Exponent`` is the public key, which cannot sign. DOCTYPE and entity declarations are
    refused outright: a key file has no use for them, and they are how XML reads local files
    or exhausts memory.
PEM
    ``BEGIN RSA PRIVATE KEY`` (PKCS#1, OpenSSL's traditional form), ``BEGIN PRIVATE KEY``
    (PKCS#8), and encrypted: ``BEGIN ENCRYPTED PRIVATE KEY`` (PKCS#8) or PKCS#1 with
    ``Proc-Type``/``DEK-Info`` headers, which need ``password=``. What people get when they
    paste the XML into a web converter (please do not: the key leaves your hands).
DER
    The binary form of PKCS#1 or PKCS#8 (PKCS#8 optionally encrypted).

A ``cryptography`` RSA private key object is taken as it is. Whatever the form, the key must be
RSA and at least 2048 bits long.

A ``str`` is key *content* when, after an optional byte order mark and whitespace, it starts
with ``<`` (XML) or contains ``-----BEGIN`` (PEM); any other ``str`` is a file path.
``bytes`` are always content (PEM, DER or XML), never a path; an ``os.PathLike`` is always a
path. An empty password counts as no password, as it does in ``cryptography``. A password given
for a key that is not encrypted is an error rather than silently ignored: it usually means the
wrong file was picked up, for example the unencrypted working copy instead of the vaulted one.

Every failure is a :class:`~sut_soap.errors.ConfigurationError` that names the problem and what
to check, and never quotes a byte of the key or of the file. The messages of ``cryptography``
and ``lxml`` are not passed on, and errors are raised after the ``except`` block has ended, so
neither ``__cause__`` nor ``__context__`` carries the third-party exception. Key files readable
or writable by group or others, or owned by another user, load with a
:class:`KeyFilePermissionWarning`.

The writers go the other way: :func:`private_key_to_rsa_xml` produces the document .NET's
``ToXmlString(true)`` would, :func:`private_key_to_pem` unencrypted PKCS#8 PEM, and
:func:`public_key_fingerprint` a value that identifies the key in logs and support requests
without revealing it. They live in :mod:`sut_soap.keyexport` and are importable from here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import os
import re
import stat
import sys
import warnings
from collections.abc import Callable
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from lxml import etree

from sut_soap.errors import ConfigurationError
from sut_soap.keyexport import (
    _PORTAL_KEY_HINT,
    _public_not_private,
    _refusal_for_object,
    private_key_to_pem,
    private_key_to_rsa_xml,
    public_key_fingerprint,
)
from sut_soap.safexml import hardened_parser, has_dtd, name_of

__all__ = [
    "KeyFilePermissionWarning",
    "PrivateKeyInput",
    "load_private_key",
    "private_key_to_pem",
    "private_key_to_rsa_xml",
    "public_key_fingerprint",
]

PrivateKeyInput: TypeAlias = (
    "str | os.PathLike[str] | os.PathLike[bytes] | bytes | bytearray | memoryview | rsa.RSAPrivateKey"
)
"""What :func:`load_private_key` accepts: a path, key content, or a key object."""

_MIN_KEY_BITS = 2048
# Far above any real key (a 16384-bit key in XML is about 12 KiB); stops a wrong path such as
# a log file or a device from being read into memory whole.
_MAX_KEY_BYTES = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_XML_ELEMENTS = ("Modulus", "Exponent", "P", "Q", "DP", "DQ", "InverseQ", "D")
_XML_PRIVATE_ELEMENTS = _XML_ELEMENTS[2:]
# Any markup declaration except comments and CDATA sections means a DTD.
_XML_DECLARATION_MARKUP = re.compile(r"<!(?!--|\[CDATA\[)")
_XML_PROLOG = re.compile(r"\A\s*<\?xml[^>]*\?>")
_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]{40,}")
_PATH_LIKE = re.compile(rb"[/\\]|\.(pem|xml|der|key)$")


class KeyFilePermissionWarning(UserWarning):
    """A private key file is open to group or others, or belongs to another user.

    The key still loads: the warning names the file and the problem, never the key. Make it an
    error in a service with ``warnings.simplefilter("error", KeyFilePermissionWarning)``, or
    fix the file with ``chmod 600`` as the service's user. Never raised on Windows.
    """


_Problem = Literal["needs-password", "password-not-needed", "wrong-password", "unsupported", "malformed"]


def load_private_key(source: PrivateKeyInput, *, password: bytes | str | None = None) -> rsa.RSAPrivateKey:
    """Return the RSA private key in ``source``: a path, PEM/DER/XML content, or a key object.

    Args:
        source: a file path (``str`` or ``os.PathLike``); key content as ``bytes`` (PEM, DER
            or XML) or as a ``str`` that starts with ``<`` or contains ``-----BEGIN``; or a
            cryptography ``RSAPrivateKey``, returned as it is once its size is checked. The
            module docstring lists every form.
        password: decrypts an encrypted PEM or DER key (a ``str`` is encoded as UTF-8; an
            empty one counts as none). Given for a key that is not encrypted, it is an error.

    Returns:
        The ``RSAPrivateKey``, at least 2048 bits.

    Raises:
        ConfigurationError: anything that is not a readable RSA private key of at least 2048
            bits: a missing, unreadable or over 1 MiB file, an encrypted key without (or with
            the wrong) password, a public key or certificate, another algorithm, a damaged
            document, a DTD in the XML. The message names the file, never its content.

    Warns:
        KeyFilePermissionWarning: the key file is readable or writable by group or others,
            or owned by another user.
    """
    secret = _password_bytes(password)
    if isinstance(source, rsa.RSAPrivateKey):
        if secret is not None:
            raise _password_not_needed("the key object")
        return _checked_size(source, "the key object")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_content(bytes(source), secret, "the key data")
    if isinstance(source, str):
        text = source.strip().lstrip("\ufeff").strip()
        if not text:
            raise ConfigurationError(
                "the key text is empty",
                hint="the value holding the key or its path (an unset variable?)",
            )
        if text.startswith("<") or "-----BEGIN" in text:
            return _load_content(source.encode("utf-8", "replace"), secret, "the key text")
        return _load_file(source, secret)
    if isinstance(source, os.PathLike):
        return _load_file(source, secret)
    raise _refusal_for_object(source)


def _password_bytes(password: bytes | str | None) -> bytes | None:
    if password is None:
        return None
    if isinstance(password, str):
        password = password.encode("utf-8")
    if not isinstance(password, bytes):
        raise ConfigurationError(
            f"the key password must be bytes or str, not {type(password).__name__}",
            hint="the password= argument",
        )
    return password or None


def _load_file(path: str | os.PathLike[str] | os.PathLike[bytes], secret: bytes | None) -> rsa.RSAPrivateKey:
    shown, hidden = _display_path(path)
    data, permission_problem = _read_key_file(path, shown, hidden)
    if permission_problem is not None:
        # stacklevel 3: the warning points at the caller of load_private_key.
        warnings.warn(permission_problem, KeyFilePermissionWarning, stacklevel=3)
    where = f"key file {shown}"
    if not data.strip():
        raise ConfigurationError(f"{where} is empty", hint="that the key was saved completely")
    return _load_content(data, secret, where)


def _read_key_file(
    path: str | os.PathLike[str] | os.PathLike[bytes], shown: str, hidden: bool
) -> tuple[bytes, str | None]:
    failure: str | None = None
    data = b""
    info: os.stat_result | None = None
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > _MAX_KEY_BYTES:
                failure = f"is {info.st_size} bytes, too large to be a key"
            else:
                data = handle.read(_MAX_KEY_BYTES + 1)
                if len(data) > _MAX_KEY_BYTES:
                    failure = "is too large to be a key"
    except FileNotFoundError:
        failure = "does not exist"
    except IsADirectoryError:
        failure = "is a directory"
    except PermissionError:
        failure = "cannot be read: permission denied"
    except OSError as exc:
        failure = f"cannot be read ({exc.strerror or type(exc).__name__})"
    except ValueError:
        failure = "is not a usable file name"
    if failure is not None:
        hint = "the path to the private key file and that this process may read it"
        if hidden:
            hint = (
                "a str is a file path unless it starts with '<' (XML) or contains '-----BEGIN' (PEM); "
                "pass DER or other key content as bytes"
            )
        raise ConfigurationError(f"key file {shown} {failure}", hint=hint)
    problem = None if info is None else _permission_problem(info, shown)
    return data, problem


def _permission_problem(info: os.stat_result, shown: str) -> str | None:
    if sys.platform == "win32" or not stat.S_ISREG(info.st_mode):
        return None
    problems = []
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        problems.append(f"its mode {mode:#o} lets group or others read or write it")
    uid = os.geteuid()
    if info.st_uid != uid:
        problems.append(f"it belongs to uid {info.st_uid}, not to this process's uid {uid}")
    if not problems:
        return None
    return f"private key file {shown}: {'; '.join(problems)}. Make the service's user own it and chmod 600 it."


def _display_path(path: str | os.PathLike[str] | os.PathLike[bytes]) -> tuple[str, bool]:
    """Return how to name ``path`` in messages, and whether it had to be hidden."""
    text = os.fsdecode(path)
    # A str that is not a file may be key content someone passed as a str: never quote that.
    if "\n" in text or "\r" in text or len(text) > 4096 or _BASE64_TEXT.fullmatch(text):
        return "(the value is not shown: it looks like key content rather than a file name)", True
    return repr(text), False


def _load_content(data: bytes, secret: bytes | None, where: str) -> rsa.RSAPrivateKey:
    if len(data) > _MAX_KEY_BYTES:
        raise ConfigurationError(
            f"{where} is {len(data)} bytes, too large to be a key", hint="that this is the key file"
        )
    if data.startswith(_UTF16_BOMS):
        # Windows PowerShell 5 writes UTF-16 when output is redirected to a file.
        data = _utf16_to_utf8(data, where)
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    stripped = data.strip()
    if not stripped:
        raise ConfigurationError(f"{where} is empty", hint="the value holding the key")
    if stripped.startswith(b"<"):
        return _load_xml(stripped, secret, where)
    if b"-----BEGIN" in stripped:
        return _load_pem(stripped, secret, where)
    if data.startswith(b"\x30"):
        return _load_der(data, secret, where)
    raise _unrecognised(stripped, where)


def _utf16_to_utf8(data: bytes, where: str) -> bytes:
    try:
        return data.decode("utf-16").encode("utf-8")
    except UnicodeDecodeError:
        pass
    raise ConfigurationError(
        f"{where} starts with a UTF-16 byte order mark but is not valid UTF-16 text",
        hint="save the key as UTF-8 or ASCII",
    )


def _unrecognised(stripped: bytes, where: str) -> ConfigurationError:
    hint = "that this is the partner's private key: .NET <RSAKeyValue> XML, PEM or DER"
    if stripped.startswith((b"ssh-rsa", b"ssh-ed25519", b"ecdsa-sha2-")):
        reason = "is an OpenSSH public key line, not a private key"
    elif stripped.startswith(b"PuTTY-User-Key-File"):
        reason = "is a PuTTY .ppk key"
        hint = "export it from PuTTYgen as an OpenSSL key (Conversions > Export OpenSSL key)"
    elif stripped.startswith(b"{"):
        reason = "looks like JSON (a JWK?), which is not read"
    elif _BASE64_TEXT.fullmatch(stripped.decode("ascii", "replace")):
        reason = "looks like Base64 without the PEM -----BEGIN/-----END lines"
        hint = "the complete PEM, including its -----BEGIN ... KEY----- and -----END ... KEY----- lines"
    elif len(stripped) < 4096 and b"\n" not in stripped and _PATH_LIKE.search(stripped):
        reason = "is not key content (bytes are read as content, never as a file name)"
        hint = "pass a file path as str or pathlib.Path, not bytes"
    else:
        reason = "is not in a recognised key format"
    return ConfigurationError(f"{where} {reason}", hint=hint)


def _deserialize(
    loader: Callable[[bytes, bytes | None], PrivateKeyTypes], data: bytes, secret: bytes | None
) -> tuple[PrivateKeyTypes | None, _Problem | None]:
    try:
        return loader(data, secret), None
    except TypeError:
        return None, ("password-not-needed" if secret is not None else "needs-password")
    except UnsupportedAlgorithm:
        return None, "unsupported"
    except ValueError:
        pass
    if secret is not None:
        # cryptography says "could not decrypt" and "malformed" with the same ValueError;
        # a key that asks for a password when given none is encrypted, so the password was wrong.
        try:
            loader(data, None)
        except TypeError:
            return None, "wrong-password"
        except (ValueError, UnsupportedAlgorithm):
            pass
    return None, "malformed"


def _parses(loader: Callable[[bytes], object], data: bytes) -> bool:
    try:
        loader(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _load_pem(data: bytes, secret: bytes | None, where: str) -> rsa.RSAPrivateKey:
    key, problem = _deserialize(serialization.load_pem_private_key, data, secret)
    if key is not None:
        return _require_rsa(key, where)
    labels = set(_PEM_LABEL.findall(data))
    if problem == "malformed":
        if b"OPENSSH PRIVATE KEY" in labels:
            raise ConfigurationError(
                f"{where} is an OpenSSH private key, which is not read",
                hint="convert a copy to PKCS#8 PEM: ssh-keygen -p -m PKCS8 -f <copy of the key file>",
            )
        if any(label.endswith(b"PUBLIC KEY") for label in labels):
            raise _public_not_private(where, "a public key")
        if any(b"CERTIFICATE" in label for label in labels):
            raise _public_not_private(where, "a certificate (which holds only the public key)")
        if not any(label.endswith(b"PRIVATE KEY") for label in labels):
            raise ConfigurationError(
                f"{where} is PEM but holds no private key block",
                hint="the key file: it must contain -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----",
            )
    raise _deserialize_failure(problem, where, "PEM")


def _load_der(data: bytes, secret: bytes | None, where: str) -> rsa.RSAPrivateKey:
    key, problem = _deserialize(serialization.load_der_private_key, data, secret)
    if key is not None:
        return _require_rsa(key, where)
    if problem == "malformed":
        if _parses(serialization.load_der_public_key, data):
            raise _public_not_private(where, "a public key")
        if _parses(x509.load_der_x509_certificate, data):
            raise _public_not_private(where, "a certificate (which holds only the public key)")
    raise _deserialize_failure(problem, where, "DER")


def _deserialize_failure(problem: _Problem | None, where: str, form: str) -> ConfigurationError:
    if problem == "needs-password":
        return ConfigurationError(
            f"{where} is encrypted and no password was given",
            hint="the key's password (password=); an encrypted key cannot be read without it",
        )
    if problem == "wrong-password":
        return ConfigurationError(
            f"{where} is encrypted and the password does not decrypt it",
            hint="the key's password (password=) and that it belongs to this key file",
        )
    if problem == "password-not-needed":
        return _password_not_needed(where)
    if problem == "unsupported":
        return ConfigurationError(
            f"{where} uses an encryption or key algorithm this cryptography build does not support",
            hint="re-export the key as PKCS#8 (openssl pkcs8 -topk8) with AES-256 encryption, or unencrypted",
        )
    return ConfigurationError(
        f"{where} is {form} data that does not decode as a private key (damaged or truncated?)",
        hint="that the key file was copied completely; PKCS#12 (.pfx/.p12) is not read: export "
        "the key with `openssl pkcs12 -in file.pfx -nocerts -out key.pem`",
    )


def _password_not_needed(where: str) -> ConfigurationError:
    return ConfigurationError(
        f"a password was given but {where} is not encrypted",
        hint="that this is the intended key file; drop the password if the key is stored unencrypted",
    )


def _require_rsa(key: PrivateKeyTypes, where: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _refusal_for_object(key, where)
    return _checked_size(key, where)


def _checked_size(key: rsa.RSAPrivateKey, where: str) -> rsa.RSAPrivateKey:
    if key.key_size < _MIN_KEY_BITS:
        raise ConfigurationError(
            f"{where} is a {key.key_size}-bit RSA key; at least {_MIN_KEY_BITS} bits are required",
            hint=f"a key of {_MIN_KEY_BITS} bits or more, its public half registered with SuperOffice",
        )
    return key


def _load_xml(data: bytes, secret: bytes | None, where: str) -> rsa.RSAPrivateKey:
    if secret is not None:
        raise _password_not_needed(where)
    text = _decode_xml(data, where)
    if _XML_DECLARATION_MARKUP.search(text):
        raise _dtd_refused(where)
    # lxml would honour the declared encoding; the text is already decoded, so drop it.
    text = _XML_PROLOG.sub("", text, count=1)
    root = _parse_xml(text.encode("utf-8"), where)
    values = _xml_values(root, where)
    missing = [name for name in _XML_ELEMENTS if name not in values]
    if not any(name in values for name in _XML_PRIVATE_ELEMENTS) and "Modulus" in values:
        raise _public_not_private(where, "an <RSAKeyValue> public key (Modulus and Exponent only)")
    if missing:
        raise ConfigurationError(
            f"{where}: <RSAKeyValue> lacks {', '.join(f'<{name}>' for name in missing)}",
            hint="that the whole private key document was copied: it has Modulus, Exponent, "
            "P, Q, DP, DQ, InverseQ and D",
        )
    return _checked_size(_xml_key(values, where), where)


def _decode_xml(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    raise ConfigurationError(f"{where} is XML but not valid UTF-8", hint="save the key file as UTF-8")


def _dtd_refused(where: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where} contains a DOCTYPE or entity declaration, which sut-soap refuses",
        hint="use the <RSAKeyValue> document as the developer portal gave it: "
        "DTDs and entities can read local files or exhaust memory",
    )


def _parse_xml(data: bytes, where: str) -> etree._Element:
    parser = hardened_parser(remove_comments=True, remove_pis=True)
    failure: str | None = None
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        failure = f"{where} is not well-formed XML (line {line}, column {column})"
    if failure is not None:
        raise ConfigurationError(failure, hint="that the key file was copied completely and not edited")
    if has_dtd(root):
        raise _dtd_refused(where)
    if not isinstance(root, etree._Element) or name_of(root).localname != "RSAKeyValue":
        raise ConfigurationError(
            f"{where} is XML but its root element is not <RSAKeyValue>",
            hint="that this is the .NET RSA key document from the developer portal",
        )
    return root


def _xml_values(root: etree._Element, where: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for child in root:
        # Comments and processing instructions are removed by the parser; any other non-element
        # child would have a tag that is not a str, and so a name outside _XML_ELEMENTS.
        name = name_of(child).localname
        if name not in _XML_ELEMENTS:
            continue
        if name in values:
            raise ConfigurationError(f"{where}: <{name}> appears more than once", hint=_PORTAL_KEY_HINT)
        values[name] = _xml_integer("".join(str(part) for part in child.itertext()), name, where)
    return values


def _xml_integer(text: str, name: str, where: str) -> int:
    compact = "".join(text.split())
    if not compact:
        raise ConfigurationError(f"{where}: <{name}> is empty", hint="that the whole key document was copied")
    raw: bytes | None = None
    with contextlib.suppress(binascii.Error, ValueError):
        raw = base64.b64decode(compact, validate=True)
    if not raw:
        raise ConfigurationError(
            f"{where}: <{name}> is not standard Base64",
            hint=f"the <{name}> value: Base64 with +, / and = padding, as .NET writes it",
        )
    return int.from_bytes(raw, "big")


def _xml_key(values: dict[str, int], where: str) -> rsa.RSAPrivateKey:
    n, e = values["Modulus"], values["Exponent"]
    p, q, d = values["P"], values["Q"], values["D"]
    dp, dq, inverse_q = values["DP"], values["DQ"], values["InverseQ"]
    # Name the element that disagrees; cryptography only says "invalid".
    problem: str | None = None
    if p < 3 or q < 3 or p * q != n:
        problem = "<Modulus> is not <P> times <Q>"
    elif e < 3 or (d * e) % math.lcm(p - 1, q - 1) != 1:
        problem = "<D> is not the private exponent for <Exponent>, <P> and <Q>"
    elif dp != d % (p - 1):
        problem = "<DP> is not <D> mod (<P> - 1)"
    elif dq != d % (q - 1):
        problem = "<DQ> is not <D> mod (<Q> - 1)"
    elif inverse_q >= p or (inverse_q * q) % p != 1:
        problem = "<InverseQ> is not the inverse of <Q> mod <P>"
    if problem is None:
        numbers = rsa.RSAPrivateNumbers(
            p=p, q=q, d=d, dmp1=dp, dmq1=dq, iqmp=inverse_q, public_numbers=rsa.RSAPublicNumbers(e, n)
        )
        try:
            return numbers.private_key()
        except (ValueError, TypeError):
            problem = "the numbers do not form a valid RSA key"
    raise ConfigurationError(
        f"{where}: inconsistent key: {problem}",
        hint="that the key document was not edited and its values were not mixed with another key's",
    )
