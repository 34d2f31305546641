"""Shared test set-up.

With CI=true a test never skips because something it needs is missing: it fails, so a green
CI run means everything ran. Locally it skips with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.exchange_sim", "tests.fixtures.crm", "tests.fixtures.clock"]

PROJECT_DIR = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(available: bool, what: str) -> None:
    """Skip locally, fail in CI, when something a test needs is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing", pytrace=False)
    pytest.skip(f"{what} not available")


def ews_schema_dir() -> Path | None:
    raw = os.environ.get("EWS_SCHEMA_DIR") or str(PROJECT_DIR.parent / "shared" / "ews-schema")
    path = Path(raw)
    return path if (path / "messages.xsd").exists() else None


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    # Tests don't run collectstatic; the manifest storage of production would fail to find files.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
