"""The one place that says how sut-soap parses XML it did not write.

No DTD is loaded, no entity is expanded, nothing is fetched, trees stay within libxml2's
normal limits. ``collect_ids`` is deliberately left at its default: with
``collect_ids=False`` libxml2 2.14 reads the file a DOCTYPE's SYSTEM id names even with
``load_dtd=False`` and ``no_network=True``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lxml import etree

__all__ = ["Name", "hardened_parser", "has_dtd", "name_of"]


def hardened_parser(*, remove_comments: bool = False, remove_pis: bool = False) -> etree.XMLParser:
    """Return a new parser for untrusted XML (parsers are not shared between threads)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=remove_comments,
        remove_pis=remove_pis,
    )


def has_dtd(root: Any) -> bool:
    """Tell whether a parsed document carried an internal or external DTD."""
    docinfo = root.getroottree().docinfo
    return docinfo.internalDTD is not None or docinfo.externalDTD is not None


class Name(NamedTuple):
    """An element's namespace (None when it has none) and local name."""

    namespace: str | None
    localname: str


def name_of(element: Any) -> Name:
    """Split an element's tag without etree.QName, which raises ValueError on tags that keep an
    unbound prefix (``s:Envelope`` with no ``xmlns:s``): lxml lets those through a parse."""
    tag = str(element.tag)
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return Name(namespace, local)
    return Name(None, tag)
