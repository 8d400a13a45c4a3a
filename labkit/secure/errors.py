"""The refusals of labkit.secure: one exception type per reason, each with a message that names it.

Every one is a SecurityError, so a server can catch them all and refuse to start. Taught in 15_security_and_privacy.
"""
from __future__ import annotations


class SecurityError(Exception):
    """A model file or key was refused; the message says why."""


class UnsafeCheckpointError(SecurityError):
    """The checkpoint holds pickled objects beyond tensors and plain containers (it could run code)."""


class KeyMissingError(SecurityError):
    """No key in the environment variable or key file named, or one of the wrong size."""


class NotSealedError(SecurityError):
    """The bytes are not a sealed model file at all (wrong magic or format version)."""


class TruncatedError(SecurityError):
    """The file ends before the length its header declares."""


class WrongKeyError(SecurityError):
    """The file was sealed under a different key (its key id does not match)."""


class ModelMismatchError(SecurityError):
    """The file is sealed and intact but holds another model or version than the one asked for."""


class TamperedError(SecurityError):
    """Authentication failed: a byte of the header or the ciphertext was changed."""


class ManifestError(SecurityError):
    """A signed manifest whose signature, digests or file list does not check out."""
