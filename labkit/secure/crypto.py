"""Encryption at rest of a state dict: AES-256-GCM with the model's name and version bound as associated data.

File layout (all of it before the ciphertext is authenticated as associated data, so no byte of it can change):

    MAGIC (8) | key id (8) | nonce (12) | header length (4, big-endian) | header JSON | ciphertext + tag (16)

The header JSON holds the model's name, version and the ciphertext's length. The plaintext is the state dict as
safetensors bytes (tensors only, nothing to unpickle). Each refusal has its own exception (labkit.secure.errors),
checked in an order that names the real cause: not a sealed file, truncated, wrong key, tampered, another model.
The key comes from an environment variable or a key file outside the repository; never from the code.
Taught in 15_security_and_privacy.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from pathlib import Path

import torch

from labkit.paths import REPO_ROOT
from labkit.secure.errors import (KeyMissingError, ModelMismatchError, NotSealedError, TamperedError,
                                  TruncatedError, WrongKeyError)

MAGIC = b"LKSEAL1\n"
KEY_ENV = "LABKIT_MODEL_KEY"     # base64 of 32 random bytes
KEY_BYTES = 32                   # AES-256
NONCE_BYTES = 12                 # GCM's standard nonce; a fresh random one per file
TAG_BYTES = 16
_PREFIX = struct.Struct(f">{len(MAGIC)}s8s{NONCE_BYTES}sI")  # magic, key id, nonce, header length


def generate_key() -> bytes:
    """32 random bytes from the OS (AES-256)."""
    return os.urandom(KEY_BYTES)


def key_id(key: bytes) -> bytes:
    """8 bytes naming a key without revealing it: HMAC-SHA256(key, label), truncated."""
    return hmac.new(key, b"labkit model key id", hashlib.sha256).digest()[:8]


def write_key_file(path: str | Path, key: bytes) -> Path:
    """Save a key as base64, readable by its owner only (0600); refuses a path inside the repository."""
    path = Path(path).resolve()
    if path.is_relative_to(REPO_ROOT):
        raise KeyMissingError(f"refusing to write a key inside the repository ({path}): it would end up in git")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode() + "\n")
    return path


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise KeyMissingError(f"the key in {where} is not base64") from None
    if len(key) != KEY_BYTES:
        raise KeyMissingError(f"the key in {where} has {len(key)} bytes; AES-256 needs {KEY_BYTES}")
    return key


def load_key(env_var: str = KEY_ENV, key_file: str | Path | None = None) -> bytes:
    """The key from $env_var if set, else from key_file; KeyMissingError naming both places otherwise."""
    if os.environ.get(env_var):
        return _decode_key(os.environ[env_var], f"${env_var}")
    if key_file is not None and Path(key_file).is_file():
        return _decode_key(Path(key_file).read_text(), str(key_file))
    raise KeyMissingError(f"no model key: set ${env_var} (base64 of {KEY_BYTES} bytes) or pass a key file "
                          f"(looked for {key_file})")


def _aesgcm(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(key) != KEY_BYTES:
        raise KeyMissingError(f"the key has {len(key)} bytes; AES-256 needs {KEY_BYTES}")
    return AESGCM(key)


def seal(state_dict: dict[str, torch.Tensor], key: bytes, name: str, version: str) -> bytes:
    """Encrypt and authenticate a state dict for model `name` at `version`."""
    from safetensors.torch import save

    plaintext = save({k: v.detach().contiguous() for k, v in state_dict.items()})
    header = json.dumps({"name": name, "version": version, "ciphertext_bytes": len(plaintext) + TAG_BYTES},
                        sort_keys=True).encode()
    nonce = os.urandom(NONCE_BYTES)
    aad = _PREFIX.pack(MAGIC, key_id(key), nonce, len(header)) + header
    return aad + _aesgcm(key).encrypt(nonce, plaintext, aad)


def _parse(blob: bytes) -> tuple[bytes, bytes, dict, bytes, bytes]:
    """(key id, nonce, header, associated data, ciphertext), or NotSealedError / TruncatedError."""
    if len(blob) < len(MAGIC) or blob[:len(MAGIC)] != MAGIC:
        raise NotSealedError(f"not a sealed model file (expected it to start with {MAGIC!r})")
    if len(blob) < _PREFIX.size:
        raise TruncatedError(f"file has {len(blob)} bytes, shorter than the {_PREFIX.size}-byte fixed header")
    _, kid, nonce, header_len = _PREFIX.unpack_from(blob)
    end = _PREFIX.size + header_len
    if len(blob) < end:
        raise TruncatedError(f"file ends at byte {len(blob)}, inside its {header_len}-byte header")
    try:
        header = json.loads(blob[_PREFIX.size:end])
        declared = int(header["ciphertext_bytes"])
    except (ValueError, KeyError, TypeError):
        raise TamperedError("the header is not the JSON this format writes: the file was altered") from None
    if len(blob) - end < declared:
        raise TruncatedError(f"file has {len(blob) - end} bytes of ciphertext; its header declares {declared}")
    if len(blob) - end > declared:
        raise TamperedError(f"{len(blob) - end - declared} bytes were appended after the ciphertext")
    return kid, nonce, header, blob[:end], blob[end:]


def unseal(blob: bytes, key: bytes, name: str, version: str) -> dict[str, torch.Tensor]:
    """The state dict, only if the file is whole, sealed under `key`, for `name` at `version`, and unaltered."""
    from cryptography.exceptions import InvalidTag
    from safetensors.torch import load

    kid, nonce, header, aad, ciphertext = _parse(blob)
    if not hmac.compare_digest(kid, key_id(key)):
        raise WrongKeyError(f"sealed under key id {kid.hex()}, but the key given has id {key_id(key).hex()}: "
                            "wrong key (or the key id bytes were altered)")
    try:  # authenticate before trusting the header: an edited name is tampering, not a mismatch
        plaintext = _aesgcm(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise TamperedError("authentication failed (AES-GCM tag): a byte of the header or the ciphertext was "
                            "changed since the file was sealed") from None
    if (header.get("name"), header.get("version")) != (name, version):
        raise ModelMismatchError(f"this file holds {header.get('name')!r} version {header.get('version')!r}, not "
                                 f"{name!r} version {version!r}: a file swapped for another model's")
    return load(plaintext)


def seal_file(path: str | Path, state_dict: dict[str, torch.Tensor], key: bytes, name: str, version: str) -> Path:
    """seal() to a file."""
    path = Path(path)
    path.write_bytes(seal(state_dict, key, name, version))
    return path


def unseal_file(path: str | Path, key: bytes, name: str, version: str) -> dict[str, torch.Tensor]:
    """unseal() from a file."""
    return unseal(Path(path).read_bytes(), key, name, version)
