"""Production settings: `manage.py check --deploy` is clean with .env.example filled in."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from cryptography.fernet import Fernet

from tests.conftest import PROJECT_DIR


def example_environment() -> dict[str, str]:
    values = {}
    for line in (PROJECT_DIR / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    # The example's placeholder is not a key; an operator makes one as the comment says.
    values["FIELD_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    values["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    return values


def check_deploy(overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        **example_environment(),
        **(overrides or {}),
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_example_production_settings():
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_placeholder_secret_key_from_env_example_fails_check_deploy():
    placeholder = dict(
        line.split("=", 1)
        for line in (PROJECT_DIR / ".env.example").read_text().splitlines()
        if line.startswith("DJANGO_SECRET_KEY=")
    )["DJANGO_SECRET_KEY"]
    result = check_deploy({"DJANGO_SECRET_KEY": placeholder})
    assert result.returncode != 0
    assert "synccore.E001" in result.stdout + result.stderr


def test_demo_and_test_only_packages_are_not_runtime_requirements():
    def names(file: str) -> set[str]:
        lines = (PROJECT_DIR / file).read_text().splitlines()
        return {line.split("==")[0].lower() for line in lines if "==" in line and not line.startswith("#")}

    demo_only = {"trustme", "odata-query", "honcho"}
    assert not names("requirements.txt") & demo_only
    assert names("requirements-demo.txt") >= demo_only
    assert "-r requirements.txt" in (PROJECT_DIR / "requirements-demo.txt").read_text()
    assert "-r requirements-demo.txt" in (PROJECT_DIR / "requirements-dev.txt").read_text()
