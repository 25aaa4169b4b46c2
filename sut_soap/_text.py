"""Text that is safe to show: one line, no control characters, no secrets, bounded."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["sanitise"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")


def sanitise(text: str, *, secrets: Iterable[str] = (), limit: int = 256) -> str:
    """Return ``text`` on one line, without control characters or secrets, at most ``limit`` long.

    Each non-empty value of ``secrets`` is replaced by ``***`` before anything else, so a
    secret cut by the length limit cannot leave a readable prefix behind.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
