import io
import os

import torch
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def encrypt_model(model, key: bytes, name: str, version: str) -> bytes:
    """Encrypt a model for storage: 12-byte nonce + AES-256-GCM(serialized state dict), name:version as AAD."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # modules have no JSON form; their state dict serializes to bytes
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, buffer.getvalue(), f"{name}:{version}".encode())


def decrypt_model(blob: bytes, key: bytes, name: str, version: str, model):
    """Authenticate and decrypt, then load the weights into `model` and return it."""
    nonce, ciphertext = blob[:12], blob[12:]
    payload = AESGCM(key).decrypt(nonce, ciphertext, f"{name}:{version}".encode())  # InvalidTag if altered
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)  # tensors only: no code runs
    model.load_state_dict(state)
    return model
