"""The SOAP side of the exchange: the only module that imports zeep.

zeep builds the request from the service WSDL (parsed once per process and per file) so the
body and SOAPAction follow the published contract. A header plugin then gives the envelope
exactly the shape SuperOffice documents: it drops the WS-Addressing headers zeep adds for
WCF WSDLs (they carry a random MessageID, and the service does not need them) and writes
the two request headers, ``ApplicationToken`` and ``ContextIdentifier``, using the elements
the WSDL declares. The result is byte-identical between runs for the same inputs.

zeep serialises the request once per :class:`SoapService`, with a placeholder in each of the
three values, and that envelope is kept as the bytes around them: each :meth:`SoapService.build`
then joins those pieces with the XML-escaped values (a few microseconds instead of zeep's
hundred). The three values are plain ``xs:string`` element text, which lxml escapes one
character at a time (``&``, ``<``, ``>`` and ``\r`` become references; ``"``, ``'`` and every
other character of the XML 1.0 ``Char`` production are written as UTF-8; anything else is
refused), so the joined bytes are the ones zeep would have written; the template is checked
against zeep with hostile values when it is made, and is not used if it differs. A value that
escaping cannot carry (not a ``str``, a control character, a lone surrogate) goes through
zeep, which raises as before. The template holds no value at all, so no secret: one per
service, immutable, shared by every thread, and kept as it is in a forked child.

The answer is not handed to zeep: zeep maps odd booleans to False, lets bare IndexError and
TypeError escape on an empty Body and treats HTML error pages as faults. The few fields of
``AuthenticationResponse`` are read here with a hardened lxml parser instead (no DTD, no
entities, no network, no huge trees), and every way an answer can be wrong becomes one of
the typed errors in :mod:`sut_soap.errors`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import zeep
import zeep.exceptions
from lxml import etree
from zeep.plugins import Plugin

from ._answer import MAX_TOKEN_CHARS, Answer, _excerpt, _status_error, parse_retry_after
from ._text import sanitise
from .contract import OPERATION, PROBE_VALUE, SOAP11_ENV, SOAP12_ENV, SOAP_ACTION, TNS, WSA_NAMESPACES, XSI
from .errors import ConfigurationError, ProtocolError, SoapFaultError
from .safexml import hardened_parser, has_dtd, name_of
from .transport import Response

__all__ = [
    "MAX_TOKEN_CHARS",
    "PROBE_VALUE",
    "SOAP_ACTION",
    "TNS",
    "Answer",
    "SoapService",
    "bundled_wsdl_path",
    "parse_answer",
    "parse_retry_after",
    "probe_request",
    "sanitise",
]

WSDL_NAME = "PartnerSystemUserService.wsdl"

_log = logging.getLogger("sut_soap.soap")


class _DropZeepBodyLogs(logging.Filter):
    """Keep zeep's transport logger from writing envelopes (secrets) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("HTTP Post to", "HTTP Response from"))


logging.getLogger("zeep.transports").addFilter(_DropZeepBodyLogs())


def bundled_wsdl_path() -> Path:
    """Return the path of the bundled PartnerSystemUserService WSDL.

    The copy inside the installed package, else the source checkout's ``wsdl/`` directory.
    Nothing is fetched: the service's own published WSDL is only used when passed as ``wsdl=``.
    """
    packaged = resources.files("sut_soap").joinpath("wsdl").joinpath(WSDL_NAME)
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "wsdl" / WSDL_NAME


def _zeep_settings() -> zeep.Settings:
    return zeep.Settings(
        strict=True,
        raw_response=False,
        force_https=False,
        xml_huge_tree=False,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )


_documents: dict[str, Any] = {}
_documents_lock = threading.Lock()


def _renew_documents_lock() -> None:
    """In a forked child: a new lock, since the parent's may have been held by a thread now gone."""
    global _documents_lock  # noqa: PLW0603 -- the module's one lock is replaced, not shared
    _documents_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only where there is no fork (Windows)
    os.register_at_fork(after_in_child=_renew_documents_lock)


def _load_document(path: str) -> Any:
    """Parse a WSDL once per process; later clients reuse the parsed document."""
    with _documents_lock:
        document = _documents.get(path)
        if document is None:
            loader = zeep.Transport(timeout=5)  # type: ignore[no-untyped-call]
            try:
                document = zeep.wsdl.Document(path, loader, settings=_zeep_settings())  # type: ignore[arg-type]
            except (OSError, etree.LxmlError, zeep.exceptions.Error, ValueError, LookupError) as exc:
                raise ConfigurationError(
                    f"cannot load the service WSDL {path}: {type(exc).__name__}",
                    hint="pass the path of a PartnerSystemUserService WSDL file",
                ) from exc
            finally:
                loader.session.close()
            _documents[path] = document
        return document


class _HeaderPlugin(Plugin):
    """Write ApplicationToken and ContextIdentifier; drop zeep's WS-Addressing headers."""

    def __init__(self, application_token_element: Any, context_identifier_element: Any) -> None:
        self._elements = (application_token_element, context_identifier_element)

    def egress(
        self, envelope: Any, http_headers: dict[str, str], operation: Any, binding_options: Mapping[str, Any]
    ) -> tuple[Any, dict[str, str]]:
        values = binding_options["sut_soap_headers"]
        old = envelope.find(f"{{{SOAP11_ENV}}}Header")
        if old is not None:
            kept = [c for c in old if not isinstance(c.tag, str) or name_of(c).namespace not in WSA_NAMESPACES]
            envelope.remove(old)
        else:
            kept = []
        header = etree.Element(f"{{{SOAP11_ENV}}}Header", nsmap={"soap-env": SOAP11_ENV})
        for element, value in zip(self._elements, values, strict=True):
            element.render(header, value)
        for child in kept:
            header.append(child)
        envelope.insert(0, header)
        etree.cleanup_namespaces(envelope, top_nsmap={"soap-env": SOAP11_ENV, "tns": TNS})
        return envelope, http_headers



class _NoNetwork(zeep.Transport):
    """zeep wants a transport; this one refuses to send, because the SOAP layer does no I/O."""

    def __init__(self) -> None:
        # zeep's __init__ would open a requests session that nothing here uses.
        self.cache = None
        self.load_timeout = None
        self.operation_timeout = None
        self.logger = logging.getLogger("zeep.transports")
        self.session = None
        self._close_session = False

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> Any:
        raise ConfigurationError("the SOAP layer sends nothing: the client's Transport does")

    def get(self, address: str, params: Any, headers: dict[str, str]) -> Any:
        raise ConfigurationError("the SOAP layer fetches nothing: the client's Transport does")


class SoapService:
    """The Authenticate operation of one WSDL, bound to one endpoint: envelopes in and out, no I/O.

    Args:
        endpoint: the PartnerSystemUserService URL the envelope is addressed to.
        wsdl: the service WSDL (default: the bundled one). Parsed once per process and path.

    Raises:
        ConfigurationError: the WSDL cannot be read, or lacks a SOAP 1.1 Authenticate binding
            or the two request headers.
    """

    def __init__(self, *, endpoint: str, wsdl: str | Path | None = None) -> None:
        path = str(Path(wsdl).resolve()) if wsdl is not None else str(bundled_wsdl_path())
        document = _load_document(path)
        self.endpoint = endpoint
        self._binding = self._find_binding(document, path)
        types = document.types
        try:
            self._header_elements = (
                types.get_element(f"{{{TNS}}}ApplicationToken"),
                types.get_element(f"{{{TNS}}}ContextIdentifier"),
            )
        except (zeep.exceptions.Error, KeyError, LookupError) as exc:
            raise ConfigurationError(f"the WSDL {path} does not declare the request headers") from exc
        self._client = zeep.Client(  # type: ignore[no-untyped-call]
            document,
            transport=_NoNetwork(),
            plugins=[_HeaderPlugin(*self._header_elements)],
            settings=_zeep_settings(),
        )
        self._template = self._make_template()

    @staticmethod
    def _find_binding(document: Any, path: str) -> Any:
        for binding in document.bindings.values():
            if type(binding).__name__ == "Soap11Binding" and OPERATION in binding._operations:
                return binding
        raise ConfigurationError(f"the WSDL {path} has no SOAP 1.1 binding with an Authenticate operation")

    def build(
        self, *, signed_token: str, client_secret: str, context_identifier: str
    ) -> tuple[bytes, dict[str, str]]:
        """Return the request envelope (UTF-8 bytes) and its HTTP headers (Content-Type, SOAPAction).

        The body carries the client secret and the signed token: it is a secret as a whole. The
        headers are a new dict on each call: changing it changes nothing here.

        Raises:
            ConfigurationError: a value that XML cannot carry (the value is not in the message).
        """
        template = self._template
        if template is not None:
            body = template.fill(client_secret, context_identifier, signed_token)
            if body is not None:
                return body, dict(template.headers)
        return self._build_with_zeep(
            signed_token=signed_token, client_secret=client_secret, context_identifier=context_identifier
        )

    def _build_with_zeep(
        self, *, signed_token: Any, client_secret: Any, context_identifier: Any
    ) -> tuple[bytes, dict[str, str]]:
        """:meth:`build` with zeep serialising the whole request: the reference the template must equal."""
        options = {"address": self.endpoint, "sut_soap_headers": (client_secret, context_identifier)}
        try:
            envelope, headers = self._binding._create(
                OPERATION,
                (),
                {"SignedSystemToken": signed_token, "ReturnTokenType": "Jwt"},
                client=self._client,
                options=options,
            )
            body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        except (ValueError, TypeError, zeep.exceptions.Error) as exc:
            raise ConfigurationError(f"cannot build the request envelope: {type(exc).__name__}") from None
        return body, dict(headers)

    def _make_template(self) -> _Template | None:
        """The envelope zeep writes, cut at the placeholders; None if substitution might not equal zeep."""
        if not self._values_are_plain_strings():
            return None
        try:
            body, headers = self._build_with_zeep(
                client_secret=_PLACEHOLDERS[0], context_identifier=_PLACEHOLDERS[1], signed_token=_PLACEHOLDERS[2]
            )
            expected = self._build_with_zeep(
                client_secret=_CHECK_VALUES[0], context_identifier=_CHECK_VALUES[1], signed_token=_CHECK_VALUES[2]
            )
        except ConfigurationError:  # zeep cannot build this WSDL's request at all: build() says so each time
            return None
        found = sorted((body.find(p.encode()), field) for field, p in enumerate(_PLACEHOLDERS))
        if any(start < 0 or body.count(_PLACEHOLDERS[field].encode()) != 1 for start, field in found):
            return None
        pieces: list[bytes] = []
        cut = 0
        for start, field in found:
            pieces.append(body[cut:start])
            cut = start + len(_PLACEHOLDERS[field])
        pieces.append(body[cut:])
        template = _Template(tuple(pieces), tuple(field for _, field in found), tuple(headers.items()))
        return template if template.fill(*_CHECK_VALUES) == expected[0] else None

    def _values_are_plain_strings(self) -> bool:
        """Whether zeep writes all three values as ``xs:string`` text, which it passes to lxml as it is."""
        body = getattr(self._binding._operations[OPERATION].input, "body", None)
        signed = dict(getattr(getattr(body, "type", None), "elements", ())).get("SignedSystemToken")
        elements = (*self._header_elements, signed)
        return all(type(getattr(element, "type", None)) is zeep.xsd.String for element in elements)


#: One placeholder per value (ApplicationToken, ContextIdentifier, SignedSystemToken): letters and
#: digits, so escaping leaves them as they are, and unlike anything a WSDL's names hold.
_PLACEHOLDERS = ("sutsoapPH0a8f2c71e9d4", "sutsoapPH1b7e3d60f8c5", "sutsoapPH2c6d4e59a7b6")
#: The values the template is checked with against zeep when it is made: every escaped character
#: and text around it that a careless substitution would get wrong.
_CHECK_VALUES = (
    "s&e<c>r\"e't]]>\r\n\té中文😀 sutsoapPH1b7e3d60f8c5",
    "C&<>\"'\r\x85\u2028\U0010ffff sutsoapPH2c6d4e59a7b6",
    "T&amp;&#13;<x/>]]>\r\n😀 sutsoapPH0a8f2c71e9d4.202601011200.QUJD+/==",
)
#: Characters that need an entity reference (&, <, >, CR) or that lxml refuses in text (the C0
#: controls but tab and LF; lone surrogates; U+FFFE and U+FFFF): a value without any of them is
#: written as its UTF-8. For ASCII, the same set as bytes: deleting them is the fastest check.
_NEEDS_CARE = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NEEDS_CARE_ASCII = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), *b"&<>"])
_NOT_XML_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text_bytes(value: object) -> bytes | None:
    """``value`` as lxml writes it as element text of a UTF-8 document; None if lxml would not write it."""
    if type(value) is not str:  # bytes, None or a str subclass: zeep decides what it means
        return None
    if value.isascii():
        data = value.encode()
        if len(data.translate(None, _NEEDS_CARE_ASCII)) == len(data):
            return data
    elif _NEEDS_CARE.search(value) is None:
        return value.encode()
    if _NOT_XML_TEXT.search(value) is not None:
        return None
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;").encode()


@dataclass(frozen=True, slots=True)
class _Template:
    """The request envelope as the bytes around its three values, and its constant HTTP headers.

    It holds no value (so no secret): ``pieces`` are the envelope zeep wrote for the
    placeholders, cut where they stood; ``order`` says which value (0 ApplicationToken,
    1 ContextIdentifier, 2 SignedSystemToken) goes in each gap. Immutable: threads share it.
    """

    pieces: tuple[bytes, ...]
    order: tuple[int, ...]
    headers: tuple[tuple[str, str], ...]

    def fill(self, client_secret: object, context_identifier: object, signed_token: object) -> bytes | None:
        """The envelope with these values; None if one of them needs zeep."""
        texts = (_text_bytes(client_secret), _text_bytes(context_identifier), _text_bytes(signed_token))
        pieces = self.pieces
        out = [pieces[0]]
        for gap, field in enumerate(self.order, 1):
            text = texts[field]
            if text is None:
                return None
            out.append(text)
            out.append(pieces[gap])
        return b"".join(out)




def probe_request(endpoint: str, *, wsdl: str | Path | None = None) -> tuple[bytes, dict[str, str]]:
    """An Authenticate request whose every value is :data:`PROBE_VALUE`, and its HTTP headers.

    No tenant accepts it, so sending it shows how the service answers (a rejection, a fault, an
    HTML page) without sending a client secret, a system user token or a signature. The
    command line's ``doctor`` sends it.

    Args:
        endpoint: the URL the envelope is addressed to.
        wsdl: the service WSDL; default: the bundled one.

    Returns:
        ``(body, headers)``, as :meth:`SoapService.build` returns them.

    Raises:
        ConfigurationError: the WSDL cannot be read or lacks the Authenticate operation.
    """
    return SoapService(endpoint=endpoint, wsdl=wsdl).build(
        signed_token=f"{PROBE_VALUE}.000000000000.AAAA", client_secret=PROBE_VALUE, context_identifier=PROBE_VALUE
    )


# --- answer parsing ---------------------------------------------------------------------

_local = threading.local()


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = hardened_parser()
        _local.parser = parser
    return parser


def _text(element: Any) -> str:
    return "".join(element.itertext())


def _is_nil(element: Any) -> bool:
    return str(element.get(f"{{{XSI}}}nil", "")).strip() in ("true", "1")


def _only_child_element(parent: Any) -> list[Any]:
    return [child for child in parent if isinstance(child.tag, str)]


def parse_answer(response: Response, *, secrets: Iterable[str] = ()) -> Answer:
    """Turn an HTTP response into an :class:`Answer` or raise the matching typed error.

    The body is parsed with the hardened parser (no DTD, no entities, no network), never by
    zeep. A redirect, an error status without a SOAP answer, or a non-200 answer that is neither
    a fault nor a success is a :class:`~sut_soap.errors.TransportError`, so the HTTP status
    decides what the caller sees when the body says nothing useful.

    Args:
        response: the answer as a :class:`~sut_soap.Transport` returned it.
        secrets: values to replace by ``***`` in any excerpt or message (the client secret,
            the signed token, the system user token).

    Returns:
        The :class:`Answer`: ``is_successful`` with a ``token``, or not with an
        ``error_message``. A rejection is returned, not raised: the client raises it.

    Raises:
        TransportError: a 3xx; an error status whose body is empty or not a SOAP answer; any
            status but 200 with a Body that is not a fault (``retryable``, and ``retry_after``
            when sent, for 429, 502, 503 and 504).
        ProtocolError: an empty body, a DTD or entity declaration, XML that is not
            well-formed, SOAP 1.2, anything but one element in one SOAP 1.1 Body, an element
            other than AuthenticationResponse, duplicate or missing fields, a Token over
            :data:`MAX_TOKEN_CHARS`, or ``IsSuccessful`` true without a Token.
        SoapFaultError: the Body holds a SOAP Fault (``retryable`` for ``Server`` codes).
    """
    secrets = tuple(secrets)
    status = int(response.status_code)
    body = response.content or b""
    headers = getattr(response, "headers", None)
    payload = _body_element(_envelope(body, status, secrets, headers), status)
    if payload.tag == f"{{{SOAP11_ENV}}}Fault":
        raise _fault(payload, status, secrets)
    if status != 200:
        raise _status_error(
            status, body, secrets, "with a SOAP answer that is neither a fault nor a success", headers
        )
    if payload.tag != f"{{{TNS}}}AuthenticationResponse":
        raise ProtocolError(
            f"the SOAP Body holds <{sanitise(name_of(payload).localname, limit=40)}> instead of AuthenticationResponse",
            status=status,
        )
    return _authentication_response(payload, status, secrets)


def _envelope(body: bytes, status: int, secrets: tuple[str, ...], headers: Any) -> Any:
    """The parsed SOAP 1.1 Envelope element of ``body``, or the error the status and body call for."""
    if 300 <= status < 400:
        raise _status_error(status, b"", secrets, "a redirect, which is refused")
    if not body.strip():
        if status >= 400:
            raise _status_error(status, body, secrets, "with an empty body", headers)
        raise ProtocolError(f"HTTP {status} with an empty body: no SOAP answer", status=status)
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        if status >= 400:
            raise _status_error(status, body, secrets, "not a SOAP answer", headers)
        raise ProtocolError("the answer carries a DTD or entity declaration; refused unparsed", status=status)

    try:
        root = etree.fromstring(body, parser=_parser())
    except (etree.XMLSyntaxError, ValueError):
        if status >= 400:
            raise _status_error(status, body, secrets, "not a SOAP answer", headers) from None
        raise ProtocolError(
            "the answer is not well-formed XML", status=status, excerpt=_excerpt(body, secrets)
        ) from None
    if has_dtd(root):
        raise ProtocolError("the answer carries a DTD; refused", status=status)

    namespace, local = name_of(root)
    if namespace == SOAP12_ENV:
        raise ProtocolError(
            "the answer is a SOAP 1.2 envelope; the service speaks SOAP 1.1", status=status,
            hint="that the endpoint is the basicHttpBinding PartnerSystemUserService.svc",
        )
    if namespace != SOAP11_ENV or local != "Envelope":
        if status >= 400:
            raise _status_error(status, body, secrets, "not a SOAP answer", headers)
        raise ProtocolError(
            f"the answer is not a SOAP envelope (root element <{sanitise(local, limit=40)}>)",
            status=status,
            excerpt=_excerpt(body, secrets),
        )
    return root


def _body_element(root: Any, status: int) -> Any:
    """The one element inside the Envelope's one Body."""
    bodies = [child for child in _only_child_element(root) if child.tag == f"{{{SOAP11_ENV}}}Body"]
    if len(bodies) != 1:
        raise ProtocolError(f"the SOAP envelope has {len(bodies)} Body elements instead of one", status=status)
    soap_body = bodies[0]
    if (soap_body.text or "").strip():
        raise ProtocolError("the SOAP Body holds text instead of one element", status=status)
    children = _only_child_element(soap_body)
    if len(children) != 1:
        raise ProtocolError(f"the SOAP Body holds {len(children)} elements instead of one", status=status)
    return children[0]


def _fault(fault: Any, status: int, secrets: tuple[str, ...]) -> SoapFaultError:
    code_el = fault.find("faultcode")
    string_el = fault.find("faultstring")
    code = sanitise(_text(code_el), secrets=secrets, limit=100) if code_el is not None else ""
    text = sanitise(_text(string_el), secrets=secrets) if string_el is not None else ""
    return SoapFaultError(
        f"the service answered with a SOAP Fault {code or '(no faultcode)'}: {text or '(no faultstring)'}",
        fault_code=code,
        fault_string=text,
        status=status,
        retryable=code_el is not None and _is_server_code(code_el),
    )


def _is_server_code(code_el: Any) -> bool:
    """Whether a faultcode's QName is SOAP 1.1's ``Server`` or a dotted refinement (``Server.Busy``).

    The prefix is resolved against the namespaces in scope of the faultcode element: only the
    SOAP envelope namespace counts. An unprefixed code is accepted too, because faultcode is
    unqualified and so no default namespace can be in scope for it.
    """
    prefix, colon, local = _text(code_el).strip().rpartition(":")
    if colon and code_el.nsmap.get(prefix) != SOAP11_ENV:
        return False
    return local == "Server" or local.startswith("Server.")


def _authentication_response(payload: Any, status: int, secrets: tuple[str, ...]) -> Answer:
    fields: dict[str, Any] = {}
    for child in _only_child_element(payload):
        namespace, local = name_of(child)
        if namespace != TNS:
            continue
        if local in fields:
            raise ProtocolError(f"AuthenticationResponse has more than one {sanitise(local, limit=40)}", status=status)
        fields[local] = child

    flag = fields.get("IsSuccessful")
    if flag is None or _is_nil(flag):
        raise ProtocolError("AuthenticationResponse has no IsSuccessful value", status=status)
    flag_text = _text(flag).strip()
    if flag_text in ("true", "1"):
        successful = True
    elif flag_text in ("false", "0"):
        successful = False
    else:
        raise ProtocolError("AuthenticationResponse.IsSuccessful is not an xs:boolean", status=status)

    token: str | None = None
    token_el = fields.get("Token")
    if token_el is not None and not _is_nil(token_el):
        token = _text(token_el).strip() or None
        if token is not None and len(token) > MAX_TOKEN_CHARS:
            raise ProtocolError(f"the Token is longer than {MAX_TOKEN_CHARS} characters", status=status)

    message: str | None = None
    message_el = fields.get("ErrorMessage")
    if message_el is not None and not _is_nil(message_el):
        message = sanitise(_text(message_el), secrets=(*secrets, *([token] if token else []))) or None

    if successful and token is None:
        raise ProtocolError("IsSuccessful is true but the answer carries no Token", status=status)
    return Answer(is_successful=successful, token=token, error_message=message)
