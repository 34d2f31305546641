"""Login lockout (django-axes) that stays out of the way of logins made without a request."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    """Refuses web logins for locked-out users; other backends do the actual check.

    ``authenticate()`` without a request (management commands, scripts) is not a web login
    attempt that can be throttled per address, so it is passed on instead of raising.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
