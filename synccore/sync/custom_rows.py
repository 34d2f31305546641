"""Custom CRM fields of activities and tasks as the calendar and task passes honour them.

A mapping row ``custom:<key>`` → ``property:<Name>`` (a named extended property of the product's
set) or → a free standard field of the item (an event's location, a task's start or due day) puts
the record's ``custom_fields[key]`` into the normal form under the Exchange field's name, so it is
written, compared with the snapshot and merged three ways like any other field, within its row's
direction. A disabled row is not loaded: its field is neither written nor compared. A backend
whose items of that kind carry no extended properties (``MailboxBackend.PROPERTY_KINDS``: Domino,
To Do over Graph) leaves the property rows out (the settings check says so before a start).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from synccore import mapping
from synccore.mailbox.base import PROPERTY_PREFIX
from synccore.models import FieldMapping, custom
from synccore.models.custom import CustomField


@dataclass(frozen=True)
class CustomRow:
    """One enabled custom row: the record's key, the normal-form (Exchange) field it fills."""

    key: str
    field: str  # "property:<Name>" or a standard field ("location", "start", "due")
    value_type: str  # text, number, date
    direction: str = mapping.BOTH

    @property
    def is_property(self) -> bool:
        return self.field.startswith(PROPERTY_PREFIX)

    @property
    def property_name(self) -> str:
        return self.field[len(PROPERTY_PREFIX) :]

    def crm_text(self, record: Any) -> str:
        return custom.as_text((record.custom_fields or {}).get(self.key)).strip()

    def take(self, record: Any, text: str) -> bool:
        """Exchange's text into the record's custom field (empty removes the key); False when it
        is not of the key's type (a date stays a date): the record is left as it is."""
        values = dict(record.custom_fields or {})
        text = (text or "").strip()
        if not text:
            values.pop(self.key, None)
        else:
            value = custom.from_text(text, self.value_type)
            if value is None:
                return False
            values[self.key] = value
        record.custom_fields = values
        return True


def load(env_id: int, entity: str, backend_kinds: Iterable[str] | None = None) -> tuple[CustomRow, ...]:
    """The enabled custom rows of an entity; property rows only where the backend has them."""
    types = CustomField.types(env_id, entity)
    kinds = set(backend_kinds) if backend_kinds is not None else {entity}
    rows = []
    for row in FieldMapping.objects.filter(environment_id=env_id, entity=entity, enabled=True).order_by("pk"):
        if not mapping.is_custom(row.crm_field):
            continue
        key = mapping.custom_key(row.crm_field)
        if mapping.is_property(row.exchange_field):
            if entity not in kinds:
                continue
        elif row.exchange_field not in mapping.CUSTOM_STANDARD.get(entity, {}):
            continue
        rows.append(CustomRow(key, row.exchange_field, types.get(key, "text"), row.direction))
    return tuple(rows)


def property_names(rows: Iterable[CustomRow]) -> list[str]:
    return [row.property_name for row in rows if row.is_property]
