"""The public keys that assignments are verified with: the extender's current key and the previous ones
still trusted while a key rotation drains.

A key file holds one or more PEM ``PUBLIC KEY`` blocks (a file of one key is the format from before
rotation); a folder holds such files (every name not starting with ``.``, so a mounted Secret's
``..data`` is skipped). Each key is named by its key id, the first 16 hex digits of the SHA-256 of its
raw Ed25519 bytes: a signed assignment carries the id of the key that signed it (``keyId``), so a
verifier picks the key directly and an admin can count what each key still holds.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator

from tessera.assignment import AssignmentError

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)
KEY_ID_HEX = 16


def key_id(public_key) -> str:
    """The key id of an Ed25519 public key: 16 hex digits of the SHA-256 of its raw bytes."""
    return hashlib.sha256(public_key.public_bytes_raw()).hexdigest()[:KEY_ID_HEX]


class TrustedKeys:
    """Ed25519 public keys by key id, in the order given (the first is the current one)."""

    def __init__(self, keys: Iterable = ()) -> None:
        self._by_id: dict[str, object] = {}
        for key in keys:
            self._by_id.setdefault(key_id(key), key)

    def get(self, kid: str):
        """The key named ``kid``, or None when it is not trusted."""
        return self._by_id.get(kid)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def __iter__(self) -> Iterator:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"TrustedKeys({', '.join(self.ids)})"


def as_trusted(keys) -> TrustedKeys:
    """``keys`` as a TrustedKeys: one public key, an iterable of them, or a TrustedKeys as is."""
    if isinstance(keys, TrustedKeys):
        return keys
    if hasattr(keys, "public_bytes_raw"):
        return TrustedKeys([keys])
    return TrustedKeys(keys)


def parse_public_keys(data: bytes, where: str) -> list:
    """The Ed25519 public keys of PEM text; AssignmentError naming ``where`` and the block when any block
    is not one, when text lies outside the blocks, or when there is none."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    blocks = list(_PEM_BLOCK.finditer(data))
    if _PEM_BLOCK.sub(b"", data).strip():
        raise AssignmentError(f"{where}: text outside the PEM blocks (a truncated or garbled key?)")
    if not blocks:
        raise AssignmentError(f"{where}: no PEM public key")
    keys = []
    for n, block in enumerate(blocks, 1):
        what = f"{where}: key {n} of {len(blocks)}"
        if block.group(1) != b"PUBLIC KEY":
            raise AssignmentError(f"{what} is a {block.group(1).decode()}, not a PUBLIC KEY")
        try:
            key = load_pem_public_key(block.group(0))
        except ValueError as err:
            raise AssignmentError(f"{what} cannot be read: {str(err).splitlines()[0][:120]}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise AssignmentError(f"{what} is not an Ed25519 public key")
        keys.append(key)
    return keys


def load_trusted_keys(path: str) -> TrustedKeys:
    """The public keys in a PEM file (one key or several) or in the files of a folder; AssignmentError
    (or OSError) when any of them cannot be read, so a garbled key is never silently left out."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if not n.startswith(".")
                       and os.path.isfile(os.path.join(path, n)))
        if not names:
            raise AssignmentError(f"{path}: no key files in the folder")
        files = [os.path.join(path, n) for n in names]
    else:
        files = [path]
    keys = []
    for name in files:
        with open(name, "rb") as fh:
            keys += parse_public_keys(fh.read(), name)
    return TrustedKeys(keys)


def public_pem(public_key) -> bytes:
    """One public key as a PEM block."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
