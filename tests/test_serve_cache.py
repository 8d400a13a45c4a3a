"""LRU cache of per-input results, keyed on the preprocessed input."""
import numpy as np
import pytest

from labkit.preprocess import Vocab, tokenize
from labkit.serve.cache import LRUCache, input_key
from labkit.serve.preprocessing import TextPreprocessor


def row(v: float) -> np.ndarray:
    return np.array([v, 1 - v], dtype=np.float32)


def test_hit_and_miss_are_counted():
    cache = LRUCache(4)
    assert cache.get(b"a") is None
    cache.put(b"a", row(0.1))
    assert cache.get(b"a").tolist() == row(0.1).tolist()
    assert (cache.hits, cache.misses, cache.hit_rate) == (1, 1, 0.5)


def test_least_recently_used_is_evicted_first():
    cache = LRUCache(2)
    cache.put(b"a", row(0.1))
    cache.put(b"b", row(0.2))
    cache.get(b"a")               # a is now the most recent
    cache.put(b"c", row(0.3))     # evicts b, not a
    assert b"a" in cache and b"c" in cache and b"b" not in cache and len(cache) == 2


def test_put_existing_key_refreshes_without_growing():
    cache = LRUCache(2)
    cache.put(b"a", row(0.1))
    cache.put(b"b", row(0.2))
    cache.put(b"a", row(0.9))
    cache.put(b"c", row(0.3))     # b is the oldest now
    assert cache.get(b"a").tolist() == row(0.9).tolist() and b"b" not in cache


def test_key_is_on_the_preprocessed_input():
    vocab = Vocab.build([tokenize("great food the service was bad")])
    x = TextPreprocessor(vocab)(["Great food!", "great   FOOD !", "the service was bad"])
    keys = [input_key(r) for r in x]
    assert keys[0] == keys[1]     # same tokens after preprocessing -> same entry
    assert keys[0] != keys[2] and len(keys[0]) == 16


def test_size_must_be_positive():
    with pytest.raises(ValueError, match="max_size"):
        LRUCache(0)
