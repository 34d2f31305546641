"""CRM integration I/O: an outside CRM's objects in and out of the CRM models.

The API hands this module plain dictionaries (already checked for shape) keyed by
``external_id``; the rules of translation live here: ISO codes to countries and languages,
e-mail addresses to employees and contacts, all-day activities as dates (end exclusive),
recurrences Exchange can represent, attendees replaced as a set. Each item is written in its
own savepoint, so one bad item never stops the others.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, models, transaction
from django.db.models import F, Max, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from synccore.mailbox import recurrence
from synccore.models import (
    Activity,
    Attendee,
    AttendeeType,
    Company,
    Contact,
    Country,
    Employee,
    Environment,
    Language,
    SalesGroup,
)
from synccore.runtime import service as runtime

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
        records = records.select_related("organizer").prefetch_related("attendees")
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
        updated_at, pk = to_utc(datetime.fromisoformat(stamp)), int(pk)
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
    }


def _export_employee(employee: Employee) -> dict[str, Any]:
    return {
        **_common(employee),
        "name": employee.name,
        "email": employee.email,
        "username": employee.username,
    }


def _export_activity(activity: Activity) -> dict[str, Any]:
    zone = _zone_or_utc(activity.time_zone)
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
        "private": activity.private,
        "synchronize": activity.synchronize,
        "created_by_erp": activity.created_by_erp,
        "organizer_email": (activity.organizer.email if activity.organizer else "")
        or activity.organizer_email,
        "recurrence": activity.recurrence or None,
        "exdates": list(activity.recurrence_exdates or []),
        "exceptions": list(activity.recurrence_exceptions or []),
        "reminder_minutes": activity.reminder_minutes,
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


# --- writing ------------------------------------------------------------------------------------


def upsert_many(environment: Environment, entity: str, items: list[dict[str, Any]]) -> list[UpsertResult]:
    """Create or update each item by external id; a failing item is reported, not fatal.

    The batch is one transaction: an unexpected failure writes none of it, never half."""
    with transaction.atomic():
        results = [upsert(environment, entity, item) for item in items]
    _notify_activities(environment, [r.record for r in results if isinstance(r.record, Activity)])
    return results


def upsert(environment: Environment, entity: str, item: dict[str, Any]) -> UpsertResult:
    external_id = item["external_id"]
    model = ENTITIES[entity]
    try:
        with transaction.atomic():
            # A tombstone with this id comes back to life: the CRM re-created the record.
            record = model.all_objects.filter(environment=environment, external_id=external_id).first()
            created = record is None
            if created:
                record = model(environment=environment, external_id=external_id)
            _WRITERS[entity](environment, record, item, created)
    except ItemError as exc:
        return UpsertResult(external_id, "error", exc.errors)
    except ValidationError as exc:
        return UpsertResult(external_id, "error", _api_errors(entity, exc))
    except (IntegrityError, DataError):
        return UpsertResult(
            external_id, "error", {"non_field_errors": ["The record clashes with another one."]}
        )
    return UpsertResult(external_id, "created" if created else "updated", record=record)


def delete(environment: Environment, entity: str, external_id: str) -> None:
    """Delete through the model, so a record still linked in mailboxes becomes a tombstone."""
    record = ENTITIES[entity].objects.get(environment=environment, external_id=external_id)
    record.delete()
    if isinstance(record, Activity):
        _notify_activities(environment, [record])


def _notify_activities(environment: Environment, activities: list[Activity]) -> None:
    ids = [a.pk for a in activities if a.pk]
    if ids:
        transaction.on_commit(lambda: runtime.notify_crm_change(environment.pk, ids))


def _save(record: models.Model) -> None:
    record.deleted_at = None
    record.full_clean(exclude=["environment"])
    record.save()


def _set_plain(record: models.Model, item: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if name in item:
            value = item[name]
            setattr(record, name, "" if value is None else value)


def _write_company(environment, company: Company, item, created: bool) -> None:
    _set_plain(company, item, ("name", "division", "synchronize", *COMPANY_TEXT))
    errors: Errors = {}
    if "country" in item:
        company.country = _country(environment, item["country"], errors)
    if errors:
        raise ItemError(errors)
    _save(company)


def _write_employee(environment, employee: Employee, item, created: bool) -> None:
    _set_plain(employee, item, ("name", "email", "username"))
    _save(employee)


def _write_contact(environment, contact: Contact, item, created: bool) -> None:
    errors: Errors = {}
    _set_plain(contact, item, (*CONTACT_TEXT, "synchronize"))
    if "emails" in item:
        emails = list(item["emails"] or [])
        if len(emails) > 3:
            errors["emails"] = ["A contact has at most 3 e-mail addresses."]
        emails = [*emails, "", "", ""][:3]
        contact.email1, contact.email2, contact.email3 = (e.strip() for e in emails)
    if "company_external_id" in item:
        contact.company = _by_external_id(
            environment, Company, item["company_external_id"], "company", errors
        )
    if "country" in item:
        contact.country = _country(environment, item["country"], errors)
    if "language" in item:
        contact.language = _language(environment, item["language"], errors)
    if "rep_email" in item:
        contact.rep = _employee_by_email(environment, item["rep_email"], "rep_email", errors)
    favorites = None
    if "favorite_of" in item:
        favorites = [
            _employee_by_email(environment, e, "favorite_of", errors) for e in item["favorite_of"] or []
        ]
    if errors:
        raise ItemError(errors)
    _save(contact)
    if "sales_groups" in item:
        contact.sales_groups.set([_sales_group(environment, name) for name in item["sales_groups"] or []])
    if favorites is not None:
        contact.favorite_of.set(favorites)
    if "sales_groups" in item or favorites is not None:
        # Memberships are part of what the synchronizer selects by: the row's stamp moves too.
        Contact.all_objects.filter(pk=contact.pk).update(updated_at=timezone.now())
        contact.refresh_from_db(fields=["updated_at"])


def _write_activity(environment, activity: Activity, item, created: bool) -> None:
    errors: Errors = {}
    _set_plain(
        activity,
        item,
        ("type", "subject", "all_day", "location", "comment", "private", "synchronize", "created_by_erp"),
    )
    if "reminder_minutes" in item:
        activity.reminder_minutes = item["reminder_minutes"]
    if "time_zone" in item:
        activity.time_zone = item["time_zone"] or "UTC"
    zone = _zone(activity.time_zone, errors)
    if zone is not None:
        for name in ("start", "end"):
            if name in item:
                setattr(activity, name, _moment(item[name], activity.all_day, zone, name, errors))
            elif "all_day" in item and getattr(activity, name) and activity.all_day:
                # Switching to all-day keeps the day.
                setattr(activity, name, _midnight(getattr(activity, name).astimezone(zone).date(), zone))
    if "recurrence" in item:
        activity.recurrence = _recurrence(item["recurrence"], errors)
    if "exdates" in item:
        activity.recurrence_exdates = [_iso_moment(v, "exdates", errors) for v in item["exdates"] or []]
    if "exceptions" in item:
        activity.recurrence_exceptions = [_exception(v, errors) for v in item["exceptions"] or []]
    if "organizer_email" in item:
        email = (item["organizer_email"] or "").strip()
        activity.organizer = _employee_by_email(environment, email, None, errors) if email else None
        activity.organizer_email = "" if activity.organizer else email
    if created and "synchronize" not in item:
        activity.synchronize = True
    if activity.start is None or activity.end is None:
        for name in ("start", "end"):
            if getattr(activity, name) is None and name not in errors:
                errors[name] = ["This field is required."]
    if errors:
        raise ItemError(errors)
    _save(activity)
    if "attendees" in item:
        _replace_attendees(environment, activity, item["attendees"] or [])
        Activity.all_objects.filter(pk=activity.pk).update(updated_at=timezone.now())
        activity.refresh_from_db(fields=["updated_at"])


_WRITERS = {
    "companies": _write_company,
    "contacts": _write_contact,
    "employees": _write_employee,
    "activities": _write_activity,
}


def _replace_attendees(environment, activity: Activity, attendees: list[dict[str, Any]]) -> None:
    errors: Errors = {}
    existing = {a.email.lower(): a for a in activity.attendees.all() if a.email}
    keep: set[int] = set()
    seen: set[str] = set()
    for index, data in enumerate(attendees):
        email = (data.get("email") or "").strip()
        key = email.lower()
        if key in seen:
            errors.setdefault("attendees", []).append(f"{email} is listed twice.")
            continue
        seen.add(key)
        attendee = existing.get(key) or Attendee(activity=activity)
        attendee.email = email
        attendee.name = data.get("name") or attendee.name
        for flag in ("invite", "synchronized", "sent_to_synchronizer"):
            if flag in data:
                setattr(attendee, flag, data[flag])
        attendee.employee = _employee_by_email(environment, email, None, {}) if email else None
        attendee.contact = _contact_by_email(environment, email) if email else None
        attendee.type = data.get("type") or _attendee_type(attendee)
        try:
            attendee.full_clean(exclude=["activity"])
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors.setdefault("attendees", []).extend(f"[{index}] {name}: {m}" for m in messages)
            continue
        attendee.save()
        keep.add(attendee.pk)
    if errors:
        raise ItemError(errors)
    activity.attendees.exclude(pk__in=keep).delete()


def _attendee_type(attendee: Attendee) -> str:
    if attendee.employee_id:
        return AttendeeType.EMPLOYEE
    if attendee.contact_id:
        return AttendeeType.CONTACT
    return AttendeeType.OTHER


# --- lookups --------------------------------------------------------------------------------------


def _by_external_id(environment, model, external_id, name: str, errors: Errors):
    if not external_id:
        return None
    record = model.objects.filter(environment=environment, external_id=external_id).first()
    if record is None:
        errors.setdefault(f"{name}_external_id", []).append(f"No {name} with external id “{external_id}”.")
    return record


def _employee_by_email(environment, email: str | None, name: str | None, errors: Errors) -> Employee | None:
    if not email:
        return None
    # Case-insensitively, as Exchange matches SMTP addresses (K5).
    employee = Employee.objects.filter(environment=environment, email__iexact=email.strip()).first()
    if employee is None and name:
        errors.setdefault(name, []).append(f"No employee with the e-mail address {email}.")
    return employee


def _contact_by_email(environment, email: str) -> Contact | None:
    return Contact.objects.filter(
        Q(email1__iexact=email) | Q(email2__iexact=email) | Q(email3__iexact=email), environment=environment
    ).first()


def _country(environment, code: str | None, errors: Errors) -> Country | None:
    if not code:
        return None
    code = code.strip().upper()
    known = pycountry.countries.get(alpha_2=code) if len(code) == 2 else None
    if known is None:
        errors.setdefault("country", []).append(f"“{code}” is not an ISO 3166-1 alpha-2 country code.")
        return None
    country = Country.objects.filter(environment=environment, iso_code__iexact=code).first()
    return country or Country.objects.create(environment=environment, iso_code=code, name=known.name)


def _language(environment, code: str | None, errors: Errors) -> Language | None:
    if not code:
        return None
    code = code.strip().lower()
    known = pycountry.languages.get(alpha_2=code) if len(code) == 2 else None
    if known is None:
        errors.setdefault("language", []).append(f"“{code}” is not an ISO 639-1 language code.")
        return None
    language = Language.objects.filter(environment=environment, iso_code__iexact=code).first()
    return language or Language.objects.create(environment=environment, iso_code=code, name=known.name)


def _sales_group(environment, name: str) -> SalesGroup:
    group = SalesGroup.objects.filter(environment=environment, name=name).first()
    return group or SalesGroup.objects.create(environment=environment, name=name)


# --- times and recurrence -------------------------------------------------------------------------


def _zone_or_utc(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _zone(name: str, errors: Errors) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        errors.setdefault("time_zone", []).append(
            f"“{name}” is not a known IANA time zone (e.g. Europe/Amsterdam)."
        )
        return None


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _moment(value: str, all_day: bool, zone: ZoneInfo, name: str, errors: Errors) -> datetime | None:
    value = (value or "").strip()
    if all_day:
        day = parse_date(value) if len(value) == 10 else None
        if day is None:
            errors.setdefault(name, []).append(
                "An all-day activity takes dates (YYYY-MM-DD); the end is exclusive."
            )
            return None
        return _midnight(day, zone)
    return _aware(value, name, errors)


def _aware(value: str, name: str, errors: Errors) -> datetime | None:
    try:
        moment = parse_datetime(value or "")
    except ValueError:
        moment = None
    if moment is None:
        errors.setdefault(name, []).append("Give an ISO 8601 date and time with its UTC offset.")
        return None
    if timezone.is_naive(moment):
        errors.setdefault(name, []).append("Give the UTC offset (e.g. 2026-05-04T09:00:00+02:00).")
        return None
    try:
        return to_utc(moment)
    except ValueError:
        errors.setdefault(name, []).append("This moment is out of range.")
        return None


def to_utc(moment: datetime) -> datetime:
    """In UTC: databases refuse some offsets ISO 8601 allows (PostgreSQL: beyond ±15:59).

    ValueError when the moment is out of range once converted (year 1 or 9999 at the edge).
    """
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("out of range") from exc


def _iso_moment(value: Any, name: str, errors: Errors) -> str:
    if not isinstance(value, str):
        errors.setdefault(name, []).append("Give ISO 8601 date-times with their UTC offset.")
        return ""
    moment = _aware(value, name, errors)
    return moment.isoformat() if moment else ""


def _exception(value: Any, errors: Errors) -> dict[str, Any]:
    if not isinstance(value, dict) or "original_start" not in value:
        errors.setdefault("exceptions", []).append(
            "Each exception is an object {original_start, start, end, subject, location}."
        )
        return {}
    result = {"original_start": _iso_moment(value["original_start"], "exceptions", errors)}
    for key in ("start", "end"):
        if value.get(key):
            result[key] = _iso_moment(value[key], "exceptions", errors)
    for key in ("subject", "location"):
        if key in value:
            result[key] = "" if value[key] is None else str(value[key])
    return result


def _recurrence(value: str | None, errors: Errors) -> str:
    rule = (value or "").strip()
    if rule.upper().startswith("RRULE:"):
        rule = rule[6:]
    if not rule:
        return ""
    problem = recurrence_problem(rule)
    if problem:
        errors.setdefault("recurrence", []).append(problem)
    return rule


_WEEKDAYS = {"MO", "TU", "WE", "TH", "FR", "SA", "SU"}


def recurrence_problem(rule: str) -> str:
    """Why Exchange cannot represent this RRULE, or '' when it can: the reasons people understand
    first, then the backends' own rule (``mailbox.recurrence``), so nothing accepted here is
    refused when written."""
    problem = _recurrence_explained(rule)
    if problem:
        return problem
    try:
        recurrence.parse_rrule(rule, date(2026, 1, 1))
    except recurrence.Unrepresentable as exc:
        return f"{exc}."
    return ""


def _recurrence_explained(rule: str) -> str:
    """Why Exchange cannot represent this RRULE, in words, for the common cases.

    Exchange knows daily, weekly (days of the week), monthly and yearly patterns (a day of the
    month, or the first…fourth or last weekday), ending never, on a date or after a count.
    """
    try:
        recurrence.check_syntax(rule)
        parts = dict(part.split("=", 1) for part in rule.upper().split(";") if part)
    except (ValueError, TypeError) as exc:
        return f"Not a valid RFC 5545 RRULE: {exc}"
    freq = parts.get("FREQ")
    unsupported = sorted(
        {"BYHOUR", "BYMINUTE", "BYSECOND", "BYYEARDAY", "BYWEEKNO", "BYEASTER"} & parts.keys()
    )
    if freq not in {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}:
        return f"Exchange cannot repeat an event {str(freq).lower()}: use DAILY, WEEKLY, MONTHLY or YEARLY."
    if unsupported:
        return f"Exchange cannot represent {', '.join(unsupported)} in a recurrence."
    days = [d for d in parts.get("BYDAY", "").split(",") if d]
    plain_days = all(d in _WEEKDAYS for d in days)
    month_days = [d for d in parts.get("BYMONTHDAY", "").split(",") if d]
    months = [m for m in parts.get("BYMONTH", "").split(",") if m]
    setpos = [p for p in parts.get("BYSETPOS", "").split(",") if p]
    if freq in {"DAILY", "WEEKLY"}:
        if month_days or months or setpos or not plain_days:
            return "Exchange repeats daily and weekly events only on plain days of the week."
        return ""
    if freq == "YEARLY" and len(months) > 1:
        return "Exchange repeats a yearly event in one month only."
    if freq == "MONTHLY" and months:
        return "Exchange cannot limit a monthly event to some months."
    if month_days and days:
        return "Exchange repeats on a day of the month or on a weekday, not both."
    if len(month_days) > 1 or any(d not in {str(n) for n in range(1, 32)} | {"-1"} for d in month_days):
        return "Exchange repeats on one day of the month (1–31 or the last)."
    if days:
        return _weekday_problem(days, setpos)
    if setpos:
        return "BYSETPOS needs BYDAY for Exchange."
    return ""


def _weekday_problem(days: list[str], setpos: list[str]) -> str:
    ordinals = {"1", "2", "3", "4", "-1"}
    if setpos:
        if len(setpos) > 1 or setpos[0] not in ordinals or not all(d in _WEEKDAYS for d in days):
            return "Exchange repeats on the first, second, third, fourth or last of some weekdays only."
        return ""
    if len(days) != 1 or days[0][-2:] not in _WEEKDAYS or days[0][:-2] not in ordinals:
        return "Exchange repeats monthly or yearly on one weekday with its position (e.g. 2TU, -1FR)."
    return ""


# --- error names ------------------------------------------------------------------------------------

_API_NAMES = {
    "contacts": {
        "email1": "emails",
        "email2": "emails",
        "email3": "emails",
        "company": "company_external_id",
        "rep": "rep_email",
    },
    "activities": {
        "recurrence_exdates": "exdates",
        "recurrence_exceptions": "exceptions",
        "organizer": "organizer_email",
    },
}


def _api_errors(entity: str, exc: ValidationError) -> Errors:
    """Model validation messages under the API's field names."""
    names = _API_NAMES.get(entity, {})
    errors: Errors = {}
    for key, messages in exc.message_dict.items():
        name = "non_field_errors" if key == "__all__" else names.get(key, key)
        errors.setdefault(name, []).extend(messages)
    return errors
