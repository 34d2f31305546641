"""What the CRM I/O modules share: the entities by API name, results and item errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import models

from synccore.models import (
    Activity,
    Company,
    Contact,
    Employee,
)

ENTITIES: dict[str, type[models.Model]] = {
    "companies": Company,
    "contacts": Contact,
    "employees": Employee,
    "activities": Activity,
}

Errors = dict[str, list[str]]


class ItemError(Exception):
    """One item's field-level problems."""

    def __init__(self, errors: Errors) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass
class UpsertResult:
    external_id: str
    status: str  # created | updated | error
    errors: Errors = field(default_factory=dict)
    record: models.Model | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"external_id": self.external_id, "status": self.status, "errors": self.errors}
