"""JWT validation and key sources (sut_soap.tokens)."""

from __future__ import annotations

import base64
import collections
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt_factory import (
    b64url,
    default_claims,
    jwk_for,
    jwks_for,
    mint,
    mint_raw,
    public_pem,
    rsa_key,
    self_signed_cert,
)
from support import QuietServer, serve_in_background

from sut_soap import keysources, tokens
from sut_soap.errors import ConfigurationError, TokenValidationError, TransportError
from sut_soap.tokens import (
    CLAIM_CTX,
    CLAIM_TICKET,
    MAX_TICKET_CHARS,
    MAX_TOKEN_BYTES,
    JwksKeySource,
    KeySource,
    StaticKeySource,
    TokenValidator,
    decode_unverified,
    key_source_from_public_key,
)

NOW = 1_800_000_000.0
CTX = "Cust12345"
TICKET = "7T:CanaryTicketValue-0123456789abcdefABCDEF"
KID = "test-kid"


# ------------------------------------------------------------------------------------------
# helpers


def key() -> Any:
    return rsa_key(0)


def other_key() -> Any:
    return rsa_key(1)


def good(**overrides: Any) -> str:
    """A valid token at NOW carrying the canary ticket, with claim/header overrides."""
    overrides.setdefault("ticket", TICKET)
    signer = overrides.pop("signer", key())
    return mint(signer, now=NOW, **overrides)


def make_validator(source: KeySource | None = None, **options: Any) -> TokenValidator:
    options.setdefault("clock", lambda: NOW)
    return TokenValidator(source or StaticKeySource([(KID, key().public_key())]), **options)


def assert_no_secrets(error: BaseException, *secrets: str) -> None:
    """Neither str() nor repr() of the error or anything in its cause/context chain leaks a secret."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        texts = [str(current), repr(current), *(str(arg) for arg in current.args)]
        for secret in secrets:
            if secret:
                assert not any(secret in text for text in texts), type(current).__name__
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def reject(token: Any, check: str, validator: TokenValidator | None = None, ctx: str = CTX) -> None:
    """Assert the token fails exactly ``check``, with no token or ticket in the error chain."""
    with pytest.raises(TokenValidationError) as info:
        (validator or make_validator()).validate(token, context_identifier=ctx)
    assert info.value.check == check, (info.value.check, str(info.value))
    assert not info.value.retryable
    assert_no_secrets(info.value, token if isinstance(token, str) else "", TICKET)


def accept(token: str, validator: TokenValidator | None = None) -> dict[str, Any]:
    return (validator or make_validator()).validate(token, context_identifier=CTX)


def segments(token: str) -> list[str]:
    return token.split(".")


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingSource:
    """A key source that records calls, to show when validation stopped before key lookup."""

    def __init__(self) -> None:
        self.calls = 0

    def get_key(self, kid: str | None) -> RSAPublicKey:
        self.calls += 1
        public: RSAPublicKey = key().public_key()
        return public


# ------------------------------------------------------------------------------------------
# the happy path


def test_valid_token_returns_claims() -> None:
    """A well-formed SuperOffice token validates and its claims come back unchanged."""
    claims = accept(good())
    assert claims[CLAIM_TICKET] == TICKET
    assert claims[CLAIM_CTX] == CTX
    assert claims["iss"] == "SuperOffice AS"


def test_serial_as_integer_accepted() -> None:
    """An integer serial claim is compared to the audience as its decimal string."""
    accept(good(serial=1234567, aud="spn:1234567"))


def test_expected_serial_matching_accepted() -> None:
    """expected_serial equal to the token's serial passes."""
    accept(good(), make_validator(expected_serial="1234567"))


def test_expected_serial_mismatch_rejected() -> None:
    """expected_serial different from the token's serial fails the serial check."""
    reject(good(serial="7654321", aud="spn:7654321"), "serial", make_validator(expected_serial="1234567"))


def test_token_without_kid_accepted_with_single_key() -> None:
    """No kid in the header is fine when the key source holds exactly one key."""
    accept(good(kid=None))


def test_key_lookup_receives_kid() -> None:
    """The header kid is what the key source is asked for."""
    asked: list[str | None] = []

    class Recorder:
        def get_key(self, kid: str | None) -> RSAPublicKey:
            asked.append(kid)
            public: RSAPublicKey = key().public_key()
            return public

    accept(good(kid="abc"), make_validator(Recorder()))
    assert asked == ["abc"]


# ------------------------------------------------------------------------------------------
# size and format


def test_oversized_token_rejected_before_decoding() -> None:
    """A token over 16 KiB fails the size check fast, before the key source is consulted."""
    source = CountingSource()
    validator = make_validator(source)
    huge = good() + "A" * (8 * 1024 * 1024)
    started = time.perf_counter()
    reject(huge, "size", validator)
    assert time.perf_counter() - started < 0.05
    assert source.calls == 0


@pytest.mark.parametrize(("length", "check"), [(MAX_TOKEN_BYTES, "format"), (MAX_TOKEN_BYTES + 1, "size")])
def test_size_cap_boundary(length: int, check: str) -> None:
    """Exactly MAX_TOKEN_BYTES characters passes the size check; one more fails it."""
    reject("A" * length, check)


@pytest.mark.parametrize("value", [None, b"a.b.c", 42, ["a", "b", "c"]])
def test_non_string_token_rejected(value: Any) -> None:
    """Anything but a str is a format failure, never a TypeError."""
    reject(value, "format")


def _shape_cases() -> list[tuple[str, Any]]:
    token = good()
    h, p, s = segments(token)
    return [
        ("two segments", f"{h}.{p}"),
        ("four segments", f"{token}.{s}"),
        ("empty signature", f"{h}.{p}."),
        ("empty header", f".{p}.{s}"),
        ("padding", f"{h}.{p}.{s}=="),
        ("padding on header", f"{h}=.{p}.{s}"),
        ("leading space", " " + token),
        ("trailing newline", token + "\n"),
        ("inner whitespace", f"{h}. {p}.{s}"),
        ("non-ascii", token[:-1] + "é"),
        ("standard base64 alphabet", f"{h}.{p}.{s[:-1]}+"),
        ("length 1 mod 4", f"{h}.{p}.{s}AAA"),
        ("non-canonical trailing bits", f"{b64url(b'{}')[:-1]}1.{p}.{s}"),
    ]


@pytest.mark.parametrize(("name", "token"), _shape_cases(), ids=[c[0] for c in _shape_cases()])
def test_malformed_shape_rejected(name: str, token: str) -> None:
    """Malformed compact serialisations fail the format check."""
    reject(token, "format")


@pytest.mark.parametrize(
    "header",
    [
        b"[]",
        b'"RS256"',
        b"null",
        b"\xff\xfe{}",
        b"\xef\xbb\xbf{}",
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"alg":"RS256","alg":"RS256"}',
        b'{"alg":"RS256","x":NaN}',
        '{"alg":"RS256"}'.encode("utf-16"),
    ],
    ids=["array", "string", "null", "invalid utf-8", "bom", "deep", "deep member", "dup", "nan", "utf-16"],
)
def test_malformed_header_rejected(header: bytes) -> None:
    """A header that is not a strict UTF-8 JSON object fails the format check."""
    reject(mint_raw(key(), header, default_claims(NOW)), "format")


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b"\xff",
        b"[" * 5000 + b"]" * 5000,
        b'{"iss":"SuperOffice AS","iss":"SuperOffice AS"}',
        b'{"exp":Infinity}',
        b'{"exp":1' + b"0" * 5000 + b"}",
    ],
    ids=["array", "invalid utf-8", "deep", "duplicate", "infinity", "5000-digit int"],
)
def test_malformed_payload_rejected(payload: bytes) -> None:
    """A correctly signed payload that is not a strict UTF-8 JSON object fails the format check."""
    reject(mint_raw(key(), {"alg": "RS256", "kid": KID}, payload), "format")


def test_hundred_thousand_deep_json_rejected() -> None:
    """A 100k-deep JSON header exceeds the size cap and never reaches the parser."""
    reject(mint_raw(key(), b"[" * 100_000 + b"]" * 100_000, b"{}"), "size")


# ------------------------------------------------------------------------------------------
# algorithm and crit


@pytest.mark.parametrize(
    ("header_alg", "sign_alg"),
    [("RS512", "RS512"), ("PS256", "PS256"), ("ES256", "RS256"), ("rs256", "RS256"), ("none", "RS256")],
)
def test_other_algorithms_rejected(header_alg: str, sign_alg: str) -> None:
    """Only the exact header value RS256 is accepted, however the token is signed."""
    token = mint_raw(key(), {"alg": header_alg, "kid": KID}, default_claims(NOW), sign_alg)
    reject(token, "algorithm")


def test_alg_none_with_empty_signature_rejected() -> None:
    """alg none with an empty signature never validates (no empty segment is accepted)."""
    reject(good(alg="none"), "format")


@pytest.mark.parametrize("alg", [None, ["RS256"], 256, ""])
def test_missing_or_non_string_alg_rejected(alg: Any) -> None:
    """A missing or non-string alg fails the algorithm check."""
    reject(good(headers={"alg": alg}), "algorithm")


def _public_key_forms() -> list[bytes]:
    public = key().public_key()
    return [
        public_pem(key()),
        public_pem(key(), pkcs1=True),
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
    ]


@pytest.mark.parametrize("secret", _public_key_forms(), ids=["pem", "pkcs1", "der", "ssh"])
def test_hs256_keyed_with_public_key_rejected(secret: bytes) -> None:
    """HS256 MACed with the public key (the classic confusion attack) fails the algorithm check."""
    reject(good(alg="HS256", signer=secret), "algorithm")


@pytest.mark.parametrize("crit", [["exp"], [], "b64", ["b64"], None])
def test_crit_header_rejected(crit: Any) -> None:
    """Any crit header, even empty, null or naming b64, fails the critical check."""
    token = mint_raw(key(), {"alg": "RS256", "kid": KID, "crit": crit, "b64": False}, default_claims(NOW))
    reject(token, "critical")


def test_b64_false_without_crit_rejected() -> None:
    """b64=false without crit (RFC 7797 misuse) is refused by the verifier as a format failure."""
    reject(good(headers={"b64": False}), "format")


# ------------------------------------------------------------------------------------------
# key choice and signature


def test_token_signed_by_other_key_rejected() -> None:
    """A token with the right kid but signed by another RSA key fails the signature check."""
    reject(good(signer=other_key()), "signature")


def test_tampered_payload_rejected() -> None:
    """Changing the payload of a signed token fails the signature check."""
    h, _, s = segments(good())
    forged = b64url(json.dumps({**default_claims(NOW), CLAIM_TICKET: TICKET + "X"}))
    reject(f"{h}.{forged}.{s}", "signature")


def test_unknown_kid_rejected() -> None:
    """A kid the key source does not know fails the key check."""
    reject(good(kid="someone-else"), "key")


@pytest.mark.parametrize("kid", ["../../etc/passwd", "' OR 1=1 --", "", "a" * 2000])
def test_hostile_kid_is_opaque(kid: str) -> None:
    """Path or SQL text in kid is only compared, and fails the key check."""
    reject(good(kid=kid), "key")


def test_no_kid_with_two_keys_rejected() -> None:
    """Without kid, a source holding two keys cannot choose and fails the key check."""
    source = StaticKeySource([("a", key().public_key()), ("b", other_key().public_key())])
    reject(good(kid=None), "key", make_validator(source))


@pytest.mark.parametrize("kid", [5, ["test-kid"], {"k": 1}])
def test_non_string_kid_rejected(kid: Any) -> None:
    """A kid that is not a string fails the format check."""
    reject(good(headers={"kid": kid}), "format")


def _attacker_headers() -> list[dict[str, Any]]:
    attacker = other_key()
    return [
        {"jwk": jwk_for(attacker, KID)},
        {"jku": "https://attacker.example/jwks"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"x5c": [b64url(public_pem(attacker))]},
    ]


@pytest.mark.parametrize("extra", _attacker_headers(), ids=["jwk", "jku", "x5u", "x5c"])
def test_header_named_attacker_key_ignored(extra: dict[str, Any]) -> None:
    """jwk/jku/x5u/x5c naming the signer's own key do not make its signature acceptable."""
    reject(good(signer=other_key(), headers=extra), "signature")


@pytest.mark.parametrize("extra", _attacker_headers(), ids=["jwk", "jku", "x5u", "x5c"])
def test_key_naming_headers_do_not_block_a_good_token(extra: dict[str, Any]) -> None:
    """Those headers are ignored, so a token signed by the trusted key still validates."""
    accept(good(headers=extra))


def test_key_source_returning_non_rsa_key_is_configuration_error() -> None:
    """A custom key source that returns something other than an RSA public key is a ConfigurationError."""

    class Broken:
        def get_key(self, kid: str | None) -> Any:
            return ec.generate_private_key(ec.SECP256R1()).public_key()

    with pytest.raises(ConfigurationError):
        make_validator(Broken()).validate(good(), context_identifier=CTX)


def test_small_rsa_key_from_custom_source_rejected() -> None:
    """A 1024-bit key from a custom source fails the key check instead of a warning."""
    small = rsa_key(9, 1024)

    class Small:
        def get_key(self, kid: str | None) -> RSAPublicKey:
            public: RSAPublicKey = small.public_key()
            return public

    reject(good(signer=small), "key", make_validator(Small()))


# ------------------------------------------------------------------------------------------
# issuer, serial and audience


@pytest.mark.parametrize("iss", ["SuperOffice", "SuperOffice AS ", "superoffice as", ["SuperOffice AS"], 1])
def test_wrong_issuer_rejected(iss: Any) -> None:
    """Only the exact string 'SuperOffice AS' passes the issuer check."""
    reject(good(iss=iss), "issuer")


def test_missing_issuer_rejected() -> None:
    """A token without iss fails the issuer check."""
    reject(good(iss=None), "issuer")


@pytest.mark.parametrize("aud", ["spn:7654321", ["spn:1234567"], "1234567", "spn:1234567 ", "SPN:1234567"], ids=repr)
def test_wrong_audience_rejected(aud: Any) -> None:
    """Another tenant's audience, a list, or any variant of spn:<serial> fails the audience check."""
    reject(good(aud=aud), "audience")


def test_missing_audience_rejected() -> None:
    """A token without aud fails the audience check."""
    reject(good(aud=None), "audience")


@pytest.mark.parametrize("serial", [None, "", True, 1234567.0, ["1234567"]], ids=repr)
def test_unusable_serial_rejected(serial: Any) -> None:
    """A missing, empty, boolean, float or list serial fails the serial check."""
    reject(good(serial=serial), "serial")


# ------------------------------------------------------------------------------------------
# times


@pytest.mark.parametrize(("offset", "ok"), [(-301, False), (-300, False), (-299, True), (1.5, True)])
def test_expiry_boundary(offset: float, ok: bool) -> None:
    """exp must lie after now minus the 300 s leeway (now-leeway itself is expired)."""
    token = good(exp=NOW + offset)
    if ok:
        accept(token)
    else:
        reject(token, "expiry")


def test_expiry_honours_configured_leeway() -> None:
    """A zero leeway rejects a token that expired one second ago."""
    reject(good(exp=NOW - 1), "expiry", make_validator(leeway=0))


@pytest.mark.parametrize("exp", [None, "1800000100", True, [NOW + 10], {"v": 1}, 10**400], ids=repr)
def test_missing_or_non_numeric_exp_rejected(exp: Any) -> None:
    """exp is required and must be a finite JSON number: numeric strings are refused (RFC 7519)."""
    reject(good(exp=exp), "expiry")


def test_infinite_exp_rejected() -> None:
    """exp = 1e400 (parsed as infinity) fails the expiry check."""
    payload = json.dumps({**default_claims(NOW), CLAIM_TICKET: TICKET}).replace(
        f'"exp": {int(NOW) + 300}', '"exp": 1e400'
    )
    reject(mint_raw(key(), {"alg": "RS256", "kid": KID}, payload.encode()), "expiry")


@pytest.mark.parametrize(("name", "check"), [("nbf", "not_before"), ("iat", "issued_at")])
@pytest.mark.parametrize(("offset", "ok"), [(301, False), (299, True)])
def test_future_nbf_and_iat_boundary(name: str, check: str, offset: int, ok: bool) -> None:
    """nbf and iat may lie at most the leeway in the future."""
    token = good(**{name: NOW + offset})
    if ok:
        accept(token)
    else:
        reject(token, check)


@pytest.mark.parametrize(("name", "check"), [("nbf", "not_before"), ("iat", "issued_at")])
@pytest.mark.parametrize("value", ["abc", "", " 1800000000", "1.5e9", True, [1], None], ids=repr)
def test_non_numeric_nbf_and_iat_rejected(name: str, check: str, value: Any) -> None:
    """nbf and iat, when present, must be a number or a string of decimal digits."""
    token = mint_raw(key(), {"alg": "RS256", "kid": KID}, {**default_claims(NOW), CLAIM_TICKET: TICKET, name: value})
    reject(token, check)


@pytest.mark.parametrize("name", ["nbf", "iat"])
def test_nbf_and_iat_are_optional(name: str) -> None:
    """A token without nbf or iat validates (SuperOffice's tokens carry no iat)."""
    accept(good(**{name: None}))


@pytest.mark.parametrize("name", ["nbf", "iat"])
def test_digit_string_nbf_and_iat_accepted(name: str) -> None:
    """SuperOffice-style digit strings ("1800000000") are accepted for nbf and iat, and still checked."""
    accept(good(**{name: str(int(NOW))}))
    reject(good(**{name: str(int(NOW) + 301)}), "not_before" if name == "nbf" else "issued_at")


def test_absurd_exp_rejected() -> None:
    """exp = 10**20 fails the lifetime check."""
    reject(good(exp=10**20), "lifetime")


@pytest.mark.parametrize(("ahead", "ok"), [(600 + 300, True), (600 + 301, False)])
def test_exp_ahead_boundary(ahead: int, ok: bool) -> None:
    """exp may lie at most max_lifetime + leeway ahead of now."""
    validator = make_validator(max_lifetime=600)
    token = good(exp=NOW + ahead, iat=None)
    if ok:
        accept(token, validator)
    else:
        reject(token, "lifetime", validator)


@pytest.mark.parametrize(("span", "ok"), [(600, True), (601, False)])
def test_exp_minus_iat_boundary(span: int, ok: bool) -> None:
    """exp - iat may not exceed max_lifetime."""
    validator = make_validator(max_lifetime=600)
    token = good(iat=NOW - 250, exp=NOW - 250 + span)
    if ok:
        accept(token, validator)
    else:
        reject(token, "lifetime", validator)


# ------------------------------------------------------------------------------------------
# tenant and ticket


@pytest.mark.parametrize("ctx", ["Cust99999", "cust12345", "Cust12345 ", ["Cust12345"], None], ids=repr)
def test_context_mismatch_rejected(ctx: Any) -> None:
    """A ctx claim that is missing or not exactly the tenant asked for fails the context check."""
    reject(good(ctx=ctx), "context")


def test_token_for_other_tenant_rejected_when_asking_for_this_one() -> None:
    """A valid token for tenant A is refused when tenant B was asked for."""
    reject(good(), "context", ctx="Cust99999")


@pytest.mark.parametrize("context_identifier", ["", None, 12345])
def test_bad_context_identifier_is_configuration_error(context_identifier: Any) -> None:
    """validate() needs a non-empty str tenant; anything else is the caller's ConfigurationError."""
    with pytest.raises(ConfigurationError):
        make_validator().validate(good(), context_identifier=context_identifier)


@pytest.mark.parametrize(
    "ticket",
    [
        None,
        "",
        12345,
        ["7T:abc"],
        "7T:" + "a" * MAX_TICKET_CHARS,
        "7T:abc def",
        "7T:abc\n",
        "\t7T:abc",
        "7T:abc\x00",
        "7T:abc\x7f",
        "7T:abcé",
    ],
    ids=repr,
)
def test_bad_ticket_rejected(ticket: Any) -> None:
    """A ticket that is missing, empty, not a string, too long or not visible ASCII fails the ticket check."""
    claims = {**default_claims(NOW), CLAIM_TICKET: ticket}
    if ticket is None:
        del claims[CLAIM_TICKET]
    reject(mint_raw(key(), {"alg": "RS256", "kid": KID}, claims), "ticket")


def test_ticket_at_length_cap_accepted() -> None:
    """A ticket of exactly MAX_TICKET_CHARS characters is accepted."""
    accept(good(ticket="7T:" + "a" * (MAX_TICKET_CHARS - 3)))


# ------------------------------------------------------------------------------------------
# validator configuration, unverified decoding, public names


@pytest.mark.parametrize(
    "options",
    [
        {"leeway": -1},
        {"leeway": float("nan")},
        {"leeway": True},
        {"max_lifetime": 0},
        {"max_lifetime": float("inf")},
        {"expected_serial": ""},
        {"expected_serial": 1234567},
        {"clock": 5},
    ],
    ids=repr,
)
def test_bad_validator_options_refused(options: dict[str, Any]) -> None:
    """Out-of-range or mistyped validator options are ConfigurationErrors."""
    with pytest.raises(ConfigurationError):
        make_validator(**options)


def test_object_without_get_key_refused_as_key_source() -> None:
    """An object that is not a KeySource is refused at construction."""
    with pytest.raises(ConfigurationError):
        TokenValidator(object())  # type: ignore[arg-type]


def test_validator_repr_has_no_key_material() -> None:
    """The validator's repr names its settings only."""
    text = repr(make_validator(expected_serial="1234567"))
    assert "leeway=300.0" in text
    assert "BEGIN" not in text


def test_decode_unverified_returns_header_and_claims() -> None:
    """decode_unverified returns header and claims even for a token signed by an unknown key."""
    header, claims = decode_unverified(good(signer=other_key()))
    assert header["kid"] == KID
    assert claims[CLAIM_TICKET] == TICKET


@pytest.mark.parametrize("token", ["a.b", "A" * (MAX_TOKEN_BYTES + 1), None], ids=["shape", "size", "type"])
def test_decode_unverified_applies_format_checks(token: Any) -> None:
    """decode_unverified applies the same size and format checks as validate."""
    with pytest.raises(TokenValidationError) as info:
        decode_unverified(token)
    assert info.value.check in {"format", "size"}


def test_decode_unverified_rejects_non_object_payload() -> None:
    """decode_unverified refuses a payload that is not a JSON object."""
    with pytest.raises(TokenValidationError):
        decode_unverified(mint_raw(key(), {"alg": "RS256"}, b"[1]"))


def test_all_names_exist() -> None:
    """Every name in tokens.__all__ is defined, so the public list cannot drift."""
    for name in tokens.__all__:
        assert hasattr(tokens, name), name
    assert isinstance(StaticKeySource([(None, key().public_key())]), KeySource)


# ------------------------------------------------------------------------------------------
# hygiene and robustness


def test_errors_for_every_check_carry_no_token_or_ticket() -> None:
    """Errors for each check name no token, ticket or claim value in str, repr or chain."""
    cases = {
        "signature": good(signer=other_key()),
        "issuer": good(iss=TICKET),
        "audience": good(aud=TICKET),
        "serial": good(serial=True),
        "context": good(ctx=TICKET),
        "expiry": good(exp=NOW - 1000),
        "ticket": good(ticket=TICKET + " x"),
    }
    for check, token in cases.items():
        with pytest.raises(TokenValidationError) as info:
            make_validator().validate(token, context_identifier=CTX)
        assert info.value.check == check
        assert_no_secrets(info.value, token, TICKET, segments(token)[1], segments(token)[2])


_BASE_TOKEN = mint(rsa_key(0), now=NOW, ticket=TICKET)
_ALPHABET = st.sampled_from('AZaz09-_.=+/ \n\x00é{}"')


@st.composite
def _mutants(draw: st.DrawFn) -> str:
    chars = list(_BASE_TOKEN)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        index = draw(st.integers(0, max(len(chars) - 1, 0)))
        if op == "delete" and chars:
            del chars[index]
        elif op == "insert":
            chars.insert(index, draw(_ALPHABET))
        elif chars:
            chars[index] = draw(_ALPHABET)
    return "".join(chars)


@settings(derandomize=True, max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutants())
def test_mutated_tokens_only_raise_token_validation_error(mutant: str) -> None:
    """Random character mutations of a valid token raise TokenValidationError and nothing else."""
    validator = make_validator()
    if mutant == _BASE_TOKEN:
        validator.validate(mutant, context_identifier=CTX)
        return
    with pytest.raises(TokenValidationError) as info:
        validator.validate(mutant, context_identifier=CTX)
    assert_no_secrets(info.value, _BASE_TOKEN, mutant, TICKET)


# ------------------------------------------------------------------------------------------
# key_source_from_public_key


def _validates_with(source: StaticKeySource, **mint_options: Any) -> None:
    accept(good(**mint_options), make_validator(source))


def test_key_object_pinned() -> None:
    """An RSAPublicKey object becomes a one-key source that accepts any kid."""
    _validates_with(key_source_from_public_key(key().public_key()), kid="whatever-thumbprint")


@pytest.mark.parametrize("pkcs1", [False, True], ids=["spki", "pkcs1"])
def test_pem_public_key_bytes_and_str(pkcs1: bool) -> None:
    """PEM public keys (BEGIN PUBLIC KEY and BEGIN RSA PUBLIC KEY) load from bytes and str."""
    pem = public_pem(key(), pkcs1=pkcs1)
    _validates_with(key_source_from_public_key(pem))
    _validates_with(key_source_from_public_key("\n" + pem.decode()))


def test_pem_certificate_file(tmp_path: Path) -> None:
    """A PEM certificate file (str path) pins the certificate's key."""
    path = tmp_path / "SuperOfficeFederatedLogin.crt"
    path.write_bytes(self_signed_cert(key()).public_bytes(serialization.Encoding.PEM))
    _validates_with(key_source_from_public_key(str(path)))


def test_der_certificate_file(tmp_path: Path) -> None:
    """A DER certificate file (PathLike) pins the certificate's key."""
    path = tmp_path / "SuperOfficeFederatedLogin.crt"
    path.write_bytes(self_signed_cert(key()).public_bytes(serialization.Encoding.DER))
    _validates_with(key_source_from_public_key(path))


def test_der_certificate_ending_in_a_whitespace_byte() -> None:
    """A DER certificate whose last byte is 0x09-0x0d or 0x20 loads (binary data is never stripped)."""
    while True:
        der = self_signed_cert(key()).public_bytes(serialization.Encoding.DER)
        if der[-1:] in (b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c"):
            break
    _validates_with(key_source_from_public_key(der))


def test_der_public_key_bytes() -> None:
    """DER SubjectPublicKeyInfo bytes load."""
    der = key().public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    _validates_with(key_source_from_public_key(der))


def test_jwks_file_selects_by_kid(tmp_path: Path) -> None:
    """A JWKS file picks the key by kid and refuses a kid-less token when it holds two keys."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_for((other_key(), "old"), (key(), "new"))))
    source = key_source_from_public_key(path)
    _validates_with(source, kid="new")
    reject(good(kid="old"), "signature", make_validator(source))
    reject(good(kid=None), "key", make_validator(source))
    reject(good(kid="unknown"), "key", make_validator(source))


def test_single_jwk_json() -> None:
    """A single RSA JWK as JSON text loads, keeping its kid."""
    source = key_source_from_public_key(json.dumps(jwk_for(key(), "only")))
    _validates_with(source, kid="only")
    reject(good(kid="other"), "key", make_validator(source))


def test_jwks_file_skips_unusable_keys(tmp_path: Path) -> None:
    """Non-RSA, encryption and non-RS256 keys in a JWKS are skipped; the RSA signing key remains."""
    document = jwks_for((key(), KID))
    document["keys"][:0] = [
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "ec"},
        jwk_for(other_key(), "enc", use="enc"),
        jwk_for(other_key(), "rs512", alg="RS512"),
        {"kty": "RSA", "n": "!!", "e": "AQAB", "kid": "broken"},
        "not a dict",
    ]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(document))
    _validates_with(key_source_from_public_key(path), kid=None)


def _ec_public() -> Any:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def _refused_materials() -> list[tuple[str, Any]]:
    ec_private = ec.generate_private_key(ec.SECP256R1())
    return [
        (
            "ec pem",
            _ec_public().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        ),
        ("ec cert", self_signed_cert(ec_private).public_bytes(serialization.Encoding.PEM)),
        ("ec key object", _ec_public()),
        ("small rsa", public_pem(rsa_key(9, 1024))),
        ("garbage", b"definitely not a key"),
        ("empty", b"   \n"),
        ("bad pem", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        ("other pem", b"-----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----\n"),
        ("json not jwk", b'{"hello": 1}'),
        ("bad json", b"{not json"),
        ("ec jwk", json.dumps({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})),
        ("jwks no rsa", json.dumps({"keys": [{"kty": "oct", "k": "AAAA"}]})),
        ("jwks not list", json.dumps({"keys": {}})),
        ("int", 12345),
    ]


@pytest.mark.parametrize(("name", "value"), _refused_materials(), ids=[c[0] for c in _refused_materials()])
def test_unusable_key_material_refused(name: str, value: Any) -> None:
    """Non-RSA, small, unparseable or mistyped key material is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        key_source_from_public_key(value)


def test_private_key_refused_without_echoing_it() -> None:
    """A private key PEM is refused, and the error does not contain the key bytes."""
    pem = key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigurationError, match="private key") as info:
        key_source_from_public_key(pem)
    body = pem.decode().splitlines()[1]
    assert_no_secrets(info.value, body)


def test_missing_key_file_refused(tmp_path: Path) -> None:
    """A path that does not exist is a ConfigurationError naming the path."""
    missing = tmp_path / "nope.crt"
    with pytest.raises(ConfigurationError, match=r"nope\.crt"):
        key_source_from_public_key(os.fspath(missing))


def test_static_source_rejects_non_rsa_and_empty() -> None:
    """StaticKeySource accepts only a non-empty set of RSA public keys."""
    with pytest.raises(ConfigurationError):
        StaticKeySource([])
    with pytest.raises(ConfigurationError):
        StaticKeySource([(None, _ec_public())])


# ------------------------------------------------------------------------------------------
# JwksKeySource against a loopback HTTP server


class _ServerState:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.delay = 0.0
        self.lock = threading.Lock()

    def serve_json(self, path: str, document: Any, status: int = 200) -> None:
        self.routes[path] = (status, json.dumps(document).encode(), {"Content-Type": "application/json"})


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            state.hits[self.path] += 1
        if state.delay:
            time.sleep(state.delay)
        status, body, headers = state.routes.get(self.path, (404, b"not found", {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "X-No-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(QuietServer):  # quiet: the size-cap tests hang up mid-answer on purpose
    state: _ServerState


@pytest.fixture(scope="module")
def http_server() -> Iterator[_Server]:
    """One loopback JWKS server for the module; each test sets its routes."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = _ServerState()
    serve_in_background(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def jwks(http_server: _Server) -> _ServerState:
    """The server's state, reset, serving the trusted key's JWKS at /jwks."""
    state = _ServerState()
    state.serve_json("/jwks", jwks_for((key(), KID)))
    http_server.state = state
    return state


def _url(server: _Server, path: str = "/jwks") -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}{path}"


def _source(server: _Server, clock: FakeClock | None = None, **options: Any) -> JwksKeySource:
    return JwksKeySource(_url(server), clock=clock or FakeClock(), timeout=(2.0, 2.0), **options)


@pytest.mark.network
def test_jwks_fetched_lazily_and_cached(http_server: _Server, jwks: _ServerState) -> None:
    """The JWKS is fetched on first use only, then served from the cache."""
    source = _source(http_server)
    assert jwks.hits["/jwks"] == 0
    validator = make_validator(source)
    accept(good(), validator)
    accept(good(), validator)
    assert jwks.hits["/jwks"] == 1


@pytest.mark.network
def test_unknown_kid_refetches_once_after_cooldown(http_server: _Server, jwks: _ServerState) -> None:
    """After the cooldown, an unknown kid triggers one refetch, which finds a rotated key."""
    clock = FakeClock()
    validator = make_validator(_source(http_server, clock))
    accept(good(), validator)
    jwks.serve_json("/jwks", jwks_for((key(), KID), (other_key(), "rotated")))
    clock.now = 31
    accept(good(kid="rotated", signer=other_key()), validator)
    assert jwks.hits["/jwks"] == 2


@pytest.mark.network
def test_unknown_kid_within_cooldown_does_not_fetch(http_server: _Server, jwks: _ServerState) -> None:
    """Within the first refetch wait (1 s) of the last fetch, an unknown kid fails the key check without fetching."""
    clock = FakeClock()
    validator = make_validator(_source(http_server, clock))
    accept(good(), validator)
    clock.now = 0.9
    reject(good(kid="new"), "key", validator)
    assert jwks.hits["/jwks"] == 1


@pytest.mark.network
def test_unknown_kid_refetches_one_second_after_the_last_fetch(http_server: _Server, jwks: _ServerState) -> None:
    """A rotated kid is found by a refetch 1 s after the last fetch, not only after the 30 s cooldown."""
    clock = FakeClock()
    validator = make_validator(_source(http_server, clock))
    accept(good(), validator)
    jwks.serve_json("/jwks", jwks_for((key(), KID), (other_key(), "rotated")))
    clock.now = 1.0
    accept(good(kid="rotated", signer=other_key()), validator)
    assert jwks.hits["/jwks"] == 2


@pytest.mark.network
def test_refetch_waits_double_up_to_the_cooldown(http_server: _Server, jwks: _ServerState) -> None:
    """Refetches that do not find the kid wait 1, 2, 4 ... seconds between them, never longer than refetch_cooldown."""
    clock = FakeClock()
    source = _source(http_server, clock, refetch_cooldown=5)
    source.get_key(KID)
    fetched_at = []
    for tick in range(0, 300):
        clock.now = tick / 10
        hits = jwks.hits["/jwks"]
        with pytest.raises(TokenValidationError):
            source.get_key("unknown")
        if jwks.hits["/jwks"] > hits:
            fetched_at.append(clock.now)
    assert fetched_at == [1.0, 3.0, 7.0, 12.0, 17.0, 22.0, 27.0]


@pytest.mark.network
def test_refetch_wait_starts_over_once_a_refetch_finds_the_kid(http_server: _Server, jwks: _ServerState) -> None:
    """After a refetch finds the kid it was made for, the next unknown kid waits the first 1 s again."""
    clock = FakeClock()
    source = _source(http_server, clock)
    source.get_key(KID)
    for now in (1.0, 3.0, 7.0):  # three refetches that miss: the wait has grown to 8 s
        clock.now = now
        with pytest.raises(TokenValidationError):
            source.get_key("later")
    jwks.serve_json("/jwks", jwks_for((key(), KID), (other_key(), "later")))
    clock.now = 15.0
    source.get_key("later")
    jwks.serve_json("/jwks", jwks_for((key(), KID), (other_key(), "later"), (rsa_key(2), "next")))
    clock.now = 16.0
    source.get_key("next")
    assert jwks.hits["/jwks"] == 6


@pytest.mark.network
def test_unknown_kid_while_the_jwks_is_down_is_retryable(http_server: _Server, jwks: _ServerState) -> None:
    """An unknown kid while the last JWKS fetch failed is a retryable TransportError, not a key check failure."""
    clock = FakeClock()
    validator = make_validator(_source(http_server, clock))
    accept(good(), validator)
    jwks.routes["/jwks"] = (503, b"", {})
    clock.now = 5.0
    with pytest.raises(TransportError):
        validator.validate(good(kid="rotated", signer=other_key()), context_identifier=CTX)
    clock.now = 5.5  # within the wait: no fetch, and still the outage's error
    with pytest.raises(TransportError) as info:
        validator.validate(good(kid="rotated", signer=other_key()), context_identifier=CTX)
    assert info.value.retryable is True and info.value.status == 503
    assert "kid" in info.value.message
    assert jwks.hits["/jwks"] == 2
    assert_no_secrets(info.value, TICKET)


@pytest.mark.network
def test_validation_succeeds_within_one_wait_once_the_jwks_is_back(http_server: _Server, jwks: _ServerState) -> None:
    """After an outage during a key rotation, the rotated kid is accepted at the next refetch, seconds later, not 30 s."""
    clock = FakeClock()
    validator = make_validator(_source(http_server, clock))
    accept(good(), validator)
    jwks.routes["/jwks"] = (503, b"", {})
    rotated = good(kid="rotated", signer=other_key())
    for now in (5.0, 7.0):  # two failed refetches: the next one waits 4 s
        clock.now = now
        with pytest.raises(TransportError):
            validator.validate(rotated, context_identifier=CTX)
    jwks.serve_json("/jwks", jwks_for((key(), KID), (other_key(), "rotated")))
    clock.now = 11.0
    accept(rotated, validator)
    assert jwks.hits["/jwks"] == 4


@pytest.mark.network
def test_random_kids_fetch_at_most_once_per_cooldown(http_server: _Server, jwks: _ServerState) -> None:
    """1000 random kids cause one refetch per cooldown period, not 1000."""
    clock = FakeClock()
    source = _source(http_server, clock)
    source.get_key(KID)
    clock.now = 30
    for index in range(1000):
        with pytest.raises(TokenValidationError) as info:
            source.get_key(f"random-{index}")
        assert info.value.check == "key"
    assert jwks.hits["/jwks"] == 2
    clock.now = 60
    with pytest.raises(TokenValidationError):
        source.get_key("random-again")
    assert jwks.hits["/jwks"] == 3


@pytest.mark.network
@pytest.mark.parametrize(
    "broken",
    [(500, b"oops", {}), (200, b"not json", {}), (200, b'{"keys": []}', {})],
    ids=["500", "not json", "no keys"],
)
def test_failed_refetch_keeps_cached_set(
    http_server: _Server, jwks: _ServerState, broken: tuple[int, bytes, dict[str, str]]
) -> None:
    """A failed refetch raises TransportError for the unknown kid and keeps the cached keys."""
    clock = FakeClock()
    validator = make_validator(_source(http_server, clock))
    accept(good(), validator)
    jwks.routes["/jwks"] = broken
    clock.now = 31
    with pytest.raises(TransportError):
        validator.validate(good(kid="new"), context_identifier=CTX)
    accept(good(), validator)
    assert jwks.hits["/jwks"] == 2


@pytest.mark.network
@pytest.mark.parametrize(
    ("route", "retryable"),
    [
        ((500, b"oops", {}), True),
        ((503, b"", {}), True),
        ((429, b"", {}), True),
        ((404, b"nope", {}), False),
        ((200, b"<html>login</html>", {}), False),
        ((200, b"[1, 2]", {}), False),
        ((200, json.dumps({"keys": [{"kty": "EC", "x": "A"}]}).encode(), {}), False),
        ((302, b"", {"Location": "/elsewhere"}), False),
    ],
    ids=["500", "503", "429", "404", "html", "array", "ec only", "redirect"],
)
def test_first_fetch_failure_raises_transport_error(
    http_server: _Server, jwks: _ServerState, route: tuple[int, bytes, dict[str, str]], retryable: bool
) -> None:
    """A first fetch that fails raises TransportError with the right retryable flag."""
    jwks.routes["/jwks"] = route
    jwks.serve_json("/elsewhere", jwks_for((key(), KID)))
    with pytest.raises(TransportError) as info:
        make_validator(_source(http_server)).validate(good(), context_identifier=CTX)
    assert info.value.retryable is retryable
    assert jwks.hits["/elsewhere"] == 0
    assert_no_secrets(info.value, TICKET)


@pytest.mark.network
@pytest.mark.parametrize("declare_length", [True, False])
def test_oversized_jwks_refused(http_server: _Server, jwks: _ServerState, declare_length: bool) -> None:
    """A JWKS answer over 1 MiB is refused, with or without a Content-Length header."""
    headers = {} if declare_length else {"X-No-Length": "1"}
    jwks.routes["/jwks"] = (200, b" " * (1024 * 1024 + 10), headers)
    with pytest.raises(TransportError, match="larger"):
        _source(http_server).get_key(KID)


@pytest.mark.network
def test_connection_refused_is_retryable_transport_error() -> None:
    """A JWKS host that refuses connections gives a retryable TransportError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = JwksKeySource(f"http://127.0.0.1:{port}/jwks", timeout=(1.0, 1.0))
    with pytest.raises(TransportError) as info:
        source.get_key(KID)
    assert info.value.retryable


@pytest.mark.network
def test_first_fetch_retried_after_failure(http_server: _Server, jwks: _ServerState) -> None:
    """After a failed first fetch, the next call fetches again and succeeds once the server recovers."""
    source = _source(http_server)
    jwks.routes["/jwks"] = (503, b"", {})
    with pytest.raises(TransportError):
        source.get_key(KID)
    jwks.serve_json("/jwks", jwks_for((key(), KID)))
    assert isinstance(source.get_key(KID), RSAPublicKey)
    assert jwks.hits["/jwks"] == 2


@pytest.mark.network
def test_jwks_kidless_token_needs_single_key(http_server: _Server, jwks: _ServerState) -> None:
    """A kid-less token validates against a one-key JWKS and fails the key check with two keys."""
    accept(good(kid=None), make_validator(_source(http_server)))
    jwks.serve_json("/jwks", jwks_for((key(), KID), (other_key(), "b")))
    reject(good(kid=None), "key", make_validator(_source(http_server)))


@pytest.mark.network
def test_jwks_ignores_non_signing_keys(http_server: _Server, jwks: _ServerState) -> None:
    """Only kty RSA keys with use absent or sig count; an enc key with the token's kid is not used."""
    document = jwks_for((key(), None))
    document["keys"].append(jwk_for(other_key(), KID, use="enc"))
    document["keys"].append({"kty": "oct", "k": "c2VjcmV0", "kid": KID})
    jwks.serve_json("/jwks", document)
    accept(good(kid=None), make_validator(_source(http_server)))
    accept(good(kid=KID), make_validator(_source(http_server)))


@pytest.mark.network
def test_jku_header_causes_no_request(http_server: _Server, jwks: _ServerState) -> None:
    """A jku header pointing at an attacker JWKS is never fetched."""
    jwks.serve_json("/attacker", jwks_for((other_key(), KID)))
    attacker_url = _url(http_server, "/attacker")
    token = good(signer=other_key(), headers={"jku": attacker_url, "x5u": attacker_url})
    reject(token, "signature", make_validator(_source(http_server)))
    assert jwks.hits["/attacker"] == 0


@pytest.mark.network
def test_concurrent_cold_start_fetches_once(http_server: _Server, jwks: _ServerState) -> None:
    """Twenty threads hitting a cold source at once cause exactly one fetch."""
    jwks.delay = 0.05
    source = _source(http_server)
    barrier = threading.Barrier(20)
    results: list[object] = []

    def worker() -> None:
        barrier.wait()
        results.append(source.get_key(KID))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(results) == 20
    assert jwks.hits["/jwks"] == 1


@pytest.mark.network
def test_concurrent_waiters_share_a_failed_fetch(http_server: _Server, jwks: _ServerState) -> None:
    """Callers that waited while a cold fetch failed share the failure instead of each fetching."""
    jwks.delay = 0.1
    jwks.routes["/jwks"] = (503, b"", {})
    source = _source(http_server)
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            source.get_key(KID)
        except TransportError as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(errors) == 10
    assert jwks.hits["/jwks"] < 10


@pytest.mark.parametrize(
    "url",
    [
        "http://sod.superoffice.com/login/.well-known/jwks",
        "ftp://127.0.0.1/jwks",
        "/jwks",
        "",
        "https://[::1",
    ],
)
def test_jwks_url_must_be_https_or_loopback(url: str) -> None:
    """A JWKS URL must be https, or plain http to a loopback host."""
    with pytest.raises(ConfigurationError):
        JwksKeySource(url)


@pytest.mark.parametrize(
    "options",
    [{"refetch_cooldown": -1}, {"timeout": (0, 1)}, {"timeout": 5}, {"refetch_cooldown": float("nan")}],
    ids=repr,
)
def test_bad_jwks_options_refused(options: dict[str, Any]) -> None:
    """Negative cooldowns and malformed timeouts are ConfigurationErrors."""
    with pytest.raises(ConfigurationError):
        JwksKeySource("https://sod.superoffice.com/login/.well-known/jwks", **options)


def test_jwks_source_repr_names_url_only() -> None:
    """The JWKS source's repr shows its URL and cache size."""
    url = "https://sod.superoffice.com/login/.well-known/jwks"
    assert repr(JwksKeySource(url)) == f"JwksKeySource(url={url!r}, cached_keys=none)"


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


class _BreakingTransport:
    """A transport whose JWKS answer breaks off while streaming, as the default transport reports it."""

    def __init__(self) -> None:
        self.calls = 0
        self.closed = 0

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        self.calls += 1
        raise TransportError("the connection broke while reading the answer", status=200, retryable=True)

    def close(self) -> None:
        self.closed += 1


def test_jwks_url_property_is_the_configured_url() -> None:
    """JwksKeySource.url is the JWKS URL it was given."""
    assert JwksKeySource(JWKS_URL).url == JWKS_URL


def test_jwks_body_that_breaks_mid_read_is_a_retryable_transport_error() -> None:
    """A JWKS answer cut off while streaming is a retryable TransportError, and nothing is cached."""
    transport = _BreakingTransport()
    source = JwksKeySource(JWKS_URL, transport=transport, refetch_cooldown=0)
    with pytest.raises(TransportError) as caught:
        source.get_key(KID)
    assert caught.value.message == "fetching the JWKS failed: the connection broke while reading the answer"
    assert caught.value.retryable
    assert caught.value.status == 200
    assert repr(source).endswith("cached_keys=none)")
    with pytest.raises(TransportError):
        source.get_key(KID)
    assert transport.calls == 2


class _Verifier:
    """Stands in for PyJWT's RS256 algorithm: counts what the validator asks of it."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.real = tokens._RS256
        self.prepared: list[Any] = []
        self.verified: list[tuple[bytes, bytes]] = []

    def prepare_key(self, key: Any) -> Any:
        self.prepared.append(key)
        return self.real.prepare_key(key)

    def check_key_length(self, key: Any) -> str | None:
        result: str | None = self.real.check_key_length(key)
        return result

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        if self.error is not None:
            raise self.error
        self.verified.append((msg, sig))
        result: bool = self.real.verify(msg, key, sig)
        return result


def test_verifier_is_pyjwts_rs256_algorithm() -> None:
    """The signature check is PyJWT's own RS256 algorithm, chosen at import and never from the token."""
    assert isinstance(tokens._RS256, jwt.algorithms.RSAAlgorithm)
    assert tokens._RS256.hash_alg is jwt.algorithms.RSAAlgorithm.SHA256


@pytest.mark.parametrize("error", [TypeError("bad key type"), ValueError("bad signature bytes")], ids=repr)
def test_unexpected_verifier_error_is_a_signature_failure_without_its_text(
    error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TypeError/ValueError from PyJWT becomes check 'signature', with no third-party exception attached."""
    monkeypatch.setattr(tokens, "_RS256", _Verifier(error))
    with pytest.raises(TokenValidationError) as caught:
        validator().validate(token(), context_identifier=CTX)
    assert caught.value.check == "signature"
    assert caught.value.message == "the JWT signature could not be checked with the environment's key"
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_validate_verifies_the_exact_signing_input_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT verifies once per token, over header.payload as sent and the decoded signature bytes."""
    verifier = _Verifier()
    monkeypatch.setattr(tokens, "_RS256", verifier)
    jwt_text = token()
    validator().validate(jwt_text, context_identifier=CTX)
    header, payload, signature = jwt_text.split(".")
    assert verifier.verified == [(f"{header}.{payload}".encode(), base64.urlsafe_b64decode(signature + "=="))]


def test_validate_decodes_each_segment_and_json_object_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """One validation decodes three base64url segments and two JSON objects (header, payload), no more."""
    jwt_text = token()
    checked = validator()
    checked.validate(jwt_text, context_identifier=CTX)  # the key is prepared on the first call
    segments: list[str] = []
    documents: list[str] = []
    real_b64, real_json = tokens._b64url_decode, tokens._DECODER.decode

    def b64(segment: str, **kwargs: Any) -> bytes | None:
        segments.append(segment)
        return real_b64(segment, **kwargs)

    def decode(text: str) -> Any:
        documents.append(text)
        return real_json(text)

    monkeypatch.setattr(tokens, "_b64url_decode", b64)
    monkeypatch.setattr(tokens._DECODER, "decode", decode)
    monkeypatch.setattr(json, "loads", _forbidden)
    monkeypatch.setattr(jwt.utils, "base64url_decode", _forbidden)
    checked.validate(jwt_text, context_identifier=CTX)
    assert segments == jwt_text.split(".")
    assert len(documents) == 2


def _forbidden(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("decoded a second time")


def test_key_is_prepared_once_per_key_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated validations with the same key object prepare it once; another key is prepared once more."""
    verifier = _Verifier()
    monkeypatch.setattr(tokens, "_RS256", verifier)
    first, second = rsa_key(0).public_key(), rsa_key(1).public_key()
    checked = make_validator(StaticKeySource([("a", first), ("b", second)]))
    for _ in range(3):
        for kid, signer in (("a", rsa_key(0)), ("b", rsa_key(1))):
            checked.validate(good(kid=kid, signer=signer), context_identifier=CTX)
    assert verifier.prepared == [first, second]
    assert len(verifier.verified) == 6


def test_prepared_keys_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A validator remembers a few prepared keys, not every key object a source ever returned."""
    verifier = _Verifier()
    monkeypatch.setattr(tokens, "_RS256", verifier)
    signer = rsa_key(0)

    class Fresh:
        def get_key(self, kid: str | None) -> RSAPublicKey:
            public: RSAPublicKey = signer.public_key()  # a new object on every call
            return public

    checked = make_validator(Fresh())
    for _ in range(tokens._PREPARED_KEYS + 4):
        checked.validate(good(), context_identifier=CTX)
    assert len(verifier.prepared) == tokens._PREPARED_KEYS + 4
    assert len(checked._prepared) == tokens._PREPARED_KEYS


def test_jwks_source_closes_only_a_transport_it_created(monkeypatch: pytest.MonkeyPatch) -> None:
    """close() closes the transport JwksKeySource made itself, never one the caller passed in."""
    theirs = _BreakingTransport()
    JwksKeySource(JWKS_URL, transport=theirs).close()
    assert theirs.closed == 0
    ours = _BreakingTransport()
    monkeypatch.setattr(keysources, "HttpTransport", lambda **kwargs: ours)
    JwksKeySource(JWKS_URL).close()
    assert ours.closed == 1
