"""Recording the audit log: who changed what (secrets masked), started, stopped or synced."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import models

from syncadmin.models import AuditEntry
from synccore.models.config import SECRET_FIELDS

MASK = "••••••"
_SECRET = "\x00secret:"


def snapshot(instance: models.Model, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The instance's editable values as JSON-friendly data, secrets reduced to set / not set."""
    names = fields or [f.name for f in instance._meta.concrete_fields if f.editable and f.name != "id"]
    values = {}
    for name in names:
        field = instance._meta.get_field(name)
        value = getattr(instance, field.attname)
        if name in SECRET_FIELDS:
            # A digest tells a replaced secret from an unchanged one; ``diff`` never shows it.
            value = f"{_SECRET}{hashlib.sha256(value.encode()).hexdigest()}" if value else ""
        elif not isinstance(value, str | int | float | bool | type(None) | list | dict):
            value = str(value)
        values[name] = value
    return values


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    changes = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            changes[name] = [_masked(old), _masked(new)]
    return changes


def _masked(value: Any) -> Any:
    """A secret shows as set / not set, never its value."""
    if isinstance(value, str) and value.startswith(_SECRET):
        return MASK
    return value


def record(
    user,
    action: str,
    *,
    environment=None,
    target: str = "",
    changes: Mapping[str, Any] | None = None,
    via: str = "console",
    outcome: str = "",
) -> AuditEntry:
    return AuditEntry.objects.create(
        user=user if user is not None and user.is_authenticated else None,
        username=getattr(user, "username", "") or "",
        environment=environment,
        action=action,
        target=target[:255],
        changes=dict(changes or {}),
        via=via,
        outcome=outcome[:255],
    )


def audited(user, action: str, environment, call, *, target: str = "", changes=None, via: str = "console"):
    """Run ``call()`` and record it, with the error as the outcome when it raises."""
    try:
        result = call()
    except Exception as exc:
        record(
            user, action, environment=environment, target=target, changes=changes, via=via, outcome=str(exc)
        )
        raise
    record(user, action, environment=environment, target=target, changes=changes, via=via)
    return result
