"""Model fields of the product's own: secrets encrypted at rest.

Encryption is cryptography's MultiFernet over the keys in ``settings.FIELD_ENCRYPTION_KEYS``:
the first key encrypts, any key decrypts, so keys rotate by prepending a new one.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

_PREFIX = "fernet:"


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext: str) -> str:
    token = _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS)).encrypt(plaintext.encode())
    return _PREFIX + token.decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(_PREFIX):
        raise ImproperlyConfigured("An encrypted column holds a value that was not encrypted by this product")
    try:
        return (
            _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS)).decrypt(stored[len(_PREFIX) :].encode()).decode()
        )
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS (was the key changed "
            "without keeping the old one?)"
        ) from exc


class EncryptedTextField(models.TextField):
    """A text column whose value is encrypted in the database; '' means "not set"."""

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(value)

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return decrypt(value)
