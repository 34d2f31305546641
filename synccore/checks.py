"""System checks of the synchronizer's own settings (``manage.py check --deploy``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def public_base_url(app_configs, **kwargs) -> list[Warning]:
    """Push over Microsoft Graph needs webhooks Graph can reach: a public https base URL."""
    from synccore.runtime.push.graph import public_base_url_problem

    url = str(getattr(settings, "PUBLIC_BASE_URL", "") or "")
    problem = public_base_url_problem(url)
    if not problem and urlsplit(url).scheme != "https":
        problem = f"PUBLIC_BASE_URL is {url!r}, a loopback address Microsoft Graph cannot reach."
    if not problem:
        return []
    return [
        Warning(
            problem,
            hint="Set PUBLIC_BASE_URL to the public https address of this server (see "
            "docs/exchange-online.md, Push), or push over Graph stays off (pull only).",
            id="synccore.W001",
        )
    ]


# The value `.env.example` carries; a copied example file must not run a production server.
PLACEHOLDER_SECRET_KEY = "change-me-to-a-long-random-string-of-at-least-fifty-characters-0123456789"


@register(Tags.security, deploy=True)
def placeholder_secret_key(app_configs, **kwargs) -> list[Error]:
    """The example's DJANGO_SECRET_KEY is public: sessions and CSRF tokens signed with it can be forged."""
    key = str(getattr(settings, "SECRET_KEY", "") or "")
    if key != PLACEHOLDER_SECRET_KEY and not key.lower().startswith("change-me"):
        return []
    return [
        Error(
            "DJANGO_SECRET_KEY is the placeholder from .env.example.",
            hint='Make one with: python -c "import secrets; print(secrets.token_urlsafe(50))"',
            id="synccore.E001",
        )
    ]
