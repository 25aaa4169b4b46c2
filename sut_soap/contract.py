"""The protocol's constants: names the service, its answers and its JWTs use.

A leaf module (it imports nothing), so the ticket, the cache, the emulator and the command
line can name a claim or a namespace without loading zeep, lxml, PyJWT or cryptography.
Values are SuperOffice's, from the published WSDL and the documented JWT claims (CONTRACT.md).
Public: code that reads a ticket's claims or builds its own checks can import them from here.
"""

from __future__ import annotations

#: Target namespace of the PartnerSystemUserService WSDL (request and answer elements).
TNS = "http://www.superoffice.com/superid/partnersystemuser/0.1"
#: SOAP 1.1 envelope namespace: the only SOAP version the service speaks.
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
#: SOAP 1.2 envelope namespace, recognised only to refuse it with a clear error.
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
#: XML Schema instance namespace (``xsi:nil`` on empty answer members).
XSI = "http://www.w3.org/2001/XMLSchema-instance"
#: WS-Addressing namespaces whose headers zeep adds for WCF WSDLs and the envelope drops.
WSA_NAMESPACES = frozenset(
    {
        "http://www.w3.org/2005/08/addressing",
        "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    }
)
#: The one operation the library calls.
OPERATION = "Authenticate"
#: The ``SOAPAction`` HTTP header of an Authenticate request (sent quoted).
SOAP_ACTION = f"{TNS}/IPartnerSystemUserService/{OPERATION}"
#: Path of the service below an environment's base URL.
SERVICE_PATH = "/Login/Services/PartnerSystemUserService.svc"
#: Path of the REST form of the same exchange below an environment's base URL (JSON in and out).
REST_PATH = "/Login/api/PartnerSystemUser/Authenticate"
#: ``ReturnTokenType`` of a REST request, spelled as SuperOffice's documentation spells it.
REST_TOKEN_TYPE = "JWT"  # noqa: S105 -- a token type, not a password
#: The value of every field of the command line's ``doctor`` probe requests: recognisably not a secret.
PROBE_VALUE = "sut-soap-doctor-probe"
#: Path of the JWT signing keys below an environment's base URL.
JWKS_PATH = "/login/.well-known/jwks"
#: Path of the tenant state API below an environment's base URL; the ContextIdentifier follows.
STATE_PATH = "/api/state/"
#: Scheme of the ``Authorization`` header that carries a ticket to the tenant's API.
TICKET_SCHEME = "SOTicket"
#: Header that carries the application's client secret to the tenant's API.
APP_TOKEN_HEADER = "SO-AppToken"  # noqa: S105 -- a header name
#: The values of the state API's ``State`` for which ``IsRunning`` is true (its API is available).
RUNNING_STATES = frozenset({"Running", "OnlineMaintenance"})
#: The documented values of ``State`` whose ``IsRunning`` is false.
NOT_RUNNING_STATES = frozenset(
    {"Unknown", "Provisioning", "Deleted", "Suspended", "OfflineMaintenance", "ProvisioningFailed", "Deleting",
     "DeleteFailed", "MigrationPending"}
)

#: ``iss`` of every SuperOffice JWT.
ISSUER = "SuperOffice AS"
#: The only JWS algorithm accepted (never taken from the token).
ALGORITHM = "RS256"
#: Prefix of SuperOffice's own claim names.
CLAIM_PREFIX = "http://schemes.superoffice.net/identity/"
#: The system user ticket (``7T:...``): the credential for the tenant's APIs.
CLAIM_TICKET = CLAIM_PREFIX + "ticket"
#: The tenant's ContextIdentifier (``Cust12345``).
CLAIM_CTX = CLAIM_PREFIX + "ctx"
#: The database serial; ``aud`` is ``spn:<serial>``.
CLAIM_SERIAL = CLAIM_PREFIX + "serial"
#: Base URL of the tenant's REST API.
CLAIM_WEBAPI_URL = CLAIM_PREFIX + "webapi_url"
#: Base URL of the tenant's NetServer SOAP services.
CLAIM_NETSERVER_URL = CLAIM_PREFIX + "netserver_url"
#: The system user's associate id.
CLAIM_ASSOCIATE_ID = CLAIM_PREFIX + "associateid"
#: Whether the system user is an administrator (``"True"``/``"False"``).
CLAIM_IS_ADMINISTRATOR = CLAIM_PREFIX + "is_administrator"
#: The system user token echoed back: a secret, never stored at rest or printed.
CLAIM_SYSTEM_TOKEN = CLAIM_PREFIX + "system_token"
#: The system user's e-mail address.
CLAIM_EMAIL = CLAIM_PREFIX + "email"
#: The system user's user principal name.
CLAIM_UPN = CLAIM_PREFIX + "upn"
