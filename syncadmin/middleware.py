"""Idle session timeout: a console session ends after SESSION_IDLE_SECONDS without activity."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import logout

LAST_ACTIVITY = "syncadmin_last_activity"
# Sent by the console's status refresh: a page left open is not activity.
POLL_HEADER = "X-Console-Poll"


class IdleTimeoutMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = time.time()
            last = request.session.get(LAST_ACTIVITY)
            if last is not None and now - last > settings.SESSION_IDLE_SECONDS:
                logout(request)
            elif POLL_HEADER not in request.headers:
                request.session[LAST_ACTIVITY] = now
        return self.get_response(request)
