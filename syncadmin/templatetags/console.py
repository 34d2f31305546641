"""Small template helpers for the console."""

from __future__ import annotations

from django import template
from django.utils.dateparse import parse_datetime
from django.utils.html import json_script

from syncadmin.console import labels

register = template.Library()


@register.filter
def when(value):
    """An ISO 8601 string (as in the status dict) or a datetime, as a datetime for |date."""
    if isinstance(value, str):
        return parse_datetime(value)
    return value


@register.filter
def percent(progress) -> int:
    """(done, total) as a whole percentage."""
    if not progress:
        return 0
    done, total = progress
    return int(100 * done / total) if total else 0


@register.filter
def field_type(bound_field) -> str:
    return bound_field.field.widget.__class__.__name__.lower()


def _plain(value) -> str:
    """One audited value in words: no Python reprs (None, True, [..]) in the console."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{name}: {_plain(item)}" for name, item in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(_plain(item) for item in value) or "—"
    return str(value)


@register.filter
def change_text(change) -> str:
    """An audit entry's change: a [before, after] pair as "old → new", anything else in words."""
    if isinstance(change, list) and len(change) == 2:
        return f"{_plain(change[0])} → {_plain(change[1])}"
    return _plain(change)


@register.filter(name="label")
def label_filter(value, vocabulary: str) -> str:
    """A state, health or outcome in the console's words (the same the status script writes)."""
    return labels.label(vocabulary, value)


@register.simple_tag
def console_labels():
    """The label table for the status script."""
    return json_script(labels.LABELS, "console-labels")


@register.filter
def item(mapping, key):
    """``mapping[key]`` in a template (a status dict's kind)."""
    return (mapping or {}).get(key)
