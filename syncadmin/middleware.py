"""Console session limits and its Content-Security-Policy header. A session ends
SESSION_COOKIE_AGE seconds after the login, whatever happens in between, and after
SESSION_IDLE_SECONDS without activity."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import logout

LAST_ACTIVITY = "syncadmin_last_activity"
LOGGED_IN_AT = "syncadmin_logged_in_at"
# Sent by the console's status refresh: a page left open is not activity.
POLL_HEADER = "X-Console-Poll"


class IdleTimeoutMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = time.time()
            started = request.session.get(LOGGED_IN_AT)
            last = request.session.get(LAST_ACTIVITY)
            too_old = started is not None and now - started > settings.SESSION_COOKIE_AGE
            idle = last is not None and now - last > settings.SESSION_IDLE_SECONDS
            if too_old or idle:
                logout(request)
            elif POLL_HEADER not in request.headers:
                request.session[LAST_ACTIVITY] = now
        response = self.get_response(request)
        if request.user.is_authenticated and LOGGED_IN_AT not in request.session:
            _start_lifetime(request.session)
        return response


def _start_lifetime(session) -> None:
    """The session's lifetime counts from now (its login): every later save keeps this expiry
    instead of moving it SESSION_COOKIE_AGE past the last request, as Django would."""
    now = time.time()
    session[LOGGED_IN_AT] = now
    session.set_expiry(datetime.fromtimestamp(now + settings.SESSION_COOKIE_AGE, tz=UTC))


# Scripts and styles only from our own static files: the console's templates have no inline
# script, style or event handler (tests/test_console_security_headers.py keeps it so), and nothing
# is loaded from elsewhere. The API's docs pages (Swagger UI, ReDoc) start with inline scripts of
# drf-spectacular's own templates, so they go without.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
WITHOUT_CSP = ("/api/docs/", "/api/redoc/")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith(WITHOUT_CSP):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
