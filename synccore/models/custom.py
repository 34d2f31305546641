"""Custom CRM fields: the keys an environment's records carry in ``custom_fields``, with their types.

A CRM record (contact, company, activity) carries ``custom_fields``, a JSON object of key →
text, number or date. The first value a key is given decides its type for that entity in the
environment (a date is a ``YYYY-MM-DD`` text); later values must be of that type, so a date stays
a date. The keys known here are what the field mapping offers as ``custom:<key>``.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

from django.db import models
from django.utils.dateparse import parse_date

from synccore import mapping
from synccore.models.config import Environment

KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
MAX_KEYS = 100  # per record
MAX_TEXT = 4000


class CustomType(models.TextChoices):
    TEXT = "text", "Text"
    NUMBER = "number", "Number"
    DATE = "date", "Date"


class CustomField(models.Model):
    """A custom field key in use in an environment, for one entity, with its type."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="custom_fields")
    entity = models.CharField(max_length=20, choices=mapping.ENTITY_CHOICES)
    key = models.CharField(max_length=40)
    value_type = models.CharField(max_length=10, choices=CustomType.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment", "entity", "key"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "entity", "key"], name="customfield_unique_key")
        ]

    def __str__(self) -> str:
        return f"{self.entity}: {self.key} ({self.value_type})"

    @classmethod
    def types(cls, environment_id: int, entity: str) -> dict[str, str]:
        entity = mapping.registry_entity(entity)
        return dict(
            cls.objects.filter(environment_id=environment_id, entity=entity).values_list("key", "value_type")
        )

    @classmethod
    def keys(cls, environment_id: int | None, entity: str) -> list[str]:
        if environment_id is None:
            return []
        entity = mapping.registry_entity(entity)
        return list(
            cls.objects.filter(environment_id=environment_id, entity=entity).values_list("key", flat=True)
        )

    @classmethod
    def register(cls, environment_id: int, entity: str, new: dict[str, str]) -> None:
        """Record keys first used now (a concurrent writer may have recorded them meanwhile)."""
        if new:
            cls.objects.bulk_create(
                [cls(environment_id=environment_id, entity=entity, key=k, value_type=t) for k, t in new.items()],
                ignore_conflicts=True,
            )


def type_of(value: Any) -> str | None:
    """The custom type of a JSON value, None when it is none of text, number, date."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return CustomType.NUMBER if math.isfinite(value) else None
    if isinstance(value, str):
        return CustomType.DATE if _as_date(value) is not None else CustomType.TEXT
    return None


def _as_date(value: str) -> date | None:
    if len(value) != 10:
        return None
    try:
        return parse_date(value)
    except ValueError:
        return None


def merge(
    current: dict[str, Any], patch: Any, types: dict[str, str], errors: dict[str, list[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``current`` with ``patch`` merged key by key (``null`` removes a key), checked against the
    known ``types``. Returns the merged values and the keys used for the first time (with their
    types); problems go into ``errors`` under ``custom_fields``."""
    problems: list[str] = []
    merged = dict(current or {})
    new: dict[str, str] = {}
    if patch is None:
        patch = {}
    if not isinstance(patch, dict):
        errors.setdefault("custom_fields", []).append("Must be an object of key → text, number or date.")
        return merged, new
    for key, value in patch.items():
        if not isinstance(key, str) or not KEY_RE.match(key):
            problems.append(
                f"“{key}” is not a custom field key: a letter, then letters, digits or _ (at most 40)."
            )
            continue
        if value is None:
            merged.pop(key, None)
            continue
        found = type_of(value)
        if found is None:
            problems.append(f"{key}: a custom field is text, a number or a date (YYYY-MM-DD).")
            continue
        known = types.get(key) or new.get(key)
        if known is None:
            new[key] = found
        elif known == CustomType.TEXT and found == CustomType.DATE:
            pass  # a text that looks like a date is still a text of a text field
        elif known != found:
            wanted = {"text": "a text", "number": "a number", "date": "a date (YYYY-MM-DD)"}[known]
            problems.append(f"{key}: must be {wanted}, as this field is elsewhere in the environment.")
            continue
        if isinstance(value, str) and len(value) > MAX_TEXT:
            problems.append(f"{key}: at most {MAX_TEXT} characters.")
            continue
        merged[key] = value
    if len(merged) > MAX_KEYS:
        problems.append(f"At most {MAX_KEYS} custom fields per record.")
    if problems:
        errors.setdefault("custom_fields", []).extend(problems)
    return merged, new


def as_text(value: Any) -> str:
    """A custom value as an Exchange text: numbers without a needless .0, dates as YYYY-MM-DD."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def from_text(text: str, value_type: str) -> Any:
    """A text read from Exchange as a value of a custom field of this type (None: it is not one)."""
    if value_type == CustomType.NUMBER:
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        return int(number) if number.is_integer() and "." not in text and "," not in text else number
    if value_type == CustomType.DATE:
        return text if _as_date(text) is not None else None
    return text[:MAX_TEXT]


def check_record(record: Any, entity: str) -> dict[str, str]:
    """A record's ``custom_fields`` as a whole (a back-office edit), against the environment's
    types: returns the keys used for the first time; ValidationError names the problems."""
    from django.core.exceptions import ValidationError

    errors: dict[str, list[str]] = {}
    types = CustomField.types(record.environment_id, entity) if record.environment_id else {}
    merged, new = merge({}, record.custom_fields, types, errors)
    if errors:
        raise ValidationError(errors)
    record.custom_fields = merged
    return new
