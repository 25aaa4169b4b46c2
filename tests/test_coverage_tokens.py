"""sut_soap.tokens: key-set edge cases and verifier failures the main token tests leave out (issue 7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ed448, ed25519, x25519
from jwt_factory import jwk_for, mint, rsa_key

from sut_soap import tokens
from sut_soap.errors import ConfigurationError, TokenValidationError, TransportError
from sut_soap.tokens import JwksKeySource, StaticKeySource, TokenValidator, key_source_from_public_key

NOW = 1_800_000_000.0
CTX = "Cust12345"
KID = "test-kid"
JWKS_URL = "https://sod.superoffice.com/login/.well-known/jwks"


def validator(source: Any = None) -> TokenValidator:
    return TokenValidator(source or StaticKeySource([(KID, rsa_key(0).public_key())]), clock=lambda: NOW)


def token() -> str:
    return mint(rsa_key(0), now=NOW, kid=KID)


def pem_of(public_key: Any) -> bytes:
    data: bytes = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


# --- static key sets --------------------------------------------------------------------------


def test_two_keys_with_the_same_kid_are_refused_as_ambiguous() -> None:
    """A key set with two keys under the token's kid picks neither: check 'key'."""
    source = StaticKeySource([(KID, rsa_key(0).public_key()), (KID, rsa_key(1).public_key())])
    with pytest.raises(TokenValidationError) as caught:
        source.get_key(KID)
    assert caught.value.check == "key"
    assert "several keys with the JWT's kid" in caught.value.message


def test_static_key_source_refuses_a_non_string_kid() -> None:
    """StaticKeySource refuses a kid that is neither a str nor None."""
    with pytest.raises(ConfigurationError, match="kid"):
        StaticKeySource([(7, rsa_key(0).public_key())])  # type: ignore[list-item]


def test_small_rsa_public_key_object_is_refused() -> None:
    """A pinned RSAPublicKey under 2048 bits is refused with its size, at configuration time."""
    small = rsa_key(5, 1024).public_key()
    with pytest.raises(ConfigurationError) as caught:
        key_source_from_public_key(small)
    assert caught.value.message == "the public key is unusable: an RSA key has 1024 bits; 2048 to 16384 are supported"


def test_public_key_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    """A public key file larger than 1 MiB is refused by size, naming the file."""
    path = tmp_path / "federated.crt"
    path.write_bytes(b"-" * (1024 * 1024 + 1))
    with pytest.raises(ConfigurationError) as caught:
        key_source_from_public_key(path)
    assert caught.value.message == f"the public key file {path} is larger than 1048576 bytes"


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: ed25519.Ed25519PrivateKey.generate().public_key(), "an EdDSA"),
        (lambda: ed448.Ed448PrivateKey.generate().public_key(), "an EdDSA"),
        (lambda: dsa.generate_private_key(2048).public_key(), "a DSA"),
        (lambda: x25519.X25519PrivateKey.generate().public_key(), "a non-RSA"),
    ],
    ids=["ed25519", "ed448", "dsa", "x25519"],
)
def test_non_rsa_public_key_is_refused_naming_its_kind(make: Any, kind: str) -> None:
    """A PEM public key of another algorithm is refused, naming the algorithm family."""
    with pytest.raises(ConfigurationError) as caught:
        key_source_from_public_key(pem_of(make()))
    assert f"it holds {kind} key; SuperOffice signs with RSA (RS256)" in caught.value.message


# --- JWK and JWKS documents ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"n": 12345}, "an RSA JWK lacks a valid base64url n or e"),
        ({"e": "AQ"}, "an RSA JWK holds numbers that are not an RSA public key"),
        ({"kid": 7}, "the JWK's kid is not a string"),
    ],
    ids=["numeric-n", "exponent-1", "numeric-kid"],
)
def test_unusable_single_jwk_is_refused_with_the_reason(change: dict[str, Any], expected: str) -> None:
    """A single JWK with a non-string n, an impossible exponent or a non-string kid is refused, saying which."""
    document = {**jwk_for(rsa_key(0), KID), **change}
    with pytest.raises(ConfigurationError) as caught:
        key_source_from_public_key(json.dumps(document).encode())
    assert caught.value.message == f"the public key content is unusable: {expected}"


@pytest.mark.parametrize(
    "bad",
    [{"n": 12345}, {"e": "AQ"}, {"kid": 7}],
    ids=["numeric-n", "exponent-1", "numeric-kid"],
)
def test_jwks_skips_unusable_keys_and_keeps_the_good_one(bad: dict[str, Any]) -> None:
    """In a JWKS, a key with a non-string n, an impossible exponent or a non-string kid is skipped."""
    document = {"keys": [{**jwk_for(rsa_key(1), "bad"), **bad}, jwk_for(rsa_key(0), KID)]}
    source = key_source_from_public_key(json.dumps(document).encode())
    assert repr(source) == "StaticKeySource(keys=1)"
    assert validator(source).validate(token(), context_identifier=CTX)["iss"] == "SuperOffice AS"
    with pytest.raises(TokenValidationError, match="no key in the key set has the JWT's kid"):
        source.get_key("bad")


# --- JWKS over HTTP --------------------------------------------------------------------------


class _BreakingResponse:
    """A 200 answer whose body stops with a connection error after the first chunk."""

    status_code = 200
    headers: dict[str, str] = {}  # noqa: RUF012

    def __enter__(self) -> _BreakingResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        yield b'{"keys": ['
        raise requests.exceptions.ChunkedEncodingError("connection broken: IncompleteRead")


class _Session:
    def __init__(self) -> None:
        self.calls = 0

    def get(self, url: str, **kwargs: Any) -> _BreakingResponse:
        self.calls += 1
        return _BreakingResponse()


def test_jwks_url_property_is_the_configured_url() -> None:
    """JwksKeySource.url is the JWKS URL it was given."""
    assert JwksKeySource(JWKS_URL).url == JWKS_URL


def test_jwks_body_that_breaks_mid_read_is_a_retryable_transport_error() -> None:
    """A JWKS answer cut off while streaming is a retryable TransportError, and nothing is cached."""
    session = _Session()
    source = JwksKeySource(JWKS_URL, session=session, refetch_cooldown=0)  # type: ignore[arg-type]
    with pytest.raises(TransportError) as caught:
        source.get_key(KID)
    assert caught.value.message == "reading the JWKS answer failed (ChunkedEncodingError)"
    assert caught.value.retryable
    assert caught.value.status == 200
    assert repr(source).endswith("cached_keys=none)")
    with pytest.raises(TransportError):
        source.get_key(KID)
    assert session.calls == 2


# --- the verifier ----------------------------------------------------------------------------


class _Verifier:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def decode_complete(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


def test_verifier_refusing_the_algorithm_is_an_algorithm_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """If PyJWT refuses the (pinned) algorithm, the failure is check 'algorithm', chained to PyJWT's error."""
    refusal = jwt.InvalidAlgorithmError("The specified alg value is not allowed")
    monkeypatch.setattr(tokens, "_JWS", _Verifier(refusal))
    with pytest.raises(TokenValidationError) as caught:
        validator().validate(token(), context_identifier=CTX)
    assert caught.value.check == "algorithm"
    assert caught.value.__cause__ is refusal


@pytest.mark.parametrize("error", [TypeError("bad key type"), ValueError("bad signature bytes")], ids=repr)
def test_unexpected_verifier_error_is_a_signature_failure_without_its_text(
    error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TypeError/ValueError from PyJWT becomes check 'signature', with no third-party exception attached."""
    monkeypatch.setattr(tokens, "_JWS", _Verifier(error))
    with pytest.raises(TokenValidationError) as caught:
        validator().validate(token(), context_identifier=CTX)
    assert caught.value.check == "signature"
    assert caught.value.message == "the JWT signature could not be checked with the environment's key"
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


class _ClosableSession:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_jwks_source_closes_only_a_session_it_created(monkeypatch: pytest.MonkeyPatch) -> None:
    """close() closes the session JwksKeySource made itself, never one the caller passed in."""
    theirs = _ClosableSession()
    JwksKeySource(JWKS_URL, session=theirs).close()  # type: ignore[arg-type]
    assert theirs.closed == 0
    ours = _ClosableSession()
    monkeypatch.setattr(tokens.requests, "Session", lambda: ours)
    JwksKeySource(JWKS_URL).close()
    assert ours.closed == 1
