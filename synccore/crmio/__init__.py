"""CRM integration I/O: an outside CRM's objects in and out of the CRM models.

The API hands this module plain dictionaries (already checked for shape) keyed by
``external_id``; the rules of translation live here: ISO codes to countries and languages,
e-mail addresses to employees and contacts, all-day activities as dates (end exclusive),
recurrences Exchange can represent, attendees replaced as a set. Each item is written in its
own savepoint, so one bad item never stops the others.
"""

from __future__ import annotations

from synccore.crmio.base import (
    ENTITIES,
    Errors,
    ItemError,
    UpsertResult,
)
from synccore.crmio.reading import (
    COMPANY_TEXT,
    CONTACT_TEXT,
    after_cursor,
    changed_at,
    encode_cursor,
    export,
    queryset,
)
from synccore.crmio.values import (
    recurrence_problem,
    to_utc,
)
from synccore.crmio.writing import (
    MAX_ATTENDEES,
    MAX_EXCEPTIONS,
    MAX_EXDATES,
    MAX_FAVORITES,
    MAX_SALES_GROUPS,
    BatchClash,
    delete,
    upsert,
    upsert_many,
)

__all__ = [
    "COMPANY_TEXT",
    "CONTACT_TEXT",
    "ENTITIES",
    "MAX_ATTENDEES",
    "MAX_EXCEPTIONS",
    "MAX_EXDATES",
    "MAX_FAVORITES",
    "MAX_SALES_GROUPS",
    "BatchClash",
    "Errors",
    "ItemError",
    "UpsertResult",
    "after_cursor",
    "changed_at",
    "delete",
    "encode_cursor",
    "export",
    "queryset",
    "recurrence_problem",
    "to_utc",
    "upsert",
    "upsert_many",
]
