"""Exercise: encrypt and integrity-check a state dict, graded with tampered, truncated, wrong-key and swapped files."""
import os

import torch
from torch import nn

from labkit.grading.exercise import Exercise

TASK = """
Write the module a model server uses to keep its weights encrypted at rest and to refuse any file that is not
exactly what it asked for:

- `encrypt_model(state_dict, key, name, version)` → `bytes`: serialize the state dict (tensors only:
  `safetensors.torch.save`, or `torch.save` into a `BytesIO`), encrypt it with **AES-256-GCM**
  (`cryptography.hazmat.primitives.ciphers.aead.AESGCM`, `key` is 32 bytes) under a **fresh random 12-byte nonce**
  per call, and write a header that holds the model's `name`, `version`, the ciphertext's length and a **key id**
  that names the key without revealing it (e.g. the first 8 bytes of `HMAC-SHA256(key, b"key id")`). The whole
  header must be **associated data** of the encryption, so that no byte of it can change unnoticed.
- `decrypt_model(blob, key, name, version)` → the state dict (`dict[str, torch.Tensor]`), only if the file is whole,
  sealed under `key`, unaltered, and holds `name` at `version`. Otherwise raise, in this order of checks:
  - `TruncatedError`: the file ends before the length its header declares (or before the header ends);
  - `WrongKeyError`: the key id in the file is not this key's;
  - `TamperedError`: authentication fails (`cryptography.exceptions.InvalidTag`), or the header cannot be parsed,
    or bytes were appended;
  - `ModelMismatchError`: an authentic file for another name or version (a swapped file).
  All four subclass `SealError(Exception)`, which you define too, and each carries a message saying what happened.
  No other exception may escape `decrypt_model` for a damaged file: a flipped byte anywhere is a `SealError`.
  If the plaintext is a pickle, load it with `torch.load(..., weights_only=True)`.

Graded with the files a real deployment meets: bits flipped in the header, the ciphertext and the tag, files cut
short, the wrong key, another model's file, an older version, and a file whose header was edited to claim another
name. Keys never appear in the file. Taught in 15_security_and_privacy §3-4 (`labkit.secure.crypto`, which you
may not import).
"""

STUB = '''
import torch


class SealError(Exception):
    """Base class: a sealed model file was refused."""


class TruncatedError(SealError):
    """The file ends before the length its header declares."""


class WrongKeyError(SealError):
    """The file was sealed under another key."""


class TamperedError(SealError):
    """Authentication failed: the file was altered."""


class ModelMismatchError(SealError):
    """An authentic file, but for another model name or version."""


def encrypt_model(state_dict: dict, key: bytes, name: str, version: str) -> bytes:
    """AES-256-GCM over the serialized state dict; header (name, version, length, key id) as associated data."""
    raise NotImplementedError("encrypt_model")


def decrypt_model(blob: bytes, key: bytes, name: str, version: str) -> dict:
    """The state dict, or TruncatedError / WrongKeyError / TamperedError / ModelMismatchError."""
    raise NotImplementedError("decrypt_model")
'''

KEY = bytes(range(32))          # fixed keys: the tests must repeat; a real key comes from os.urandom
OTHER_KEY = bytes(range(1, 33))
ERRORS = ("TruncatedError", "WrongKeyError", "TamperedError", "ModelMismatchError")


def _state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    return {k: v.clone() for k, v in model.state_dict().items()}  # float weights and an int64 counter


def _same(got, want: dict) -> bool:
    return (isinstance(got, dict) and set(got) == set(want)
            and all(isinstance(got[k], torch.Tensor) and got[k].dtype == v.dtype and torch.equal(got[k], v)
                    for k, v in want.items()))


def _refused(sub, blob: bytes, key: bytes, name: str, version: str, expected: str, case: str) -> None:
    """decrypt_model must raise sub.<expected> (a SealError) for this damaged file."""
    _check_classes(sub)
    wanted = getattr(sub, expected)
    try:
        sub.decrypt_model(blob, key, name, version)
    except NotImplementedError:
        raise
    except wanted as err:
        assert str(err).strip(), f"{case}: {expected} raised without a message"
        return
    except Exception as err:  # noqa: BLE001 - the wrong refusal is what we report
        raise AssertionError(f"{case}: expected {expected}, got {type(err).__name__}: {err}") from None
    raise AssertionError(f"{case}: the file was accepted; expected {expected}")


def _check_classes(sub) -> None:
    """SealError is an Exception and the four refusals are four different subclasses of it."""
    assert isinstance(sub.SealError, type) and issubclass(sub.SealError, Exception), "define class SealError(Exception)"
    for name in ERRORS:
        cls = getattr(sub, name, None)
        assert isinstance(cls, type) and issubclass(cls, sub.SealError), f"{name} must subclass SealError"
    assert len({getattr(sub, name) for name in ERRORS}) == 4, "the four refusals must be four different classes"


def _flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1:]


def test_round_trip(sub):
    """decrypt(encrypt(state)) gives back every tensor, dtype and value"""
    state = _state()
    blob = sub.encrypt_model(state, KEY, "digits-mlp", "3")
    assert isinstance(blob, bytes), f"encrypt_model must return bytes, got {type(blob).__name__}"
    got = sub.decrypt_model(blob, KEY, "digits-mlp", "3")
    assert _same(got, state), "the decrypted state dict differs from the one encrypted (names, dtypes or values)"


def test_ciphertext_hides_weights_and_key(sub):
    """no weight and no key byte string appears in the file; two encryptions differ (fresh nonce)"""
    state = _state()
    blob = sub.encrypt_model(state, KEY, "digits-mlp", "3")
    weights = state["0.weight"].numpy().tobytes()
    assert weights[:32] not in blob, "the weights appear in clear in the file: encrypt them"
    assert KEY not in blob and KEY.hex().encode() not in blob, "the key itself is in the file"
    assert sub.encrypt_model(state, KEY, "digits-mlp", "3") != blob, (
        "two encryptions of the same model are identical: use a fresh random nonce per call (os.urandom(12))")


def test_tampered_ciphertext_and_tag(sub):
    """a bit flipped in the ciphertext or the tag raises TamperedError"""
    blob = sub.encrypt_model(_state(), KEY, "digits-mlp", "3")
    for index, where in [(len(blob) // 2, "the middle of the file"), (len(blob) - 20, "the end of the ciphertext"),
                         (len(blob) - 1, "the last byte (the GCM tag)")]:
        _refused(sub, _flip(blob, index), KEY, "digits-mlp", "3", "TamperedError", f"a bit flipped in {where}")
    _refused(sub, blob + b"\0" * 8, KEY, "digits-mlp", "3", "TamperedError", "8 bytes appended")


def test_tampered_header(sub):
    """the header is associated data: relabelling a file's name is TamperedError, any flipped byte a SealError"""
    blob = sub.encrypt_model(_state(1), KEY, "digits-mlq", "3")
    assert blob.count(b"digits-mlq") >= 1, "write the model's name in the header (the grader edits it there)"
    edited = blob.replace(b"digits-mlq", b"digits-mlp")
    _refused(sub, edited, KEY, "digits-mlp", "3", "TamperedError", "a file whose header was edited to say digits-mlp")
    for index in (0, 5, 12, 20, 30):
        try:
            sub.decrypt_model(_flip(blob, index), KEY, "digits-mlq", "3")
        except sub.SealError:
            continue
        except Exception as err:  # noqa: BLE001
            raise AssertionError(f"a bit flipped at byte {index} raised {type(err).__name__}: {err}; every damaged "
                                 "file must raise a SealError") from None
        raise AssertionError(f"a bit flipped at byte {index} was accepted")


def test_truncated(sub):
    """a file cut short raises TruncatedError"""
    blob = sub.encrypt_model(_state(), KEY, "digits-mlp", "3")
    for keep in (len(blob) - 1, len(blob) - 1000, len(blob) // 2):
        _refused(sub, blob[:keep], KEY, "digits-mlp", "3", "TruncatedError", f"the first {keep} of {len(blob)} bytes")
    try:
        sub.decrypt_model(blob[:3], KEY, "digits-mlp", "3")
    except sub.SealError:
        pass
    except Exception as err:  # noqa: BLE001
        raise AssertionError(f"a 3-byte file raised {type(err).__name__}: {err}; expected a SealError") from None
    else:
        raise AssertionError("a 3-byte file was accepted")


def test_wrong_key(sub):
    """the right file opened with another key raises WrongKeyError"""
    blob = sub.encrypt_model(_state(), KEY, "digits-mlp", "3")
    _refused(sub, blob, OTHER_KEY, "digits-mlp", "3", "WrongKeyError", "the file opened with another key")


def test_swapped_file(sub):
    """an authentic file of another model or version raises ModelMismatchError"""
    other = sub.encrypt_model(_state(2), KEY, "shapes-cnn", "3")
    _refused(sub, other, KEY, "digits-mlp", "3", "ModelMismatchError", "another model's file (shapes-cnn)")
    older = sub.encrypt_model(_state(2), KEY, "digits-mlp", "2")
    _refused(sub, older, KEY, "digits-mlp", "3", "ModelMismatchError", "version 2 of the model where 3 was asked")


def test_fresh_random_key(sub):
    """works with a random key from os.urandom (not only the test's fixed one)"""
    key = os.urandom(32)
    state = _state(3)
    assert _same(sub.decrypt_model(sub.encrypt_model(state, key, "m", "1"), key, "m", "1"), state)


EXERCISE = Exercise(
    name="model_encryption", title="Exercise · Encrypt and integrity-check a model", task=TASK, stub=STUB,
    tests=(test_round_trip, test_ciphertext_hides_weights_and_key, test_tampered_ciphertext_and_tag,
           test_tampered_header, test_truncated, test_wrong_key, test_swapped_file, test_fresh_random_key),
    protected_modules=("labkit.secure",),
)
