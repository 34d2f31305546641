"""Secrets are encrypted at rest and never rendered back."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from synccore.models import SyncSettings
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.dbbehaviour]

SECRET = "Sup3r-s3cret-pässword"


def raw_column(settings_id: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM synccore_syncsettings WHERE id = %s", [settings_id])
        return cursor.fetchone()[0]


def test_the_raw_database_column_does_not_contain_the_secret():
    env = f.environment()
    env.settings.service_password = SECRET
    env.settings.oauth_client_secret = "client-" + SECRET
    env.settings.save()
    for column in ("service_password", "oauth_client_secret"):
        raw = raw_column(env.settings.pk, column)
        assert SECRET not in raw and SECRET.encode().hex() not in raw
        assert raw.startswith("fernet:")
    reloaded = SyncSettings.objects.get(pk=env.settings.pk)
    assert reloaded.service_password == SECRET


def test_an_empty_secret_stays_empty():
    env = f.environment()
    assert raw_column(env.settings.pk, "service_password") == ""
    assert SyncSettings.objects.get(pk=env.settings.pk).service_password == ""


def test_keys_rotate_by_prepending_a_new_key(settings):
    env = f.environment()
    env.settings.service_password = SECRET
    env.settings.save()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.FIELD_ENCRYPTION_KEYS]
    assert SyncSettings.objects.get(pk=env.settings.pk).service_password == SECRET


def test_a_lost_key_is_a_clear_configuration_error(settings):
    env = f.environment()
    env.settings.service_password = SECRET
    env.settings.save()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS"):
        SyncSettings.objects.get(pk=env.settings.pk)
