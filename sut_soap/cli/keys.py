"""``convert-key``: convert a private key between .NET ``<RSAKeyValue>`` XML and PEM, locally."""

from __future__ import annotations

import argparse
import os

from ..errors import (
    ConfigurationError,
)
from ._common import (
    _load_private_key,
    _password,
)
from .exitcodes import EXIT_OK

# typing is not imported at run time: see sut_soap.cli's docstring.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO


def _args_convert_key(convert: argparse.ArgumentParser) -> None:
    convert.add_argument("file", metavar="FILE", help="the private key to convert")
    convert.add_argument("--out", metavar="FILE", help="where to write the converted key (mode 0600)")
    convert.add_argument("--to", choices=("pem", "xml"), default="pem", help="output form (default pem: PKCS#8)")
    convert.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    convert.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding the input key's password, if encrypted"
    )


def _write_private_file(target: str, data: bytes, *, force: bool) -> None:
    """Write ``data`` to ``target`` with mode 0600; without ``force`` never replace a file."""
    import tempfile

    try:
        if not force:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
            return
        directory = os.path.dirname(os.path.abspath(target))
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".sut-soap-", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    except FileExistsError:
        raise ConfigurationError(
            f"{target!r} exists and was not overwritten", hint="choose another --out, or pass --force"
        ) from None
    except OSError as error:
        raise ConfigurationError(
            f"cannot write {target!r}: {error.strerror or type(error).__name__}",
            hint="the output directory and its permissions",
        ) from None


def _cmd_convert_key(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pathlib import Path

    from ..keys import private_key_to_pem, private_key_to_rsa_xml, public_key_fingerprint

    source = Path(args.file)
    key = _load_private_key(source, _password(args))
    if args.to == "xml":
        data, form, suffix = private_key_to_rsa_xml(key).encode("utf-8"), ".NET <RSAKeyValue> XML", ".xml"
    else:
        data, form, suffix = private_key_to_pem(key), "PKCS#8 PEM, unencrypted", ".pem"
    target = Path(args.out) if args.out else source.with_suffix(suffix)
    if target.resolve() == source.resolve():
        raise ConfigurationError("the output would overwrite the input key", hint="pass --out FILE")
    _write_private_file(str(target), data, force=args.force)
    print(public_key_fingerprint(key), file=out)
    print(f"wrote {target} ({form}, RSA {key.key_size} bits, mode 0600); above: the public key's fingerprint",
          file=err)
    return EXIT_OK


