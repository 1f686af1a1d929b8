"""EIP-191 personal_sign: the hash a wallet signs, signing, recovering its signer, clear
refusals; EIP-4361 messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.chain.signatures import (
    SECP256K1_N,
    SignatureError,
    SignInMessage,
    parse_signature,
    personal_message_hash,
    personal_sign,
    recover_signer,
)

# The example of web3.js's `web3.eth.accounts.sign("Some data", key)` documentation; eth-keys
# (RFC 6979 deterministic signing) makes the same signature from the same key.
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"
MESSAGE = "Some data"
MESSAGE_HASH = "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
SIGNATURE = (
    "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd"
    "6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a029"
    "1c"
)


def sign(private_key: PrivateKey, message: str, *, v_offset: int = 27) -> str:
    signature = private_key.sign_msg_hash(personal_message_hash(message))
    raw = signature.to_bytes()  # r || s || v, v as the recovery id 0 or 1
    return "0x" + (raw[:64] + bytes([raw[64] + v_offset])).hex()


def test_the_known_vector() -> None:
    key = PrivateKey(bytes.fromhex(KEY[2:]))
    assert personal_message_hash(MESSAGE).hex() == MESSAGE_HASH
    assert sign(key, MESSAGE) == SIGNATURE
    assert personal_sign(key, MESSAGE) == SIGNATURE
    assert key.public_key.to_address() == ADDRESS
    assert recover_signer(MESSAGE, SIGNATURE) == ADDRESS


def test_v_as_recovery_id_upper_case_hex_and_no_prefix_are_accepted() -> None:
    as_recovery_id = SIGNATURE[:-2] + "01"
    assert recover_signer(MESSAGE, as_recovery_id) == ADDRESS
    assert recover_signer(MESSAGE, "0X" + SIGNATURE[2:].upper()) == ADDRESS
    assert recover_signer(MESSAGE, SIGNATURE[2:]) == ADDRESS


def test_the_length_is_counted_in_utf8_bytes() -> None:
    text = "I♥SF"  # 4 characters, 6 bytes
    assert personal_message_hash(text) == keccak(b"\x19Ethereum Signed Message:\n6I\xe2\x99\xa5SF")
    assert personal_message_hash(text) == personal_message_hash(text.encode())


def test_another_message_or_the_other_parity_recovers_someone_else() -> None:
    assert recover_signer(MESSAGE + ".", SIGNATURE) != ADDRESS
    other_parity = SIGNATURE[:-2] + "1b"
    assert recover_signer(MESSAGE, other_parity) != ADDRESS


def _with(r: int | None = None, s: int | None = None, v: int | None = None) -> str:
    raw = bytearray(bytes.fromhex(SIGNATURE[2:]))
    if r is not None:
        raw[0:32] = r.to_bytes(32, "big")
    if s is not None:
        raw[32:64] = s.to_bytes(32, "big")
    if v is not None:
        raw[64] = v
    return "0x" + raw.hex()


def _not_an_x_coordinate() -> int:
    """The smallest r for which x^3 + 7 has no square root modulo p: no point has it."""
    p = 2**256 - 2**32 - 977
    r = 1
    while pow((r**3 + 7) % p, (p - 1) // 2, p) == 1:
        r += 1
    return r


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        ("", "the signature is 0 bytes; a personal_sign signature is 65"),
        (SIGNATURE[:-2], "the signature is 64 bytes; a personal_sign signature is 65"),
        (SIGNATURE + "00", "the signature is 66 bytes"),
        (SIGNATURE[:-1], "odd number of hex digits"),
        ("0x" + "zz" * 65, "the signature is not hex"),
        (SIGNATURE + " ", "the signature is not hex"),
        (" " + SIGNATURE, "the signature is not hex"),
        (_with(v=29), "the signature's v is 29; it must be 27 or 28 (or 0 or 1)"),
        (_with(v=37), "the signature's v is 37"),  # EIP-155 style: a transaction's, not ours
        (_with(v=2), "the signature's v is 2"),
        (_with(r=0), "the signature's r is out of range"),
        (_with(r=SECP256K1_N), "the signature's r is out of range"),
        (_with(s=0), "the signature's s is out of range"),
        (_with(s=SECP256K1_N), "the signature's s is out of range"),
        (
            _with(r=_not_an_x_coordinate()),
            "the signature is not valid: no public key recovers from it",
        ),
    ],
)
def test_malformed_signatures_are_refused_clearly(signature: str, problem: str) -> None:
    with pytest.raises(SignatureError, match=re.escape(problem)):
        recover_signer(MESSAGE, signature)


def test_parse_gives_the_recovery_id() -> None:
    v, r, s = parse_signature(SIGNATURE)
    assert v == 1
    assert r == int(SIGNATURE[2:66], 16)
    assert s == int(SIGNATURE[66:130], 16)


@settings(max_examples=60, deadline=None)
@given(
    secret=st.integers(min_value=1, max_value=SECP256K1_N - 1),
    message=st.text(max_size=300),
    v_offset=st.sampled_from([0, 27]),
)
def test_sign_then_recover_round_trips(secret: int, message: str, v_offset: int) -> None:
    key = PrivateKey(secret.to_bytes(32, "big"))
    assert recover_signer(message, sign(key, message, v_offset=v_offset)) == (
        key.public_key.to_address()
    )


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(min_size=65, max_size=65), message=st.text(max_size=50))
def test_any_65_bytes_give_an_address_or_a_signature_error(raw: bytes, message: str) -> None:
    try:
        address = recover_signer(message, "0x" + raw.hex())
    except SignatureError:
        return
    assert len(address) == 42
    assert address == address.lower()
    assert address.startswith("0x")


def test_a_sign_in_message_in_eip4361s_format() -> None:
    # The example of EIP-4361, with an expiration time and without resources.
    issued_at = datetime(2021, 9, 30, 18, 25, 24, 123, tzinfo=timezone(timedelta(hours=2)))
    message = SignInMessage(
        domain="service.invalid",
        address="0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
        statement="I accept the ServiceOrg Terms of Service: https://service.invalid/tos",
        uri="https://service.invalid/login",
        chain_id=1,
        nonce="32891756",
        issued_at=issued_at,
        expiration_time=issued_at.astimezone(UTC) + timedelta(minutes=5),
    )

    assert message.text() == (
        "service.invalid wants you to sign in with your Ethereum account:\n"
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n"
        "\n"
        "I accept the ServiceOrg Terms of Service: https://service.invalid/tos\n"
        "\n"
        "URI: https://service.invalid/login\n"
        "Version: 1\n"
        "Chain ID: 1\n"
        "Nonce: 32891756\n"
        "Issued At: 2021-09-30T16:25:24Z\n"
        "Expiration Time: 2021-09-30T16:30:24Z"
    )
