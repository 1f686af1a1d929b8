import base64

import pytest

from erc8004_backend.config import DEVELOPMENT_TOKEN_KEYS
from erc8004_backend.encryption import EncryptionError, Sealed, SecretBox, agent_token_context


def test_round_trip_and_ciphertext_is_not_the_plaintext() -> None:
    box = SecretBox.from_spec(DEVELOPMENT_TOKEN_KEYS)
    sealed = box.seal("secret-token", agent_token_context(84532, 42))
    assert b"secret-token" not in sealed.ciphertext
    assert sealed.key_id == "dev"
    assert box.open(sealed, agent_token_context(84532, 42)) == "secret-token"


def test_ciphertext_moved_to_another_agent_does_not_decrypt() -> None:
    box = SecretBox.from_spec(DEVELOPMENT_TOKEN_KEYS)
    sealed = box.seal("secret-token", agent_token_context(84532, 42))
    with pytest.raises(EncryptionError, match="does not decrypt"):
        box.open(sealed, agent_token_context(84532, 43))


def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    old = SecretBox.from_spec(DEVELOPMENT_TOKEN_KEYS)
    sealed = old.seal("t", "ctx")
    new_key = base64.b64encode(bytes(range(32))).decode()
    rotated = SecretBox.from_spec(f"k2:{new_key},{DEVELOPMENT_TOKEN_KEYS}")
    assert rotated.open(sealed, "ctx") == "t"
    assert rotated.seal("t", "ctx").key_id == "k2"
    with pytest.raises(EncryptionError, match="unknown key 'dev'"):
        SecretBox.from_spec(f"k2:{new_key}").open(Sealed(sealed.ciphertext, "dev"), "ctx")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no token key"),
        ("nokey", "ID:BASE64"),
        ("a:not base64!", "not valid base64"),
        ("a:" + base64.b64encode(b"short").decode(), "must be 32 bytes, not 5"),
    ],
)
def test_bad_key_specs_are_named(spec: str, message: str) -> None:
    with pytest.raises(EncryptionError, match=message):
        SecretBox.from_spec(spec)
