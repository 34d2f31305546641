"""One permission class for every API view: the role the request needs, by method and action."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from syncadmin.roles import ADMINISTRATOR, VIEWER, has_role


def required_role(request, view) -> str:
    """Reads need viewer; writes administrator unless the view names a lower role for the action."""
    if request.method in SAFE_METHODS:
        return VIEWER
    return getattr(view, "action_roles", {}).get(getattr(view, "action", None), ADMINISTRATOR)


class HasRole(BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, required_role(request, view))
