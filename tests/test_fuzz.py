"""Seeded fuzzing of the answer parser and the JWT validator: nothing but SutSoapError escapes.

Hypothesis (derandomized) chooses seeds and mutation styles; each example then runs a batch
of cheap, seeded variants, so a run covers tens of thousands of inputs in seconds. A failure
reports the seed, which reproduces the exact input.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt_factory import mint, rsa_key

from sut_soap.errors import SutSoapError
from sut_soap.soap import parse_answer
from sut_soap.tokens import StaticKeySource, TokenValidator

BATCH = 100
EXAMPLES = 200  # x BATCH = 20,000 inputs per test
FUZZ = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

S = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "http://www.superoffice.com/superid/partnersystemuser/0.1"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SUCCESS = (
    f'<s:Envelope xmlns:s="{S}"><s:Header><ActivityId CorrelationId="c0ffee" '
    'xmlns="http://schemas.microsoft.com/2004/09/ServiceModel/Diagnostics">a1</ActivityId></s:Header><s:Body>'
    f'<AuthenticationResponse xmlns="{TNS}"><IsSuccessful>true</IsSuccessful><Token>aaa.bbb.ccc</Token>'
    f'<ErrorMessage i:nil="true" xmlns:i="{XSI}"/></AuthenticationResponse></s:Body></s:Envelope>'
).encode()
REJECTION = SUCCESS.replace(b">true<", b">false<").replace(b"<Token>aaa.bbb.ccc</Token>", b"").replace(
    b'<ErrorMessage i:nil="true"', b"<ErrorMessage>InvalidSignature</ErrorMessage><X"
)
FAULT = (
    f'<s:Envelope xmlns:s="{S}"><s:Body><s:Fault><faultcode>s:Client</faultcode>'
    "<faultstring>bad</faultstring></s:Fault></s:Body></s:Envelope>"
).encode()
BASES = [SUCCESS, REJECTION, FAULT]
SNIPPETS = [
    b"<", b">", b"/>", b"</", b'"', b"=", b"&", b"&amp;", b";", b":", b"xmlns=", b"xmlns:s=", b"<!--", b"-->",
    b"<![CDATA[", b"]]>", b"<?xml ?>", b"<!DOCTYPE x>", b"<!ENTITY e 'x'>", b"&e;", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf",
    b"<s:Body>", b"</s:Body>", b"<Token>", b"</Token>", b"<IsSuccessful>", b"true", b"false", b"maybe",
    b'i:nil="true"', b'xmlns:i="' + XSI.encode() + b'"', b"http://www.w3.org/2003/05/soap-envelope",
]


@dataclass
class Reply:
    content: bytes
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def mutate_bytes(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        pos = rnd.randrange(len(b) + 1)
        op = rnd.random()
        if op < 0.25 and b:
            del b[pos : pos + rnd.randint(1, 24)]
        elif op < 0.45:
            b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 4)))
        elif op < 0.75:
            b[pos:pos] = rnd.choice(SNIPPETS)
        elif b:
            start = rnd.randrange(len(b))
            b[pos:pos] = b[start : start + rnd.randint(1, 80)]
    return bytes(b)


def structured_answer(rnd: random.Random) -> bytes:
    """An envelope assembled from plausible and implausible parts."""

    def maybe_nil(name: str, text: str) -> str:
        choice = rnd.random()
        if choice < 0.15:
            return f'<{name} i:nil="{rnd.choice(["true", "false", "1", ""])}" xmlns:i="{XSI}"/>'
        if choice < 0.25:
            return f"<{name}/>"
        return f"<{name}>{text}</{name}>"

    members = [
        maybe_nil("IsSuccessful", rnd.choice(["true", "false", "1", "0", "True", " true ", "maybe", "", "yes"])),
        maybe_nil("Token", rnd.choice(["a.b.c", "", " ", "x" * rnd.choice([1, 100, 17000]), "<![CDATA[a.b.c]]>"])),
        maybe_nil("ErrorMessage", rnd.choice(["InvalidSignature", "&lt;b&gt;", "\t\r\n", "x" * 300, "&#x1;"])),
    ]
    if rnd.random() < 0.3:
        members.append(rnd.choice(members))
    if rnd.random() < 0.2:
        members.append(rnd.choice(["<Unknown/>", "<x:Y xmlns:x='urn:x'/>", "text", "<!-- c -->", "<?pi x?>"]))
    rnd.shuffle(members)
    ns = rnd.choice([TNS, TNS, TNS, "", "urn:other", TNS + "/"])
    local = rnd.choice(["AuthenticationResponse"] * 4 + ["AuthenticationRequest", "Fault", "authenticationresponse"])
    payload = f'<{local} xmlns="{ns}">' + "".join(members) + f"</{local}>"
    if rnd.random() < 0.15:
        payload = rnd.choice(["", " ", payload + payload, "<s:Fault/>", "<s:Fault><faultcode/></s:Fault>"])
    env_ns = rnd.choice([S] * 6 + ["http://www.w3.org/2003/05/soap-envelope", "urn:x", ""])
    header = rnd.choice(["", "<s:Header/>", "<s:Header><h>1</h></s:Header>"])
    body = rnd.choice(["<s:Body>{}</s:Body>"] * 5 + ["<s:Body/>", "{}", "<s:Body>{}</s:Body><s:Body/>"])
    doc = f'<s:Envelope xmlns:s="{env_ns}">{header}{body.format(payload)}</s:Envelope>'
    prefix = rnd.choice(["", "", '<?xml version="1.0" encoding="utf-8"?>', "\ufeff", "  "])
    encoding = rnd.choice(["utf-8"] * 5 + ["utf-16", "latin-1"])
    try:
        return (prefix + doc).encode(encoding)
    except UnicodeEncodeError:
        return (prefix + doc).encode("utf-8")


class Counter:
    def __init__(self) -> None:
        self.count = 0


ANSWER_BYTES = Counter()
ANSWER_STRUCT = Counter()
JWT_MUTANTS = Counter()


def check_answer(data: bytes, status: int) -> None:
    try:
        parse_answer(Reply(data, status), secrets=("aaa.bbb.ccc",))
    except SutSoapError as error:
        assert len(str(error)) <= 1024


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), base=st.sampled_from(BASES), status=st.sampled_from([200, 200, 400, 500, 503]))
def test_byte_mangled_answers_raise_only_sut_soap_errors(seed: int, base: bytes, status: int) -> None:
    """WCF answers with bytes flipped, cut or inserted raise only SutSoapError (with short messages)."""
    rnd = random.Random(seed)
    for _ in range(BATCH):
        check_answer(mutate_bytes(rnd, base), status)
        ANSWER_BYTES.count += 1


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), status=st.sampled_from([200, 200, 200, 500]), mutate=st.booleans())
def test_oddly_assembled_answers_raise_only_sut_soap_errors(seed: int, status: int, mutate: bool) -> None:
    """Envelopes assembled from odd parts raise only SutSoapError."""
    rnd = random.Random(seed)
    for _ in range(BATCH):
        data = structured_answer(rnd)
        check_answer(mutate_bytes(rnd, data) if mutate else data, status)
        ANSWER_STRUCT.count += 1


NOW = 1_800_000_000.0
KEY = rsa_key()
VALIDATOR = TokenValidator(StaticKeySource([("test-kid", KEY.public_key())]), clock=lambda: NOW)


def _seed_tokens() -> list[str]:
    """A few dozen signed tokens with varied headers and claims, minted once (signing is slow)."""
    tokens = [mint(KEY, now=NOW)]
    variants: list[dict[str, object]] = [
        {"ctx": "Cust99999"}, {"exp": NOW - 3600}, {"exp": "1800000300"}, {"iss": "SuperOffice"},
        {"aud": ["spn:1234567"]}, {"ticket": ""}, {"ticket": 7}, {"serial": None}, {"nbf": NOW + 9999},
        {"iat": "x"}, {"exp": 10**20}, {"aud": "spn:1"},
    ]
    tokens += [mint(KEY, now=NOW, **v) for v in variants]  # type: ignore[arg-type]
    tokens += [
        mint(KEY, now=NOW, headers={"crit": ["exp"]}),
        mint(KEY, now=NOW, headers={"jku": "http://127.0.0.1:9/jwks"}),
        mint(KEY, now=NOW, kid="other"),
        mint(KEY, now=NOW, kid=None),
    ]
    return tokens


TOKENS = _seed_tokens()
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mutate_jwt(rnd: random.Random, token: str) -> str:
    header, payload, signature = token.split(".")
    op = rnd.random()
    if op < 0.35:
        chars = list(token)
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(len(chars))
            chars[i] = rnd.choice(B64 + ".=+/ \n\x00é")
        return "".join(chars)
    if op < 0.55:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        key = rnd.choice([*claims, "exp", "iss", "aud", "nbf", "iat"])
        claims[key] = rnd.choice([None, "", 0, -1, 1.5, True, [], {}, "SuperOffice AS", 2**70, "x" * 5000, [1, [2]]])
        return ".".join([header, _b64(json.dumps(claims).encode()), signature])
    if op < 0.7:
        head = json.loads(base64.urlsafe_b64decode(header + "=="))
        head[rnd.choice(["alg", "kid", "typ", "crit", "jwk", "x5c"])] = rnd.choice(
            ["none", "HS256", "RS512", "PS256", "rs256", "", None, 5, ["RS256"], {"k": 1}, "../../etc/passwd"]
        )
        return ".".join([_b64(json.dumps(head).encode()), payload, signature])
    if op < 0.8:
        parts = [header, payload, signature]
        return ".".join(rnd.choice([parts[:2], [*parts, signature], [payload, header, signature], parts[::-1]]))
    if op < 0.9:
        raw = rnd.choice([b"[]", b"null", b'"s"', b"{", b"\xff\xfe", b"[" * 5000, b'{"a":1,"a":2}', b"{}"])
        return ".".join([_b64(raw), payload, signature] if rnd.random() < 0.5 else [header, _b64(raw), signature])
    return token + rnd.choice(["=", "\n", " ", ".", "a" * 17000])


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, len(TOKENS) - 1))
def test_tampered_jwts_raise_only_sut_soap_errors_and_never_validate(seed: int, index: int) -> None:
    """Tampered and hostile JWTs raise only SutSoapError and never validate."""
    rnd = random.Random(seed)
    for _ in range(BATCH):
        token = mutate_jwt(rnd, TOKENS[index])
        JWT_MUTANTS.count += 1
        if token == TOKENS[index]:
            continue
        try:
            VALIDATOR.validate(token, context_identifier="Cust12345")
        except SutSoapError:
            continue
        raise AssertionError(f"a tampered token validated (seed {seed}, base {index})")


def test_seed_token_is_valid() -> None:
    """The untampered base token validates, so the tampered ones above test something."""
    assert VALIDATOR.validate(TOKENS[0], context_identifier="Cust12345")["iss"] == "SuperOffice AS"


def test_fuzz_counts() -> None:
    """Each fuzz test above ran at least 20,000 generated inputs (run after them, in file order)."""
    if ANSWER_BYTES.count == 0:
        return  # run alone (-k): nothing to count
    assert ANSWER_BYTES.count >= 20_000
    assert ANSWER_STRUCT.count >= 20_000
    assert JWT_MUTANTS.count >= 20_000


