"""Settings come from the environment and fail loudly on bad values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import PROJECT_DIR


def load_settings(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('ok')"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "syncadmin.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG='maybe' is not a boolean"),
        ("FIELD_ENCRYPTION_KEYS", "not-a-key", "FIELD_ENCRYPTION_KEYS must be comma-separated Fernet keys"),
        ("Q_BROKER", "kafka", "use 'orm' or 'redis'"),
        ("DATABASE_URL", "nosuchdb://x", "nosuchdb"),
    ],
)
def test_a_bad_value_stops_the_start_with_a_readable_message(variable, value, message):
    result = load_settings(**{variable: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_good_values_load():
    assert load_settings(DJANGO_DEBUG="true", Q_BROKER="orm").stdout.strip() == "ok"


@pytest.mark.django_db
@pytest.mark.dbbehaviour
def test_sqlite_runs_in_wal_mode_with_immediate_transactions():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite-only behaviour; this run is on " + connection.vendor)
    options = connection.settings_dict["OPTIONS"]
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]


def test_every_environment_variable_of_the_settings_is_in_env_example():
    """`.env.example` is the list of settings an administrator reads: it names each one."""
    import re

    settings_text = (PROJECT_DIR / "syncadmin" / "settings.py").read_text()
    read = set(re.findall(r'(?:env\.\w+|_env_bool)\(\s*"([A-Z][A-Z0-9_]*)"', settings_text))
    example = (PROJECT_DIR / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert read, "the pattern no longer finds the settings' variables"
    assert sorted(read - listed) == []
    assert sorted(listed - read) == []
