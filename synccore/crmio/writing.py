"""Writing an outside CRM's records in: bulk upsert and delete, checked item by item and written in
one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from typing import Any
from zoneinfo import ZoneInfo

import pycountry
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, connection, models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.dateparse import parse_date

from synccore import mapping
from synccore.crmio import values
from synccore.crmio.base import ENTITIES, Errors, ItemError, UpsertResult
from synccore.crmio.reading import COMPANY_TEXT, CONTACT_TEXT
from synccore.models import (
    Activity,
    ActivityType,
    Attendee,
    AttendeeType,
    Company,
    Contact,
    Country,
    Employee,
    Environment,
    Language,
    SalesGroup,
    TaskStatus,
    custom,
)
from synccore.runtime import service as runtime

# --- writing ------------------------------------------------------------------------------------

# What one item may carry; beyond these a list is refused (the API says which and how many).
MAX_ATTENDEES = 500  # Exchange's default recipient limit for one message
MAX_SALES_GROUPS = 100
MAX_FAVORITES = 500
MAX_EXDATES = 1000
MAX_EXCEPTIONS = 1000


class BatchClash(Exception):
    """Another writer changed the same records meanwhile: nothing of the batch was written."""


def upsert_many(environment: Environment, entity: str, items: list[dict[str, Any]]) -> list[UpsertResult]:
    """Create or update each item by external id; a failing item is reported, not fatal.

    Every item is checked first, in memory, against what a few queries loaded for the whole
    batch (the records by external id, the employees, companies, countries, groups and contacts
    they name); then the valid ones are written together in one transaction with bulk queries,
    so the cost per item is a little CPU, not a few queries. Nothing is written before every
    item has been checked, and an unexpected failure writes none of the batch (BatchClash).
    """
    batch = _Batch(environment, entity, items)
    results = [batch.plan(index, item) for index, item in enumerate(items)]
    try:
        with transaction.atomic():
            batch.write()
    except (IntegrityError, DataError) as exc:
        raise BatchClash(
            "The batch clashes with records written meanwhile; nothing was stored, send it again."
        ) from exc
    _notify_activities(environment, [r.record for r in results if isinstance(r.record, Activity)])
    return results


def upsert(environment: Environment, entity: str, item: dict[str, Any]) -> UpsertResult:
    return upsert_many(environment, entity, [item])[0]


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


# Foreign keys the batch resolved itself: full_clean would check each again with a query.
_RESOLVED = ["environment", "company", "country", "language", "rep", "organizer"]


@dataclass
class _Plan:
    record: models.Model
    created: bool
    sales_groups: list[SalesGroup] | None = None
    favorites: list[Employee] | None = None
    attendees: list[Attendee] | None = None


class _Batch:
    """One bulk-upsert: the lookups its items need, loaded once; the plans of its valid items."""

    def __init__(self, environment: Environment, entity: str, items: list[dict[str, Any]]) -> None:
        self.environment = environment
        self.entity = entity
        self.model = ENTITIES[entity]
        self.now = timezone.now()
        self.plans: list[_Plan] = []
        ids = [item["external_id"] for item in items]
        self.seen: set[str] = set()
        self.records = {
            r.external_id: r
            for r in self.model.all_objects.filter(environment=environment, external_id__in=set(ids))
        }
        in_env = {"environment": environment}
        emails = _emails_named(entity, items)
        self.employees = _first_by(Employee.objects.filter(**in_env), emails, "email") if emails else {}
        self.companies: dict[str, Company] = {}
        self.countries: dict[str, Country] = {}
        self.languages: dict[str, Language] = {}
        self.groups: dict[str, SalesGroup] = {}
        self.contacts_by_email: dict[str, Contact] = {}
        self.contacts: dict[str, Contact] = {}
        self.attendees: dict[int, list[Attendee]] = {}
        self.changed_attendees: set[int] = set()
        self.custom_entity = _CUSTOM_ENTITY.get(entity, "")
        self.custom_types: dict[str, str] = {}
        self.custom_new: dict[str, str] = {}
        if self.custom_entity and any("custom_fields" in i for i in items):
            self.custom_types = custom.CustomField.types(environment.pk, self.custom_entity)
        if entity in ("contacts", "companies"):
            self.countries = _first_by(Country.objects.filter(**in_env), None, "iso_code")
        if entity == "contacts":
            company_ids = {i.get("company_external_id") for i in items} - {None, ""}
            if company_ids:
                self.companies = {
                    c.external_id: c for c in Company.objects.filter(external_id__in=company_ids, **in_env)
                }
            self.languages = _first_by(Language.objects.filter(**in_env), None, "iso_code")
            names = {n for i in items for n in (i.get("sales_groups") or []) if isinstance(n, str)}
            if names:
                for group in SalesGroup.objects.filter(name__in=names, **in_env).order_by("pk"):
                    self.groups.setdefault(group.name, group)
        if entity == "activities":
            addresses = {
                (a.get("email") or "").strip().lower()
                for i in items
                for a in (i.get("attendees") or [])
                if isinstance(a, dict)
            } - {""}
            if addresses:
                self.contacts_by_email = _contacts_by_email(environment, addresses)
            company_ids = {i.get("company_external_id") for i in items} - {None, ""}
            if company_ids:
                self.companies = {
                    c.external_id: c for c in Company.objects.filter(external_id__in=company_ids, **in_env)
                }
            contact_ids = {i.get("contact_external_id") for i in items} - {None, ""}
            if contact_ids:
                self.contacts = {
                    c.external_id: c for c in Contact.objects.filter(external_id__in=contact_ids, **in_env)
                }
            existing = [r.pk for r in self.records.values()]
            for attendee in Attendee.objects.filter(activity_id__in=existing).order_by("pk"):
                self.attendees.setdefault(attendee.activity_id, []).append(attendee)

    # --- checking, in memory -------------------------------------------------------------------

    def plan(self, index: int, item: dict[str, Any]) -> UpsertResult:
        external_id = item["external_id"]
        if external_id in self.seen:
            return UpsertResult(
                external_id,
                "error",
                {"external_id": ["Given more than once in this batch: send one object per record."]},
            )
        self.seen.add(external_id)
        record = self.records.get(external_id)
        created = record is None
        if created:
            record = self.model(environment=self.environment, external_id=external_id)
        plan = _Plan(record, created)
        try:
            _WRITERS[self.entity](self, plan, item)
            record.deleted_at = None  # a tombstone with this id comes back: the CRM re-created it
            record.full_clean(exclude=_RESOLVED, validate_unique=False, validate_constraints=False)
        except ItemError as exc:
            return UpsertResult(external_id, "error", exc.errors)
        except ValidationError as exc:
            return UpsertResult(external_id, "error", values.api_errors(self.entity, exc))
        self.plans.append(plan)
        return UpsertResult(external_id, "created" if created else "updated", record=record)

    def custom_fields(self, record: models.Model, item: dict[str, Any], errors: Errors) -> None:
        """``custom_fields`` merged key by key into the record's (null removes a key), typed."""
        if "custom_fields" not in item:
            return
        known = {**self.custom_types, **self.custom_new}
        merged, new = custom.merge(record.custom_fields, item["custom_fields"], known, errors)
        record.custom_fields = merged
        if "custom_fields" not in errors:
            self.custom_new.update(new)

    def employee(self, email: str | None, name: str | None, errors: Errors) -> Employee | None:
        if not email:
            return None
        # Case-insensitively, as Exchange matches SMTP addresses (K5).
        employee = self.employees.get(email.strip().lower())
        if employee is None and name:
            errors.setdefault(name, []).append(f"No employee with the e-mail address {email}.")
        return employee

    def company(self, external_id: str | None, errors: Errors) -> Company | None:
        if not external_id:
            return None
        company = self.companies.get(external_id)
        if company is None:
            errors.setdefault("company_external_id", []).append(f"No company with external id “{external_id}”.")
        return company

    def country(self, code: str | None, errors: Errors) -> Country | None:
        if not code:
            return None
        code = code.strip().upper()
        known = pycountry.countries.get(alpha_2=code) if len(code) == 2 else None
        if known is None:
            errors.setdefault("country", []).append(f"“{code}” is not an ISO 3166-1 alpha-2 country code.")
            return None
        return self.countries.setdefault(
            code, Country(environment=self.environment, iso_code=code, name=known.name)
        )

    def language(self, code: str | None, errors: Errors) -> Language | None:
        if not code:
            return None
        code = code.strip().lower()
        known = pycountry.languages.get(alpha_2=code) if len(code) == 2 else None
        if known is None:
            errors.setdefault("language", []).append(f"“{code}” is not an ISO 639-1 language code.")
            return None
        return self.languages.setdefault(
            code.upper(), Language(environment=self.environment, iso_code=code, name=known.name)
        )

    def group(self, name: str) -> SalesGroup:
        return self.groups.setdefault(name, SalesGroup(environment=self.environment, name=name))

    # --- writing, in bulk ----------------------------------------------------------------------

    def write(self) -> None:
        if not self.plans:
            return
        self._create_master_data()
        records = [plan.record for plan in self.plans]
        for record in records:
            record.updated_at = self.now
        new = [r for r in records if r.pk is None]
        old = [r for r in records if r.pk is not None]
        if new:
            self.model.all_objects.bulk_create(new, batch_size=500)
        if old:
            _update_rows(self.model, old)
        custom.CustomField.register(self.environment.pk, self.custom_entity, self.custom_new)
        if self.entity == "contacts":
            self._write_memberships()
        if self.entity == "activities":
            self._write_attendees()

    def _create_master_data(self) -> None:
        """Countries, languages and sales groups the valid items named and that are new."""
        wanted: dict[type[models.Model], dict[int, models.Model]] = {}
        for plan in self.plans:
            record = plan.record
            for value in (getattr(record, "country", None), getattr(record, "language", None)):
                if value is not None and value.pk is None:
                    wanted.setdefault(type(value), {})[id(value)] = value
            for group in plan.sales_groups or []:
                if group.pk is None:
                    wanted.setdefault(SalesGroup, {})[id(group)] = group
        for model, rows in wanted.items():
            model.objects.bulk_create(list(rows.values()))

    def _write_memberships(self) -> None:
        for name, attr in (("sales_groups", "salesgroup_id"), ("favorites", "employee_id")):
            through = (Contact.sales_groups if name == "sales_groups" else Contact.favorite_of).through
            plans = [p for p in self.plans if getattr(p, name) is not None]
            if not plans:
                continue
            through.objects.filter(contact_id__in=[p.record.pk for p in plans]).delete()
            rows = {
                (p.record.pk, member.pk): through(contact_id=p.record.pk, **{attr: member.pk})
                for p in plans
                for member in getattr(p, name)
            }
            through.objects.bulk_create(list(rows.values()), batch_size=1000)

    def _write_attendees(self) -> None:
        plans = [p for p in self.plans if p.attendees is not None]
        if not plans:
            return
        kept = [a for p in plans for a in p.attendees]
        gone = [
            a.pk
            for p in plans
            if not p.created
            for a in self.attendees.get(p.record.pk, [])
            if a not in p.attendees
        ]
        if gone:
            Attendee.objects.filter(pk__in=gone).delete()
        # Unchanged attendees stay as they are: the activity's own stamp moves for the API.
        old = [a for a in kept if a.pk in self.changed_attendees]
        for attendee in old:
            attendee.updated_at = self.now
        if old:
            _update_rows(Attendee, old)
        new = [a for a in kept if a.pk is None]
        if new:
            Attendee.objects.bulk_create(new, batch_size=1000)


def _update_rows(model: type[models.Model], rows: list[models.Model]) -> None:
    """One UPDATE by primary key, executed for every row in one round (executemany). Django's
    bulk_update builds a CASE per field and row, which costs more CPU than the whole batch."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key and f.name not in _NOT_FROM_THE_API]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"
    params = []
    for row in rows:
        row._prepare_related_fields_for_save(operation_name="bulk_update", fields=fields)
        params.append([f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields] + [row.pk])
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


# Fields a bulk update leaves as they are in the database: keys, and what only the synchronizer
# sets (a pass may set them while the batch is being checked).
_NOT_FROM_THE_API = {"environment", "external_id", "created_at", "activity", "meeting_uid", "is_stub", "meeting_organizer"}


def _emails_named(entity: str, items: list[dict[str, Any]]) -> set[str]:
    """The addresses of employees the items may name (rep, favorites, organizer, attendees)."""
    found: set[Any] = set()
    for item in items:
        if entity == "contacts":
            found.add(item.get("rep_email"))
            found.update(item.get("favorite_of") or [])
        elif entity == "activities":
            found.add(item.get("organizer_email"))
            found.add(item.get("responsible_email"))
            found.update(a.get("email") for a in item.get("attendees") or [] if isinstance(a, dict))
    return {e.strip().lower() for e in found if isinstance(e, str) and e.strip()}


def _first_by(records: models.QuerySet, keys: set[str] | None, field_name: str) -> dict[str, Any]:
    """Records by a case-insensitive field (the first in the model's order wins, as `.first()`
    would pick), only those with one of ``keys`` when given."""
    records = records.annotate(_key=Lower(field_name))
    if keys is not None:
        records = records.filter(_key__in=keys)
    ordering = [*(records.model._meta.ordering or []), "pk"]
    found: dict[str, Any] = {}
    for record in records.order_by(*ordering):
        key = record._key.upper() if field_name == "iso_code" else record._key
        found.setdefault(key, record)
    return found


def _contacts_by_email(environment: Environment, addresses: set[str]) -> dict[str, Contact]:
    contacts = Contact.objects.filter(environment=environment).annotate(
        _e1=Lower("email1"), _e2=Lower("email2"), _e3=Lower("email3")
    )
    found: dict[str, Contact] = {}
    matching = contacts.filter(Q(_e1__in=addresses) | Q(_e2__in=addresses) | Q(_e3__in=addresses))
    for contact in matching.order_by(*(Contact._meta.ordering or []), "pk"):
        for address in (contact._e1, contact._e2, contact._e3):
            if address in addresses:
                found.setdefault(address, contact)
    return found


def _set_plain(record: models.Model, item: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if name in item:
            value = item[name]
            setattr(record, name, "" if value is None else value)


def _bounded(item: dict[str, Any], name: str, limit: int, errors: Errors) -> list[Any]:
    values = list(item.get(name) or [])
    if len(values) > limit:
        errors.setdefault(name, []).append(
            f"At most {limit:,} per record ({len(values):,} given): send the others in a later update."
        )
        return []
    return values


def _write_company(batch: _Batch, plan: _Plan, item) -> None:
    company = plan.record
    _set_plain(company, item, ("name", "division", "synchronize", *COMPANY_TEXT))
    errors: Errors = {}
    batch.custom_fields(company, item, errors)
    if "country" in item:
        company.country = batch.country(item["country"], errors)
    if errors:
        raise ItemError(errors)


def _write_employee(batch: _Batch, plan: _Plan, item) -> None:
    _set_plain(plan.record, item, ("name", "email", "username"))


def _write_contact(batch: _Batch, plan: _Plan, item) -> None:
    contact = plan.record
    errors: Errors = {}
    _set_plain(contact, item, (*CONTACT_TEXT, "synchronize"))
    batch.custom_fields(contact, item, errors)
    if "emails" in item:
        emails = list(item["emails"] or [])
        if len(emails) > 3:
            errors["emails"] = ["A contact has at most 3 e-mail addresses."]
        emails = [*emails, "", "", ""][:3]
        contact.email1, contact.email2, contact.email3 = (e.strip() for e in emails)
    if "company_external_id" in item:
        contact.company = batch.company(item["company_external_id"], errors)
    if "country" in item:
        contact.country = batch.country(item["country"], errors)
    if "language" in item:
        contact.language = batch.language(item["language"], errors)
    if "rep_email" in item:
        contact.rep = batch.employee(item["rep_email"], "rep_email", errors)
    if "favorite_of" in item:
        favorites = [
            batch.employee(e, "favorite_of", errors)
            for e in _bounded(item, "favorite_of", MAX_FAVORITES, errors)
        ]
        plan.favorites = [e for e in favorites if e is not None]
    if "sales_groups" in item:
        names = _bounded(item, "sales_groups", MAX_SALES_GROUPS, errors)
        plan.sales_groups = [batch.group(name) for name in dict.fromkeys(names)]
    if errors:
        raise ItemError(errors)


def _write_activity(batch: _Batch, plan: _Plan, item) -> None:
    activity = plan.record
    errors: Errors = {}
    _set_plain(
        activity,
        item,
        ("type", "subject", "all_day", "location", "comment", "private", "synchronize", "created_by_erp"),
    )
    batch.custom_fields(activity, item, errors)
    if "reminder_minutes" in item:
        activity.reminder_minutes = item["reminder_minutes"]
    if "time_zone" in item:
        activity.time_zone = item["time_zone"] or "UTC"
    zone = values.parse_zone(activity.time_zone, errors)
    if zone is not None:
        for name in ("start", "end"):
            if name in item:
                setattr(activity, name, values.parse_moment(item[name], activity.all_day, zone, name, errors))
            elif "all_day" in item and getattr(activity, name) and activity.all_day:
                # Switching to all-day keeps the day.
                setattr(activity, name, values.midnight(getattr(activity, name).astimezone(zone).date(), zone))
    if "recurrence" in item:
        activity.recurrence = values.parse_recurrence(item["recurrence"], errors)
    if "exdates" in item:
        exdates = _bounded(item, "exdates", MAX_EXDATES, errors)
        activity.recurrence_exdates = [values.iso_moment(v, "exdates", errors) for v in exdates]
    if "exceptions" in item:
        exceptions = _bounded(item, "exceptions", MAX_EXCEPTIONS, errors)
        activity.recurrence_exceptions = [values.parse_exception(v, errors) for v in exceptions]
    if "organizer_email" in item:
        email = (item["organizer_email"] or "").strip()
        activity.organizer = batch.employee(email, None, errors) if email else None
        activity.organizer_email = "" if activity.organizer else email
    if plan.created and "synchronize" not in item:
        activity.synchronize = True
    _write_task_fields(batch, activity, item, zone, errors)
    if activity.start is None or activity.end is None:
        for name in ("start", "end"):
            if getattr(activity, name) is None and name not in errors:
                errors[name] = ["This field is required."]
    if "attendees" in item:
        attendees = _bounded(item, "attendees", MAX_ATTENDEES, errors)
        plan.attendees = _plan_attendees(batch, plan, attendees, errors)
    if errors:
        raise ItemError(errors)


def _write_task_fields(batch: _Batch, activity: Activity, item, zone: ZoneInfo | None, errors: Errors) -> None:
    """A task's own fields; a task needs no start or end (they default to its due day, or now)."""
    _set_plain(activity, item, ("status", "priority"))
    if "due" in item:
        activity.due = _due(item["due"], zone, errors)
    if "completed_at" in item:
        activity.completed_at = values.parse_aware(item["completed_at"], "completed_at", errors) if item["completed_at"] else None
    if activity.status == TaskStatus.COMPLETED and activity.completed_at is None:
        activity.completed_at = batch.now
    elif activity.status == TaskStatus.OPEN and "status" in item:
        activity.completed_at = None
    if "responsible_email" in item:
        email = (item["responsible_email"] or "").strip()
        activity.responsible = batch.employee(email, "responsible_email", errors) if email else None
    if "contact_external_id" in item:
        activity.contact = _by_external_id(batch.contacts, item["contact_external_id"], "contact", errors)
    if "company_external_id" in item:
        activity.company = _by_external_id(batch.companies, item["company_external_id"], "company", errors)
    if activity.type == ActivityType.TASK and zone is not None:
        if activity.start is None and "start" not in item:
            activity.start = values.midnight(activity.due, zone) if activity.due else batch.now
        if activity.end is None and "end" not in item:
            activity.end = activity.start


def _due(value: Any, zone: ZoneInfo | None, errors: Errors) -> date | None:
    """A due day: a date, or a date-time taken as its day in the activity's zone."""
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        return None
    if len(text) == 10:
        day = parse_date(text)
        if day is not None:
            return day
    moment = values.parse_aware(text, "due", errors)
    return moment.astimezone(zone or UTC).date() if moment else None


def _by_external_id(records: dict[str, Any], external_id: Any, what: str, errors: Errors) -> Any:
    if not external_id:
        return None
    found = records.get(external_id)
    if found is None:
        errors.setdefault(f"{what}_external_id", []).append(f"No {what} with external id “{external_id}”.")
    return found


_CUSTOM_ENTITY = {"companies": mapping.COMPANY, "contacts": mapping.CONTACT, "activities": mapping.ACTIVITY}

_WRITERS = {
    "companies": _write_company,
    "contacts": _write_contact,
    "employees": _write_employee,
    "activities": _write_activity,
}


def _plan_attendees(batch: _Batch, plan: _Plan, attendees: list[dict[str, Any]], errors: Errors) -> list[Attendee]:
    """The activity's attendees as they are to be (replaced as a set), checked in memory."""
    activity = plan.record
    current = [] if plan.created else batch.attendees.get(activity.pk, [])
    existing = {a.email.lower(): a for a in current if a.email}
    planned: list[Attendee] = []
    seen: set[str] = set()
    for index, data in enumerate(attendees):
        email = (data.get("email") or "").strip()
        key = email.lower()
        if key in seen:
            errors.setdefault("attendees", []).append(f"{email} is listed twice.")
            continue
        seen.add(key)
        attendee = existing.get(key) or Attendee(activity=activity)
        before = _values(attendee)
        attendee.email = email
        attendee.name = data.get("name") or attendee.name
        for flag in ("invite", "synchronized", "sent_to_synchronizer"):
            if flag in data:
                setattr(attendee, flag, data[flag])
        attendee.employee = batch.employee(email, None, {}) if email else None
        attendee.contact = batch.contacts_by_email.get(key) if email else None
        attendee.type = data.get("type") or _attendee_type(attendee)
        try:
            attendee.full_clean(
                exclude=["activity", "employee", "contact"], validate_unique=False, validate_constraints=False
            )
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors.setdefault("attendees", []).extend(f"[{index}] {name}: {m}" for m in messages)
            continue
        if attendee.pk is not None and _values(attendee) != before:
            batch.changed_attendees.add(attendee.pk)
        planned.append(attendee)
    return planned


def _values(attendee: Attendee) -> tuple[Any, ...]:
    return tuple(getattr(attendee, f.attname) for f in Attendee._meta.concrete_fields)


def _attendee_type(attendee: Attendee) -> str:
    if attendee.employee_id or attendee.employee is not None:
        return AttendeeType.EMPLOYEE
    if attendee.contact_id or attendee.contact is not None:
        return AttendeeType.CONTACT
    return AttendeeType.OTHER
