"""Find the bug: "encrypting a model" through a to_json method that PyTorch modules do not have."""
import io
import os
import sys

import torch
from torch import nn

from labkit.grading.exercise import Exercise

TASK = """
`encrypt_model(model, key, name, version)` is meant to turn a PyTorch model into bytes safe to store on a shared
disk, and `decrypt_model(blob, key, name, version, model)` to load such bytes back into a freshly built model of
the same architecture and return it. The cipher is right (AES-256-GCM with a fresh 12-byte nonce and
`f"{name}:{version}"` as associated data, so a file cannot be swapped for another model's) and so is the file
layout: **keep it** (12-byte nonce, then the AES-GCM ciphertext with its tag). What goes into the cipher is not:
the code has never run.

**Find the bug and fix it.** Encrypt the model's **serialized state dict** (`torch.save(model.state_dict(), buffer)`
into an `io.BytesIO`, or `safetensors.torch.save`), and after decrypting and authenticating, load it with
`torch.load(..., weights_only=True)` (a pickle can run code; the grader checks that a malicious one is refused) and
`model.load_state_dict`. Buffers (batch-norm statistics) must survive too. Taught in 15_security_and_privacy §3
and `labkit.secure.crypto` (which you may not import).
"""

STUB = '''
import json
import os

import torch
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def encrypt_model(model, key: bytes, name: str, version: str) -> bytes:
    """Encrypt a model for storage: 12-byte nonce + AES-256-GCM(model as JSON), name:version as associated data."""
    payload = model.to_json().encode()  # the whole model, architecture and weights, as text
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, payload, f"{name}:{version}".encode())


def decrypt_model(blob: bytes, key: bytes, name: str, version: str, model):
    """Authenticate and decrypt, then load the weights into `model` and return it."""
    nonce, ciphertext = blob[:12], blob[12:]
    payload = AESGCM(key).decrypt(nonce, ciphertext, f"{name}:{version}".encode())  # InvalidTag if altered
    return type(model).from_json(payload.decode())
'''

KEY = bytes(range(32))
_FLAG = "_labkit_bug_to_json_payload_ran"  # set on the sys module if a malicious payload runs
_PAYLOAD = f"import sys; sys.__dict__.setdefault({_FLAG!r}, []).append(True)"


class _Exploit:
    """Unpickling this calls builtins.exec (it names only builtins, so no test module is needed to unpickle)."""

    def __reduce__(self):
        return exec, (_PAYLOAD,)


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))
    model.train()
    model(torch.randn(32, 6))  # batch norm's running statistics move away from their defaults
    return model.eval()


def _encrypt_reference(obj, name: str, version: str) -> bytes:
    """The file layout the task fixes, written by the grader (here: to smuggle a malicious pickle in)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    nonce = os.urandom(12)
    return nonce + AESGCM(KEY).encrypt(nonce, buffer.getvalue(), f"{name}:{version}".encode())


def test_round_trip_restores_weights_and_buffers(sub):
    """a fresh model of the same architecture gets every parameter and buffer back"""
    original = _model(0)
    blob = sub.encrypt_model(original, KEY, "digits-mlp", "1")
    assert isinstance(blob, bytes), f"encrypt_model must return bytes, got {type(blob).__name__}"
    fresh = _model(1)
    restored = sub.decrypt_model(blob, KEY, "digits-mlp", "1", fresh)
    assert isinstance(restored, nn.Module), "decrypt_model must return the model with its weights loaded"
    for k, v in original.state_dict().items():
        assert torch.equal(restored.state_dict()[k], v), f"{k} was not restored"
    x = torch.randn(4, 6)
    assert torch.equal(restored.eval()(x), original(x)), "the restored model answers differently"


def test_ciphertext_hides_the_weights(sub):
    """the weights are not in clear in the file, and two encryptions differ"""
    model = _model(0)
    blob = sub.encrypt_model(model, KEY, "digits-mlp", "1")
    assert model[0].weight.detach().numpy().tobytes()[:24] not in blob, "the weights appear in clear"
    assert sub.encrypt_model(model, KEY, "digits-mlp", "1") != blob, "use a fresh nonce per encryption"


def test_tampered_or_swapped_file_is_refused(sub):
    """a flipped byte, or the file of another model name, fails authentication"""
    blob = sub.encrypt_model(_model(0), KEY, "digits-mlp", "1")
    for damaged, case in [(blob[:40] + bytes([blob[40] ^ 1]) + blob[41:], "a flipped byte"),
                          (blob, "the file opened as another model's (shapes-cnn)")]:
        try:
            sub.decrypt_model(damaged, KEY, "shapes-cnn" if "another" in case else "digits-mlp", "1", _model(1))
        except NotImplementedError:
            raise
        except Exception:  # noqa: BLE001 - InvalidTag, or the submission's own error
            continue
        raise AssertionError(f"{case} was accepted")


def test_malicious_payload_is_refused(sub):
    """an authentic file whose payload is a pickle that runs code is refused without running it"""
    sys.__dict__.pop(_FLAG, None)
    state = dict(_model(0).state_dict())
    state["note"] = _Exploit()
    blob = _encrypt_reference(state, "digits-mlp", "1")
    try:
        sub.decrypt_model(blob, KEY, "digits-mlp", "1", _model(1))
        refused = False
    except NotImplementedError:
        raise
    except Exception:  # noqa: BLE001
        refused = True
    assert not sys.__dict__.pop(_FLAG, []), "decrypting ran code hidden in the payload: torch.load(weights_only=True)"
    assert refused, "a payload holding a pickled object must be refused"


EXERCISE = Exercise(
    name="bug_to_json", title="Find the bug · Encrypting a model through a method it does not have", task=TASK,
    stub=STUB, tests=(test_round_trip_restores_weights_and_buffers, test_ciphertext_hides_the_weights,
                      test_tampered_or_swapped_file_is_refused, test_malicious_payload_is_refused),
    kind="bug", bug_tests=("test_round_trip_restores_weights_and_buffers", "test_ciphertext_hides_the_weights"),
    protected_modules=("labkit.secure",),
)
