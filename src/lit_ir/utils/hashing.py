"""Content hashes that key caches: the same content gives the same key wherever it lives (path-independent)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable


def fingerprint(items: Iterable[str]) -> str:
    """Order-sensitive hash and count of strings: `<count>:<sha256>`."""
    digest, count = hashlib.sha256(), 0
    for item in items:
        digest.update(item.encode("utf-8"))
        digest.update(b"\0")
        count += 1
    return f"{count}:{digest.hexdigest()}"


def short_hash(*parts) -> str:
    """12 hex digits of the SHA-256 of JSON-serialisable `parts`: a cache key."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:12]
