"""Passwords, access tokens and API keys: plain functions, no I/O.

Passwords are bcrypt hashes (the seed's users are bcrypt, cost 12) of at least 8 characters
other than spaces. Access tokens are JWTs (HS256) carrying the user's id and when their
password was last changed (`pwd`, microseconds since the epoch): a token whose `pwd` is not
the user's current one was issued before the password changed, and is refused. API keys are
32 random bytes; only their SHA-256 is stored, and the prefix "ek_" tells them apart from
JWTs in an Authorization header.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt

API_KEY_PREFIX = "ek_"
API_KEY_SHOWN_PREFIX = 10  # characters of a key kept in the clear, to tell keys apart
BCRYPT_MAX_BYTES = 72  # bcrypt ignores what follows; longer passwords are refused
PASSWORD_MIN_CHARACTERS = 8  # other than spaces
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def password_problem(password: str) -> str | None:
    """What makes `password` unfit for a new password, or None."""
    if sum(not char.isspace() for char in password) < PASSWORD_MIN_CHARACTERS:
        return f"must have at least {PASSWORD_MIN_CHARACTERS} characters other than spaces"
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        return f"must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8"
    return None


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), password_hash.encode())
    except ValueError:  # not a bcrypt hash, or a password beyond bcrypt's limit
        return False


@functools.cache
def unknown_user_hash(rounds: int) -> str:
    """Checked against when a login names no user, so that a missing user costs as much
    time as a wrong password and response times do not tell which usernames exist."""
    return hash_password(secrets.token_urlsafe(16), rounds)


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    password_stamp: int  # the user's password_changed_at when the token was issued


class TokenError(Exception):
    """An access token that is malformed, forged or expired."""


def password_stamp(password_changed_at: datetime) -> int:
    """password_changed_at in whole microseconds since the epoch: exact, as the database
    keeps it, so that a token's copy compares equal to the current value or not at all."""
    return (password_changed_at - EPOCH) // timedelta(microseconds=1)


def issue_access_token(
    user_id: str,
    secret: str,
    lifetime: timedelta,
    *,
    password_changed_at: datetime,
    now: datetime | None = None,
) -> AccessToken:
    issued = now or datetime.now(UTC)
    expires = issued + lifetime
    claims = {
        "sub": user_id,
        "iat": issued,
        "exp": expires,
        "typ": "access",
        "pwd": password_stamp(password_changed_at),
    }
    return AccessToken(jwt.encode(claims, secret, algorithm="HS256"), expires)


def read_access_token(token: str, secret: str) -> AccessClaims:
    """Who an access token was issued to, and their password's stamp then."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp", "iat"]}
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("the access token has expired; log in again") from None
    except jwt.InvalidTokenError:
        raise TokenError("the access token is not valid") from None
    subject, stamp = claims.get("sub"), claims.get("pwd")
    if claims.get("typ") != "access" or not isinstance(subject, str) or type(stamp) is not int:
        raise TokenError("the access token is not valid")
    return AccessClaims(subject, stamp)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def api_key_prefix(key: str) -> str:
    return key[:API_KEY_SHOWN_PREFIX]


def is_api_key(credential: str) -> bool:
    return credential.startswith(API_KEY_PREFIX)


def csrf_token(access_token: str, secret: str) -> str:
    """The dashboard's CSRF token for a session's access token: derived from it with the
    server's secret, so that only a page that could read our cookie knows it, and a token
    planted from elsewhere matches no session."""
    digest = hmac.new(secret.encode(), b"csrf:" + access_token.encode(), hashlib.sha256)
    return digest.hexdigest()


def csrf_token_matches(given: str, access_token: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode(), csrf_token(access_token, secret).encode())
