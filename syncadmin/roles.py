"""Roles: the Django groups viewer, operator and administrator (created by a migration).

Each role includes the rights of the ones before it; superusers have every right. The console
views and the API check the same function, so a right is never only hidden in a template.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

VIEWER = "viewer"
OPERATOR = "operator"
ADMINISTRATOR = "administrator"
ROLES = (VIEWER, OPERATOR, ADMINISTRATOR)  # ordered: each includes the rights of the previous


def role_of(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """The highest role a user has, or None."""
    if not user or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ADMINISTRATOR
    # Cached on the user object: one query per request however many checks a page makes.
    cached = getattr(user, "_syncadmin_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = next((r for r in reversed(ROLES) if r in names), None)
    user._syncadmin_role = role
    return role


def has_role(user: AbstractBaseUser | AnonymousUser, needed: str) -> bool:
    role = role_of(user)
    return role is not None and ROLES.index(role) >= ROLES.index(needed)
