"""A minimal hand-written client of the same exchange, the benchmark's yardstick for sut-soap.

What a partner would write without sut-soap or zeep: the envelope from a string template,
one keep-alive ``requests.Session``, lxml for the answer and PyJWT for the JWT. It does the
same checks as sut-soap on the happy path (RS256 only, issuer, audience ``spn:<serial>``,
expiry with 5 minutes of leeway, the tenant, the ticket claim) and none of the hardening
(response size cap, deadline, typed errors, redirects refused, secret scrubbing). Not for
production use.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

import jwt
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

TNS = "http://www.superoffice.com/superid/partnersystemuser/0.1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
CLAIM = "http://schemes.superoffice.net/identity/"
HEADERS = {
    "Content-Type": "text/xml; charset=utf-8",
    "SOAPAction": f'"{TNS}/IPartnerSystemUserService/Authenticate"',
}
ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    f'<soap-env:Envelope xmlns:soap-env="{SOAP_ENV}" xmlns:tns="{TNS}">'
    "<soap-env:Header>"
    "<tns:ApplicationToken>{secret}</tns:ApplicationToken>"
    "<tns:ContextIdentifier>{context}</tns:ContextIdentifier>"
    "</soap-env:Header>"
    "<soap-env:Body><tns:AuthenticationRequest>"
    "<tns:SignedSystemToken>{signed}</tns:SignedSystemToken>"
    "<tns:ReturnTokenType>Jwt</tns:ReturnTokenType>"
    "</tns:AuthenticationRequest></soap-env:Body>"
    "</soap-env:Envelope>"
)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_IS_SUCCESSFUL = f".//{{{TNS}}}IsSuccessful"
_TOKEN = f".//{{{TNS}}}Token"


class HandwrittenClient:
    """Sign, post a templated envelope, parse with lxml, validate with PyJWT."""

    def __init__(self, *, endpoint: str, jwks_url: str, client_secret: str, private_key: rsa.RSAPrivateKey) -> None:
        self.endpoint = endpoint
        self.client_secret = client_secret
        self.private_key = private_key
        self.session = requests.Session()
        jwks = self.session.get(jwks_url, timeout=(5, 10)).json()
        self.keys: dict[str, Any] = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}

    def sign(self, system_user_token: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M")
        data = f"{system_user_token}.{stamp}".encode()
        signature = self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return f"{system_user_token}.{stamp}.{base64.b64encode(signature).decode('ascii')}"

    def envelope(self, context_identifier: str, signed: str) -> bytes:
        return ENVELOPE.format(
            secret=escape(self.client_secret), context=escape(context_identifier), signed=escape(signed)
        ).encode("utf-8")

    def post(self, body: bytes) -> bytes:
        response = self.session.post(self.endpoint, data=body, headers=HEADERS, timeout=(5, 10))
        return response.content

    @staticmethod
    def parse(content: bytes) -> str:
        root = etree.fromstring(content, parser=_PARSER)
        flag = root.find(_IS_SUCCESSFUL)
        token = root.find(_TOKEN)
        if flag is None or flag.text != "true" or token is None or not token.text:
            raise RuntimeError("exchange failed")
        return token.text

    def validate(self, token: str, context_identifier: str) -> dict[str, Any]:
        kid = jwt.get_unverified_header(token).get("kid")
        claims: dict[str, Any] = jwt.decode(
            token,
            self.keys[kid],
            algorithms=["RS256"],
            issuer="SuperOffice AS",
            leeway=300,
            options={"verify_aud": False, "require": ["exp", "iat", "iss", "aud"]},
        )
        if claims["aud"] != f"spn:{claims[CLAIM + 'serial']}" or claims[CLAIM + "ctx"] != context_identifier:
            raise RuntimeError("wrong tenant")
        if not claims.get(CLAIM + "ticket"):
            raise RuntimeError("no ticket")
        return claims

    def authenticate(self, context_identifier: str, system_user_token: str) -> str:
        signed = self.sign(system_user_token)
        token = self.parse(self.post(self.envelope(context_identifier, signed)))
        return str(self.validate(token, context_identifier)[CLAIM + "ticket"])

    def close(self) -> None:
        self.session.close()
