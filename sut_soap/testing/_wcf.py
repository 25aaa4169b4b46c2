"""The WCF side of the emulator: reading a SOAP request, writing answers and faults as WCF does."""


from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple
from xml.sax.saxutils import escape

from lxml import etree

from sut_soap._answer import utf8_media_type
from sut_soap.contract import SOAP11_ENV, TNS, XSI
from sut_soap.safexml import hardened_parser, has_dtd, name_of

__all__: list[str] = []


_DIAGNOSTICS = "http://schemas.microsoft.com/2004/09/ServiceModel/Diagnostics"
_ADDRESSING_NONE = "http://schemas.microsoft.com/ws/2005/05/addressing/none"
_DISPATCHER = "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher"
_XML = "text/xml; charset=utf-8"

_WCF_ACTION_NOT_SUPPORTED = (
    "The message with Action '{action}' cannot be processed at the receiver, due to a ContractFilter "
    "mismatch at the EndpointDispatcher. This may be because of either a contract mismatch (mismatched "
    "Actions between sender and receiver) or a binding/security mismatch between the sender and the "
    "receiver.  Check that sender and receiver have the same contract and the same binding (including "
    "security requirements, e.g. Message, Transport, None)."
)
_WCF_INTERNAL = (
    "The server was unable to process the request due to an internal error.  For more information about "
    "the error, either turn on IncludeExceptionDetailInFaults (either from ServiceBehaviorAttribute or "
    "from the <serviceDebug> configuration behavior) on the server in order to send the exception "
    "information back to the client, or turn on tracing as per the Microsoft .NET Framework SDK "
    "documentation and inspect the server trace logs."
)
_IIS_503 = (
    b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">\r\n'
    b"<HTML><HEAD><TITLE>Service Unavailable</TITLE>\r\n"
    b'<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
    b"<BODY><h2>Service Unavailable</h2>\r\n"
    b"<hr><p>HTTP Error 503. The service is unavailable.</p>\r\n"
    b"</BODY></HTML>\r\n"
)
_HELP_PAGE = (
    b"<html><head><title>PartnerSystemUserService Service</title></head><body>"
    b"<h1>PartnerSystemUserService Service</h1><p>sut-soap emulator: POST SOAP 1.1 requests here.</p>"
    b"</body></html>"
)


class _Drip(NamedTuple):
    """Send the answer one byte every ``seconds``, until ``called_off`` is set."""

    seconds: float
    called_off: threading.Event


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str | None = _XML
    headers: tuple[tuple[str, str], ...] = ()
    disconnect: bool = False
    drip: _Drip | None = None


class _Request(NamedTuple):
    application_token: str | None
    context_identifier: str | None
    signed_token: str | None
    token_type: str


class _Rejected(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.error_message = f"{code}: {detail}"


def _xml_text(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _soap_fault(code: str, text: str, *, code_namespace: str | None = None) -> _Reply:
    xmlns = f' xmlns:a="{code_namespace}"' if code_namespace else ""
    body = (
        f'<s:Envelope xmlns:s="{SOAP11_ENV}"><s:Body><s:Fault>'
        f"<faultcode{xmlns}>{_xml_text(code)}</faultcode>"
        f'<faultstring xml:lang="en-US">{_xml_text(text)}</faultstring>'
        f"</s:Fault></s:Body></s:Envelope>"
    )
    return _Reply(500, body.encode("utf-8"))


def _deserialization_failed(detail: str) -> _Reply:
    text = (
        "The formatter threw an exception while trying to deserialize the message: Error in deserializing "
        f"body of request message for operation 'Authenticate'. {detail}"
    )
    return _soap_fault("a:DeserializationFailed", text, code_namespace=_DISPATCHER)


def _bad_request() -> _Reply:
    return _Reply(400, content_type=None)


def _nil_or_text(element: etree._Element) -> str | None:
    if element.get(f"{{{XSI}}}nil") in ("true", "1"):
        return None
    return element.text or ""


def _parse_request(body: bytes) -> _Request | _Reply:
    """The request envelope, or the HTTP answer WCF gives to one it cannot read."""
    head = body[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in body.lower():
        return _bad_request()  # WCF: "DTD is prohibited in this XML document" -> 400
    try:
        root = etree.fromstring(body, hardened_parser())
    except etree.XMLSyntaxError:
        return _bad_request()
    if has_dtd(root) or next(root.iter(etree.Entity), None) is not None:
        return _bad_request()  # a DOCTYPE in an encoding the byte check above cannot see
    root_name = name_of(root)
    if root_name.localname != "Envelope":
        return _bad_request()
    if root_name.namespace != SOAP11_ENV:
        return _soap_fault(
            "s:VersionMismatch",
            f"The envelope version of the incoming message ({root_name.namespace}) does not match that "
            "of the encoder (Soap11 (http://schemas.xmlsoap.org/soap/envelope/)).",
        )
    header = root.find(f"{{{SOAP11_ENV}}}Header")
    soap_body = root.find(f"{{{SOAP11_ENV}}}Body")
    if soap_body is None:
        return _bad_request()

    headers = _read_headers(header)
    if isinstance(headers, _Reply):
        return headers
    request = _read_body_element(soap_body)
    if isinstance(request, _Reply):
        return request
    signed, token_type = request
    return _Request(
        application_token=headers["ApplicationToken"],
        context_identifier=headers["ContextIdentifier"],
        signed_token=signed,
        token_type=token_type,
    )


def _read_headers(header: etree._Element | None) -> dict[str, str | None] | _Reply:
    """The two SOAP headers the service reads, or WCF's fault for a duplicate or a mustUnderstand one."""
    headers: dict[str, str | None] = {"ApplicationToken": None, "ContextIdentifier": None}
    seen: set[str] = set()
    for element in header if header is not None else ():
        if not isinstance(element.tag, str):
            continue
        name = name_of(element)
        if name.namespace == TNS and name.localname in headers:
            if name.localname in seen:
                return _soap_fault(
                    "s:Client",
                    f"Multiple headers with name '{name.localname}' and namespace '{TNS}' found.",
                )
            seen.add(name.localname)
            headers[name.localname] = _nil_or_text(element)
        elif element.get(f"{{{SOAP11_ENV}}}mustUnderstand") in ("1", "true"):
            return _soap_fault(
                "s:MustUnderstand",
                f"The header '{name.localname}' from the namespace '{name.namespace}' was not understood by "
                "the recipient of this message, causing the message to not be processed.  This error "
                "typically indicates that the sender of this message has enabled a communication protocol "
                "that the receiver cannot process.  Please ensure that the configuration of the client's "
                "binding is consistent with the service's binding. ",
            )
    return headers


def _read_body_element(soap_body: etree._Element) -> tuple[str | None, str] | _Reply:
    """The AuthenticationRequest's signed token and token type, or WCF's DeserializationFailed."""
    wrapper = next((child for child in soap_body if isinstance(child.tag, str)), None)
    expected = (
        f"Expected to find node type 'Element' with name 'AuthenticationRequest' and namespace '{TNS}'."
    )
    if wrapper is None:
        return _deserialization_failed(
            f"OperationFormatter encountered an invalid Message body. {expected} Found node type 'EndElement'."
        )
    wrapper_name = name_of(wrapper)
    if wrapper_name.namespace != TNS or wrapper_name.localname != "AuthenticationRequest":
        return _deserialization_failed(
            f"OperationFormatter encountered an invalid Message body. {expected} Found node type 'Element' "
            f"with name '{wrapper_name.localname}' and namespace '{wrapper_name.namespace or ''}'."
        )
    signed = wrapper.find(f"{{{TNS}}}SignedSystemToken")
    token_type_element = wrapper.find(f"{{{TNS}}}ReturnTokenType")
    token_type = "Jwt"  # noqa: S105 -- the enum's first value, which is what .NET gives an absent member
    if token_type_element is not None:
        token_type = token_type_element.text or ""
        if token_type not in ("Jwt", "Saml"):
            return _deserialization_failed(
                f"Instance validation error: '{token_type[:64]}' is not a valid value for TokenType."
            )
    return (_nil_or_text(signed) if signed is not None else None), token_type


def _media_type_ok(content_type: str | None) -> bool:
    return utf8_media_type(content_type) == "text/xml"


def _unquoted(action: str | None) -> str | None:
    """A SOAPAction header as WCF reads it: one pair of surrounding quotes removed, if present."""
    if action is not None and len(action) >= 2 and action[0] == action[-1] == '"':
        return action[1:-1]
    return action


def _unavailable(retry_after: int | None) -> _Reply:
    extra = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
    return _Reply(503, _IIS_503, "text/html; charset=us-ascii", extra)


def _not_found() -> _Reply:
    return _Reply(404, b"<html><body><h2>404 - File or directory not found.</h2></body></html>", "text/html")


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive view of HTTP request headers (repeats joined with ``", "``)."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        merged: dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        self._map = merged

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __repr__(self) -> str:
        return f"Headers({self._map!r})"
