"""An LRU cache of per-input results, keyed on a hash of the preprocessed input.

Keying on the preprocessed tensor (token ids, normalized pixels) rather than the raw text means
"Great food!" and "great food !" share an entry. A hit skips the queue and the forward entirely.
Taught in 09_async_serving.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np


def input_key(row: np.ndarray) -> bytes:
    """A 16-byte BLAKE2b digest of one preprocessed input's bytes (its dtype and shape are fixed per model)."""
    return hashlib.blake2b(row.tobytes(), digest_size=16).digest()


class LRUCache:
    """Bounded mapping key -> probabilities row; the least recently used entry goes first. Not thread-safe:
    the server touches it only from the event loop."""

    def __init__(self, max_size: int = 4096):
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1; got {max_size}")
        self.max_size = max_size
        self.hits = self.misses = 0
        self._data: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def get(self, key: bytes) -> np.ndarray | None:
        """The cached row (and mark it recently used), or None; counts hits and misses."""
        row = self._data.get(key)
        if row is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return row

    def put(self, key: bytes, row: np.ndarray) -> None:
        """Store a row, evicting the least recently used entry when full."""
        self._data[key] = row
        self._data.move_to_end(key)
        if len(self._data) > self.max_size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: bytes) -> bool:
        return key in self._data

    @property
    def hit_rate(self) -> float:
        """Hits / lookups so far (0.0 before any lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0
