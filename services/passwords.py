"""Password hashing with argon2id (argon2-cffi's RFC 9106 profiles)."""

from __future__ import annotations

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

DEFAULT_PROFILE = "RFC_9106_LOW_MEMORY"

_hasher = PasswordHasher.from_parameters(getattr(profiles, DEFAULT_PROFILE))
_dummy_hash: str | None = None


def use_profile(name: str) -> None:
    """Choose the cost profile (settings.argon2_profile); tests use the cheapest one."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher.from_parameters(getattr(profiles, name))
    _dummy_hash = None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    global _dummy_hash
    if password_hash is None:
        # Verify against a dummy when the email is unknown, so a missing account costs the
        # same time as a wrong password (no account enumeration by timing).
        _dummy_hash = _dummy_hash or _hasher.hash("not-a-real-password")
        password_hash, known = _dummy_hash, False
    else:
        known = True
    try:
        return _hasher.verify(password_hash, password) and known
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
