"""The console's Content-Security-Policy (issue 16, finding 11): every page carries it, and no
template needs what it forbids (inline scripts, inline styles, event handlers, outside hosts)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings as django_settings

from syncadmin.middleware import CONTENT_SECURITY_POLICY
from tests.conftest import PROJECT_DIR
from tests.fixtures.api import user_with_role

pytestmark = pytest.mark.django_db


def test_console_pages_carry_a_content_security_policy_without_inline_scripts(client):
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert client.get("/login/")["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    client.force_login(user_with_role("viewer"))
    for path in ("/", "/audit/"):
        assert client.get(path)["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_the_templates_hold_nothing_the_policy_forbids():
    offending = []
    for template in (PROJECT_DIR / "templates").rglob("*.html"):
        text = template.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)", r"<style", r"\sstyle=", r"\son[a-z]+=", r"javascript:", r"https?://"):
            if re.search(pattern, text):
                offending.append(f"{template.name}: {pattern}")
    assert offending == []
    assert "syncadmin.middleware.ContentSecurityPolicyMiddleware" in django_settings.MIDDLEWARE
