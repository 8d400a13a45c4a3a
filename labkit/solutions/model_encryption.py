import hashlib
import hmac
import json
import os
import struct

import torch
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from safetensors.torch import load, save

MAGIC = b"SEALED1\n"
PREFIX = struct.Struct(">8s8s12sI")  # magic, key id, nonce, header length
TAG_BYTES = 16


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


def _key_id(key: bytes) -> bytes:
    return hmac.new(key, b"key id", hashlib.sha256).digest()[:8]


def encrypt_model(state_dict: dict, key: bytes, name: str, version: str) -> bytes:
    """AES-256-GCM over the serialized state dict; header (name, version, length, key id) as associated data."""
    plaintext = save({k: v.detach().contiguous() for k, v in state_dict.items()})
    header = json.dumps({"name": name, "version": version, "length": len(plaintext) + TAG_BYTES}).encode()
    nonce = os.urandom(12)
    aad = PREFIX.pack(MAGIC, _key_id(key), nonce, len(header)) + header
    return aad + AESGCM(key).encrypt(nonce, plaintext, aad)


def _parse(blob: bytes):
    if len(blob) < PREFIX.size:
        raise TruncatedError(f"{len(blob)} bytes: shorter than the {PREFIX.size}-byte fixed header")
    magic, kid, nonce, header_len = PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise TamperedError("not a sealed model file (wrong magic bytes)")
    end = PREFIX.size + header_len
    if len(blob) < end:
        raise TruncatedError(f"the file ends inside its {header_len}-byte header")
    try:
        header = json.loads(blob[PREFIX.size:end])
        length = int(header["length"])
    except (ValueError, KeyError, TypeError):
        raise TamperedError("the header cannot be parsed: the file was altered") from None
    if len(blob) - end < length:
        raise TruncatedError(f"{len(blob) - end} bytes of ciphertext; the header declares {length}")
    if len(blob) - end > length:
        raise TamperedError(f"{len(blob) - end - length} bytes appended after the ciphertext")
    return kid, nonce, header, blob[:end], blob[end:]


def decrypt_model(blob: bytes, key: bytes, name: str, version: str) -> dict:
    """The state dict, or TruncatedError / WrongKeyError / TamperedError / ModelMismatchError."""
    kid, nonce, header, aad, ciphertext = _parse(blob)
    if not hmac.compare_digest(kid, _key_id(key)):
        raise WrongKeyError("the file was sealed under another key (key id differs)")
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise TamperedError("authentication failed: the header or the ciphertext was altered") from None
    if (header.get("name"), header.get("version")) != (name, version):
        raise ModelMismatchError(f"the file holds {header.get('name')!r} version {header.get('version')!r}, "
                                 f"not {name!r} version {version!r}")
    return load(plaintext)
