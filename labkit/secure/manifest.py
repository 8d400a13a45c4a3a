"""A signed manifest for provenance: the SHA-256 of every file of a model release, signed with Ed25519.

Encryption says who can read a model; the manifest says who published it and that no file changed since. The
publisher keeps the private key; servers ship only the public key. Taught in 15_security_and_privacy.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from labkit.secure.errors import ManifestError


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def generate_signing_key() -> tuple[bytes, bytes]:
    """(private key, public key), 32 raw bytes each (Ed25519)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return raw, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def build_manifest(folder: str | Path, files: list[str], name: str, version: str) -> dict:
    """{"name", "version", "files": {file: {"sha256", "bytes"}}} for files relative to folder."""
    folder = Path(folder)
    entries = {f: {"sha256": sha256_file(folder / f), "bytes": (folder / f).stat().st_size} for f in sorted(files)}
    return {"name": name, "version": version, "files": entries}


def _canonical(manifest: dict) -> bytes:
    """One byte string per manifest: sorted keys, no spaces (what is signed and verified)."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def sign_manifest(manifest: dict, private_key: bytes) -> dict:
    """{"manifest": manifest, "signature": base64 Ed25519 signature of its canonical JSON}."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(_canonical(manifest))
    return {"manifest": manifest, "signature": base64.b64encode(signature).decode()}


def verify_manifest(signed: dict, public_key: bytes, folder: str | Path) -> dict:
    """The manifest, once its signature and every listed file's size and SHA-256 check out; ManifestError if not."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        manifest, signature = signed["manifest"], base64.b64decode(signed["signature"], validate=True)
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, _canonical(manifest))
    except (KeyError, TypeError, ValueError, InvalidSignature):
        raise ManifestError("the manifest's signature does not verify with this public key: it was altered, or "
                            "signed by someone else") from None
    folder = Path(folder)
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ManifestError(f"{name} is listed in the manifest but missing from {folder}")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise ManifestError(f"{name} does not match its signed SHA-256: the file changed after signing")
    return manifest
