"""EIP-191 `personal_sign` signatures: the hash a wallet signs for a text, the address that
signed it, and EIP-4361 ("Sign-In with Ethereum") messages to sign.

    recover_signer("hello", "0x...65 bytes...") -> "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"
    personal_sign(private_key, "hello") -> "0x...65 bytes..."  (what a wallet answers)

A wallet's `personal_sign` (eth_sign of a text) signs
keccak256("\\x19Ethereum Signed Message:\\n" + <length of the message in bytes> + <message>),
the message as UTF-8. Signatures are 65 bytes, r || s || v, in hex; v is 27 or 28 (wallets)
or 0 or 1 (libraries that give the recovery id). Compact 64-byte EIP-2098 signatures and
EIP-155 style v values are not personal_sign signatures and are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey, Signature
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError as KeysValidationError

from erc8004_backend.errors import Erc8004Error

SIGNATURE_BYTES = 65
# The order of secp256k1's group: r and s are in [1, N).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
PERSONAL_PREFIX = b"\x19Ethereum Signed Message:\n"

_HEX = re.compile(r"^(?:0[xX])?([0-9a-fA-F]*)$")


class SignatureError(Erc8004Error):
    """A signature that is malformed or recovers no public key."""


def personal_message_hash(message: str | bytes) -> bytes:
    """The 32-byte hash `personal_sign` signs for `message` (text is taken as UTF-8)."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return keccak(PERSONAL_PREFIX + str(len(data)).encode("ascii") + data)


def parse_signature(signature: str) -> tuple[int, int, int]:
    """(v, r, s) of a 65-byte hex signature (0x optional), v as the recovery id 0 or 1.
    Raises SignatureError saying what is wrong with it."""
    match = _HEX.match(signature)
    if match is None:
        raise SignatureError("the signature is not hex (expected 0x and 130 hex digits)")
    digits = match.group(1)
    if len(digits) % 2:
        raise SignatureError("the signature has an odd number of hex digits")
    if len(digits) != 2 * SIGNATURE_BYTES:
        raise SignatureError(
            f"the signature is {len(digits) // 2} bytes; a personal_sign signature is"
            f" {SIGNATURE_BYTES} (r, s and v: 0x and 130 hex digits)"
        )
    raw = bytes.fromhex(digits)
    r = int.from_bytes(raw[0:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    v = raw[64]
    if v in (27, 28):
        v -= 27
    elif v not in (0, 1):
        raise SignatureError(f"the signature's v is {v}; it must be 27 or 28 (or 0 or 1)")
    if not 0 < r < SECP256K1_N:
        raise SignatureError("the signature's r is out of range (0, or not below the curve order)")
    if not 0 < s < SECP256K1_N:
        raise SignatureError("the signature's s is out of range (0, or not below the curve order)")
    return v, r, s


def recover_signer_of_hash(message_hash: bytes, signature: str) -> str:
    """The address (lowercase 0x hex) whose key made `signature` over `message_hash`."""
    v, r, s = parse_signature(signature)
    try:
        public_key = Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(message_hash)
    except (BadSignature, KeysValidationError):
        raise SignatureError("the signature is not valid: no public key recovers from it") from None
    return public_key.to_address()


def recover_signer(message: str, signature: str) -> str:
    """The address (lowercase 0x hex) that signed `message` with personal_sign.

    A well-formed signature always recovers some address: a signature over another message,
    or by another key, gives another address, so compare the result with the one expected.
    Raises SignatureError for a malformed signature (not hex, not 65 bytes, v not
    27/28/0/1, r or s out of range, no point on the curve)."""
    return recover_signer_of_hash(personal_message_hash(message), signature)


def personal_sign(key: PrivateKey, message: str) -> str:
    """The signature a wallet's `personal_sign` gives for `message` with `key`: 0x and 130
    hex digits, v as 27 or 28."""
    raw = key.sign_msg_hash(personal_message_hash(message)).to_bytes()  # v as 0 or 1
    return "0x" + (raw[:64] + bytes([raw[64] + 27])).hex()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SignInMessage:
    """An EIP-4361 message: who asks (`domain`), which account signs, what for (`statement`,
    one line), the resource (`uri`), the chain, a nonce from the server, and when it was
    made and stops being good. Wallets that know EIP-4361 show its fields and check the
    domain."""

    domain: str
    address: str
    statement: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime

    def text(self) -> str:
        return (
            f"{self.domain} wants you to sign in with your Ethereum account:\n"
            f"{to_checksum_address(self.address)}\n"
            "\n"
            f"{self.statement}\n"
            "\n"
            f"URI: {self.uri}\n"
            "Version: 1\n"
            f"Chain ID: {self.chain_id}\n"
            f"Nonce: {self.nonce}\n"
            f"Issued At: {_rfc3339(self.issued_at)}\n"
            f"Expiration Time: {_rfc3339(self.expiration_time)}"
        )
