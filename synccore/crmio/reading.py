"""Reading CRM records out for an outside CRM: querysets, cursors, the API's dictionaries."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.db import models
from django.db.models import F, Max, Q
from django.db.models.functions import Coalesce, Greatest

from synccore.crmio import values
from synccore.crmio.base import ENTITIES
from synccore.models import (
    Activity,
    Company,
    Contact,
    Employee,
    Environment,
)

# --- reading ------------------------------------------------------------------------------------


def queryset(environment: Environment, entity: str, *, include_deleted: bool = False) -> models.QuerySet:
    model = ENTITIES[entity]
    manager = model.all_objects if include_deleted else model.objects
    records = manager.filter(environment=environment)
    if entity == "contacts":
        records = records.select_related("company", "country", "language", "rep").prefetch_related(
            "sales_groups", "favorite_of"
        )
    elif entity == "companies":
        records = records.select_related("country")
    elif entity == "activities":
        records = records.select_related("organizer", "responsible", "contact", "company").prefetch_related(
            "attendees"
        )
    return records.annotate(changed_at=_changed_at(entity))


def _changed_at(entity: str):
    """When a record last changed as the API shows it: an activity also changes with its attendees.

    The synchronizer updates attendee rows on their own (K4: "synchronized" on once in Exchange);
    a client reading changes since a moment must see those too, and page in that order.
    """
    if entity != "activities":
        return F("updated_at")
    return Greatest("updated_at", Coalesce(Max("attendees__updated_at"), "updated_at"))


def changed_at(record: models.Model) -> datetime:
    return getattr(record, "changed_at", None) or record.updated_at


def encode_cursor(record: models.Model) -> str:
    raw = f"{changed_at(record).isoformat()}|{record.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def after_cursor(records: models.QuerySet, cursor: str) -> models.QuerySet:
    """Records after the cursor in (changed_at, id) order; ValueError for a bad cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.rsplit("|", 1)
        updated_at, pk = values.to_utc(datetime.fromisoformat(stamp)), int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise ValueError("Not a cursor this API gave out.") from exc
    return records.filter(Q(changed_at__gt=updated_at) | Q(changed_at=updated_at, pk__gt=pk))


def export(record: models.Model) -> dict[str, Any]:
    return _EXPORTERS[type(record)](record)


def _common(record) -> dict[str, Any]:
    return {
        "external_id": record.external_id,
        "updated_at": changed_at(record).isoformat(),
        "deleted": record.deleted_at is not None,
    }


def _export_company(company: Company) -> dict[str, Any]:
    return {
        **_common(company),
        "name": company.name,
        "division": company.division,
        "country": company.country.iso_code if company.country else None,
        "synchronize": company.synchronize,
        **{name: getattr(company, name) for name in COMPANY_TEXT},
        "custom_fields": company.custom_fields or {},
    }


def _export_contact(contact: Contact) -> dict[str, Any]:
    return {
        **_common(contact),
        **{name: getattr(contact, name) for name in CONTACT_TEXT},
        "company_external_id": contact.company.external_id if contact.company else None,
        "emails": [e for e in (contact.email1, contact.email2, contact.email3) if e],
        "country": contact.country.iso_code if contact.country else None,
        "language": contact.language.iso_code if contact.language else None,
        "synchronize": contact.synchronize,
        "rep_email": contact.rep.email if contact.rep else None,
        "sales_groups": sorted(g.name for g in contact.sales_groups.all()),
        "favorite_of": sorted(e.email for e in contact.favorite_of.all() if e.email),
        "custom_fields": contact.custom_fields or {},
    }


def _export_employee(employee: Employee) -> dict[str, Any]:
    return {
        **_common(employee),
        "name": employee.name,
        "email": employee.email,
        "username": employee.username,
    }


def _export_activity(activity: Activity) -> dict[str, Any]:
    zone = values.zone_or_utc(activity.time_zone)
    return {
        **_common(activity),
        "type": activity.type,
        "subject": activity.subject,
        "start": _export_moment(activity.start, activity.all_day, zone),
        "end": _export_moment(activity.end, activity.all_day, zone),
        "all_day": activity.all_day,
        "time_zone": activity.time_zone,
        "location": activity.location,
        "comment": activity.comment,
        "custom_fields": activity.custom_fields or {},
        "private": activity.private,
        "synchronize": activity.synchronize,
        "created_by_erp": activity.created_by_erp,
        "organizer_email": (activity.organizer.email if activity.organizer else "")
        or activity.organizer_email,
        "recurrence": activity.recurrence or None,
        "exdates": list(activity.recurrence_exdates or []),
        "exceptions": list(activity.recurrence_exceptions or []),
        "reminder_minutes": activity.reminder_minutes,
        **_export_task(activity, zone),
        **_export_email(activity, zone),
        "attendees": [
            {
                "email": a.email,
                "name": a.name,
                "type": a.type,
                "invite": a.invite,
                "synchronized": a.synchronized,
                "sent_to_synchronizer": a.sent_to_synchronizer,
            }
            for a in activity.attendees.all()
        ],
        "warnings": activity.warnings(),
    }


def _export_task(activity: Activity, zone: ZoneInfo) -> dict[str, Any]:
    """A task's own fields (every activity has them; other types keep the defaults)."""
    return {
        "status": activity.status,
        "due": activity.due.isoformat() if activity.due else None,
        "completed_at": activity.completed_at.astimezone(zone).isoformat() if activity.completed_at else None,
        "priority": activity.priority,
        "responsible_email": activity.responsible.email if activity.responsible else "",
        "contact_external_id": activity.contact.external_id if activity.contact else None,
        "company_external_id": activity.company.external_id if activity.company else None,
    }


def _export_email(activity: Activity, zone: ZoneInfo) -> dict[str, Any]:
    """A filed e-mail's own fields (E3; other types keep them empty)."""
    return {
        "direction": activity.direction or None,
        "message_id": activity.message_id or None,
        "sender": dict(activity.sender) if activity.sender else None,
        "recipients": list(activity.recipients or []),
        "sent_at": activity.sent_at.astimezone(zone).isoformat() if activity.sent_at else None,
        "body": activity.body,
        "attachment_names": list(activity.attachment_names or []),
        "filing_candidates": list(activity.filing_candidates or []),
    }


def _export_moment(value: datetime, all_day: bool, zone: ZoneInfo) -> str:
    local = value.astimezone(zone)
    return local.date().isoformat() if all_day else local.isoformat()


_EXPORTERS = {
    Company: _export_company,
    Contact: _export_contact,
    Employee: _export_employee,
    Activity: _export_activity,
}

COMPANY_TEXT = ("email", "phone", "fax", "website", "street", "postal_code", "city", "state", "comment")
CONTACT_TEXT = (
    "first_name",
    "middle_name",
    "last_name",
    "job_title",
    "department",
    "business_phone",
    "mobile_phone",
    "home_phone",
    "fax",
    "website",
    "street",
    "postal_code",
    "city",
    "state",
    "comment",
)
