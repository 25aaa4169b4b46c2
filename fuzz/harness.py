"""Coverage-guided fuzzing with atheris (``make fuzz``): the answer parser and the JWT validator.

Usage: ``python fuzz/harness.py answer|jwt [atheris/libFuzzer flags]``, e.g.
``-max_total_time=1800`` or ``-runs=1000000``; ``make fuzz`` runs both for FUZZ_SECONDS each.
Any exception other than SutSoapError is a crash: libFuzzer writes the input to
``crash-*``; add it as a regression case to tests/test_fuzz.py or tests/test_soap.py.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field

import atheris

with atheris.instrument_imports():
    from cryptography.hazmat.primitives.asymmetric import rsa

    from sut_soap.errors import SutSoapError
    from sut_soap.soap import parse_answer
    from sut_soap.tokens import StaticKeySource, TokenValidator


@dataclass
class Reply:
    content: bytes
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)


NOW = time.time()
VALIDATOR = TokenValidator(
    StaticKeySource([("k", rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())]),
    clock=lambda: NOW,
)


def fuzz_answer(data: bytes) -> None:
    if not data:
        return
    status = (200, 500, 503, 302)[data[0] % 4]
    with contextlib.suppress(SutSoapError):
        parse_answer(Reply(data[1:], status))


def fuzz_jwt(data: bytes) -> None:
    try:
        token = data.decode("utf-8")
    except UnicodeDecodeError:
        token = data.decode("latin-1")
    try:
        VALIDATOR.validate(token, context_identifier="Cust12345")
    except SutSoapError:
        pass
    else:
        raise AssertionError("a token signed by an unknown key validated")


def main() -> None:
    targets = {"answer": fuzz_answer, "jwt": fuzz_jwt}
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit("usage: harness.py answer|jwt [libFuzzer flags]")
    target = targets[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
