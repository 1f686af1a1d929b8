"""Authenticated encryption of secrets at rest: agents' MCP tokens and webhook secrets.

AES-256-GCM with a random 12-byte nonce; the stored value is nonce || ciphertext || tag and
the id of the key that made it. Associated data binds a ciphertext to its row (for MCP
tokens "<chain_id>:<agent_id>"), so a value copied to another row does not decrypt.
Keys come from ERC8004_TOKEN_KEYS as "id:base64,id:base64"; the first one encrypts, all
of them decrypt, which is how keys are rotated.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from erc8004_backend.errors import Erc8004Error

NONCE_SIZE = 12


class EncryptionError(Erc8004Error):
    """A key specification is malformed, or a value does not decrypt."""


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes
    key_id: str


class SecretBox:
    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise EncryptionError(f"unknown current key id {current!r}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    @classmethod
    def from_spec(cls, spec: str) -> SecretBox:
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key_id, sep, encoded = item.partition(":")
            if not sep or not key_id:
                raise EncryptionError("token keys must look like ID:BASE64 (comma-separated)")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise EncryptionError(f"token key {key_id!r} is not valid base64") from None
            if len(key) != 32:
                raise EncryptionError(f"token key {key_id!r} must be 32 bytes, not {len(key)}")
            keys[key_id] = key
        if not keys:
            raise EncryptionError("no token key configured")
        return cls(keys, current=next(iter(keys)))

    def seal(self, plaintext: str, associated_data: str) -> Sealed:
        nonce = os.urandom(NONCE_SIZE)
        ciphertext = self._ciphers[self.current].encrypt(
            nonce, plaintext.encode(), associated_data.encode()
        )
        return Sealed(nonce + ciphertext, self.current)

    def open(self, sealed: Sealed, associated_data: str) -> str:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise EncryptionError(f"value was encrypted with unknown key {sealed.key_id!r}")
        nonce, ciphertext = sealed.ciphertext[:NONCE_SIZE], sealed.ciphertext[NONCE_SIZE:]
        try:
            return cipher.decrypt(nonce, ciphertext, associated_data.encode()).decode()
        except InvalidTag:
            raise EncryptionError(
                "value does not decrypt with its key (tampered or misplaced)"
            ) from None


def agent_token_context(chain_id: int, agent_id: int) -> str:
    """Associated data of an agent's MCP token."""
    return f"{chain_id}:{agent_id}"
