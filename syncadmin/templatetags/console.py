"""Small template helpers for the console."""

from __future__ import annotations

from django import template
from django.utils.dateparse import parse_datetime

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
