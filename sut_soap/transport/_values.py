"""The values a transport returns: the :class:`Response` protocol, :class:`HeaderMap` and :class:`HttpResponse`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = ["HeaderMap", "HttpResponse", "Response", "Sent"]


@runtime_checkable
class Response(Protocol):
    """What the library reads of an HTTP answer: status, headers and the whole body."""

    @property
    def status_code(self) -> int:
        """The HTTP status code."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers (looked up case-insensitively by the default transport)."""
        ...

    @property
    def content(self) -> bytes:
        """The answer's body, decompressed."""
        ...


class HeaderMap(Mapping[str, str]):
    """Read-only HTTP headers, looked up case-insensitively; the repr shows the names only.

    Built from a mapping or ``(name, value)`` pairs; a name given twice keeps the last value.
    Iteration yields the names as they were given (their original case).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {name.lower(): (name, value) for name, value in pairs}

    @classmethod
    def joined(cls, pairs: Iterable[tuple[str, str]]) -> HeaderMap:
        """Headers from ``(name, value)`` pairs as received: a name sent twice reads as its values joined by ", "."""
        headers = cls()
        items = headers._items
        for name, value in pairs:
            key = name.lower()
            seen = items.get(key)
            items[key] = (name, value) if seen is None else (seen[0], f"{seen[1]}, {value}")
        return headers

    def __getitem__(self, name: str) -> str:
        """The value of header ``name``, in any case; ``KeyError`` when absent."""
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        """Whether header ``name`` is present, in any case."""
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        """The header names, in their original case."""
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        """The number of distinct headers."""
        return len(self._items)

    def __repr__(self) -> str:
        return f"HeaderMap({sorted(self)!r})"


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer read to the end: ``status_code``, ``headers``, ``content`` (bytes), ``reason``.

    What :class:`HttpTransport` returns, and a ready-made :class:`Response` for transports of
    your own. The repr shows the status and the size only: a body can carry a JWT.

    Attributes:
        status_code: the HTTP status code.
        headers: the answer's headers, looked up case-insensitively (a :class:`HeaderMap`).
        content: the whole body, decompressed.
        reason: the status line's reason phrase, such as ``"OK"``; may be empty.
        tls_version: the TLS version, or None.
    """

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    reason: str = ""
    #: The TLS version the answer came over (such as ``"TLSv1.3"``), None for plain HTTP or unknown.
    tls_version: str | None = None

    def __repr__(self) -> str:
        return f"HttpResponse(status_code={self.status_code}, content=<{len(self.content)} bytes>)"


class Sent(NamedTuple):
    """An answer whose headers arrived: its body still to read from ``raw``, then ``close()``."""

    raw: Any
    status: int
    headers: HeaderMap
    reason: str
    close: Callable[[], None]
