"""The CRM side: companies, contacts, employees, sales groups, master data and activities.

Every CRM record belongs to one environment, has ``updated_at`` and a stable ``external_id``
(so an outside CRM can upsert it), and is never deleted outright while the synchronizer still
has items linked to it in a mailbox: it becomes a tombstone (``deleted_at`` set) until a pass
has removed the remote items, then it is purged.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import pycountry
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models, transaction
from django.db.models import DEFERRED, Q
from django.db.models.functions import Lower
from django.utils import timezone

from synccore.mailbox import recurrence


def new_external_id() -> str:
    return uuid.uuid4().hex


class TombstoneQuerySet(models.QuerySet):
    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete the unlinked rows; turn the linked ones into tombstones.

        The admin's bulk delete and the API go through here, so link rows are never cascaded
        away before the synchronizer has removed the remote items.
        """
        total, per_model = 0, {}
        for record in self:
            deleted, detail = record.delete()
            total += deleted
            for label, count in detail.items():
                per_model[label] = per_model.get(label, 0) + count
        return total, per_model

    def live(self) -> TombstoneQuerySet:
        return self.filter(deleted_at__isnull=True)

    def tombstones(self) -> TombstoneQuerySet:
        return self.filter(deleted_at__isnull=False)


class LiveManager(models.Manager.from_queryset(TombstoneQuerySet)):
    """The default manager: tombstones are invisible to ordinary code."""

    def get_queryset(self) -> TombstoneQuerySet:
        return super().get_queryset().filter(deleted_at__isnull=True)


AllManager = models.Manager.from_queryset(TombstoneQuerySet)


class CrmRecord(models.Model):
    environment = models.ForeignKey("synccore.Environment", on_delete=models.CASCADE, related_name="+")
    external_id = models.CharField(
        max_length=100, default=new_external_id, help_text="The record's id in the CRM that feeds this one."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text=(
            "Set when the record was deleted in the CRM while items were still linked in a mailbox, "
            "or deleted by the synchronizer because it was deleted in Exchange."
        ),
    )

    objects = LiveManager()
    all_objects = AllManager()

    class Meta:
        abstract = True
        base_manager_name = "all_objects"

    @classmethod
    def from_db(cls, db: str | None, field_names: Collection[str], values: Sequence[Any]) -> CrmRecord:
        """A row some of whose columns were left unread (``defer``), placed by a set of the names
        read: Django looks each field up in their list, which costs more than the columns saved."""
        fields = cls._meta.concrete_fields
        if len(values) != len(fields):
            read, loaded = set(field_names), iter(values)
            values = [next(loaded) if f.attname in read else DEFERRED for f in fields]
        return super().from_db(db, field_names, values)

    @property
    def is_tombstone(self) -> bool:
        return self.deleted_at is not None

    def has_links(self) -> bool:
        """Whether the synchronizer still has items of this record in some mailbox."""
        return False

    def delete(self, using: Any = None, keep_parents: bool = False) -> tuple[int, dict[str, int]]:
        if self.has_links():
            self.deleted_at = timezone.now()
            type(self).all_objects.filter(pk=self.pk).update(
                deleted_at=self.deleted_at, updated_at=self.deleted_at
            )
            return 0, {}
        return super().delete(using=using, keep_parents=keep_parents)

    def retire(self) -> None:
        """Deleted by the synchronizer (K9: deleted in Exchange). Kept as a tombstone so an outside
        CRM reading changes with ``include_deleted`` learns of it; ``purge_retired`` removes it
        after the retention age."""
        now = timezone.now()
        type(self).all_objects.filter(pk=self.pk).update(deleted_at=now, updated_at=now)
        self.deleted_at = self.updated_at = now

    def purge(self) -> None:
        """Remove a tombstone for good, once its remote items are gone."""
        with transaction.atomic():
            super().delete()


def _unique_external_id(model: str) -> models.UniqueConstraint:
    return models.UniqueConstraint(
        fields=["environment", "external_id"],
        name=f"{model}_unique_external_id",
        violation_error_message="A record with this external id already exists in this environment.",
    )


class Country(CrmRecord):
    name = models.CharField(max_length=100)
    iso_code = models.CharField(
        "ISO code",
        max_length=2,
        blank=True,
        help_text="ISO 3166-1 alpha-2, e.g. NL. Needed for contact sync.",
    )

    class Meta:
        verbose_name_plural = "countries"
        ordering = ["name"]
        constraints = [_unique_external_id("country")]

    def __str__(self) -> str:
        return f"{self.name} ({self.iso_code or 'no ISO code'})"

    def clean(self) -> None:
        if self.iso_code:
            self.iso_code = self.iso_code.upper()
            if pycountry.countries.get(alpha_2=self.iso_code) is None:
                raise ValidationError(
                    {"iso_code": f"“{self.iso_code}” is not an ISO 3166-1 alpha-2 country code."}
                )


class Language(CrmRecord):
    name = models.CharField(max_length=100)
    iso_code = models.CharField(
        "ISO code", max_length=2, blank=True, help_text="ISO 639-1, e.g. nl. Needed for contact sync."
    )

    class Meta:
        ordering = ["name"]
        constraints = [_unique_external_id("language")]

    def __str__(self) -> str:
        return f"{self.name} ({self.iso_code or 'no ISO code'})"

    def clean(self) -> None:
        if self.iso_code:
            self.iso_code = self.iso_code.lower()
            if pycountry.languages.get(alpha_2=self.iso_code) is None:
                raise ValidationError({"iso_code": f"“{self.iso_code}” is not an ISO 639-1 language code."})


class Employee(CrmRecord):
    name = models.CharField(max_length=200)
    email = models.EmailField("e-mail", max_length=254, blank=True)
    username = models.CharField(
        max_length=150, blank=True, help_text="The employee's CRM user; needed to synchronize as a user."
    )

    class Meta:
        ordering = ["name"]
        constraints = [_unique_external_id("employee")]
        indexes = [models.Index(Lower("email"), name="employee_email_ci")]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name


class SalesGroup(CrmRecord):
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(Employee, blank=True, related_name="sales_groups")

    class Meta:
        ordering = ["name"]
        constraints = [_unique_external_id("salesgroup")]

    def __str__(self) -> str:
        return self.name


class AddressFields(models.Model):
    street = models.CharField(max_length=200, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField("state or province", max_length=100, blank=True)
    country = models.ForeignKey(Country, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        abstract = True


class Company(CrmRecord, AddressFields):
    name = models.CharField(max_length=200)
    division = models.CharField(max_length=100, blank=True)
    email = models.EmailField("e-mail", max_length=254, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    fax = models.CharField(max_length=50, blank=True)
    website = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    custom_fields = models.JSONField(
        default=dict, blank=True, help_text="Custom CRM fields: key → text, number or date (YYYY-MM-DD)."
    )
    synchronize = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["name", "division"]
        constraints = [_unique_external_id("company")]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """“Name - Division”, as the CRM shows a company."""
        return f"{self.name} - {self.division}" if self.division else self.name

    def has_links(self) -> bool:
        return self.links.exists()


class Contact(CrmRecord, AddressFields):
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts"
    )
    first_name = models.CharField(max_length=100, blank=True)
    middle_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    job_title = models.CharField(max_length=100, blank=True)
    department = models.CharField(max_length=100, blank=True)
    email1 = models.CharField("e-mail 1", max_length=254, blank=True)
    email2 = models.CharField("e-mail 2", max_length=254, blank=True)
    email3 = models.CharField("e-mail 3", max_length=254, blank=True)
    business_phone = models.CharField(max_length=50, blank=True)
    mobile_phone = models.CharField(max_length=50, blank=True)
    home_phone = models.CharField(max_length=50, blank=True)
    fax = models.CharField(max_length=50, blank=True)
    website = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    custom_fields = models.JSONField(
        default=dict, blank=True, help_text="Custom CRM fields: key → text, number or date (YYYY-MM-DD)."
    )
    language = models.ForeignKey(Language, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    synchronize = models.BooleanField(
        default=True, help_text="Only contacts with Synchronize on go to Exchange."
    )
    rep = models.ForeignKey(
        Employee, null=True, blank=True, on_delete=models.SET_NULL, related_name="represented_contacts"
    )
    sales_groups = models.ManyToManyField(SalesGroup, blank=True, related_name="contacts")
    favorite_of = models.ManyToManyField(Employee, blank=True, related_name="favorite_contacts")

    class Meta:
        ordering = ["last_name", "first_name"]
        constraints = [_unique_external_id("contact")]

    def __str__(self) -> str:
        return self.full_name or f"Contact {self.external_id}"

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.middle_name, self.last_name) if p)

    def has_links(self) -> bool:
        return self.links.exists()

    def clean(self) -> None:
        # Bad addresses are reported per item by the synchronizer too; catching them at entry
        # is kinder to the person typing them.
        errors = {}
        for field in ("email1", "email2", "email3"):
            value = getattr(self, field).strip()
            if value:
                try:
                    validate_email(value)
                except ValidationError:
                    errors[field] = f"“{value}” is not a valid e-mail address."
        if errors:
            raise ValidationError(errors)


class ActivityType(models.TextChoices):
    CALL = "call", "Call"
    APPOINTMENT = "appointment", "Appointment"
    TASK = "task", "Task"
    EMAIL = "email", "E-mail"


SYNCHRONIZED_ACTIVITY_TYPES = (ActivityType.CALL, ActivityType.APPOINTMENT)


class TaskStatus(models.TextChoices):
    OPEN = "open", "Open"
    COMPLETED = "completed", "Completed"


class EmailDirection(models.TextChoices):
    IN = "in", "Received"
    OUT = "out", "Sent"


class TaskPriority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"


# Files of the tz database that are not zones a person lives in: "Factory" (its abbreviation is
# "-00"), "localtime" (this server's own setting), and what ZoneInfo also opens outside the list
# of zones (posixrules, posix/…, right/…, whose leap seconds Exchange knows nothing of).
_NOT_ZONES = frozenset({"Factory", "localtime"})


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def is_time_zone(name: str) -> bool:
    """An IANA time zone an event can be in (Europe/Amsterdam, UTC, …)."""
    if name not in _zone_names():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def validate_time_zone(name: str) -> None:
    if name and not is_time_zone(name):
        raise ValidationError(f"“{name}” is not a known IANA time zone (e.g. Europe/Amsterdam).")


def time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(_zone_names())]


class Activity(CrmRecord):
    type = models.CharField(max_length=20, choices=ActivityType.choices, default=ActivityType.APPOINTMENT)
    synchronize = models.BooleanField(default=True)
    created_by_erp = models.BooleanField(
        "created by ERP", default=True, help_text="Off for appointments that came from Exchange."
    )
    subject = models.CharField("description", max_length=255)
    comment = models.TextField(blank=True)
    custom_fields = models.JSONField(
        default=dict, blank=True, help_text="Custom CRM fields: key → text, number or date (YYYY-MM-DD)."
    )
    location = models.CharField(max_length=255, blank=True)
    start = models.DateTimeField(db_index=True)
    end = models.DateTimeField()
    all_day = models.BooleanField(
        default=False, help_text="All-day: start and end are midnights in the time zone, end exclusive."
    )
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    private = models.BooleanField(default=False)
    reminder_minutes = models.PositiveIntegerField(null=True, blank=True)
    recurrence = models.TextField(
        blank=True, help_text="An RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=MO;COUNT=10. Empty: a single event."
    )
    recurrence_exdates = models.JSONField(
        default=list, blank=True, help_text="Original starts (ISO 8601) of removed occurrences."
    )
    recurrence_exceptions = models.JSONField(
        default=list,
        blank=True,
        help_text="Modified occurrences: {original_start, start, end, subject, location}.",
    )
    organizer = models.ForeignKey(
        Employee, null=True, blank=True, on_delete=models.SET_NULL, related_name="organized_activities"
    )
    organizer_email = models.EmailField(
        max_length=254, blank=True, help_text="The organizer's address when not an employee."
    )
    meeting_uid = models.CharField(
        "meeting UID", max_length=255, blank=True, help_text="The iCalendar UID of the meeting in Exchange."
    )
    is_stub = models.BooleanField(
        default=False,
        help_text="A stub for a meeting organized outside the sync users, shared by all invitee mailboxes.",
    )
    # A task's own fields (type Task, T1–T6); other types leave them at their defaults.
    status = models.CharField(max_length=10, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    due = models.DateField(null=True, blank=True, help_text="A task's due day (Exchange keeps task dates as days).")
    completed_at = models.DateTimeField(null=True, blank=True)
    priority = models.CharField(max_length=10, choices=TaskPriority.choices, default=TaskPriority.NORMAL)
    responsible = models.ForeignKey(
        Employee,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="responsible_for_activities",
        help_text="A task goes to this employee's sync user (T1).",
    )
    # A filed e-mail's own fields (type E-mail, E3–E5); other types leave them empty.
    direction = models.CharField(max_length=3, choices=EmailDirection.choices, blank=True)
    message_id = models.CharField(
        max_length=998, blank=True, help_text="A filed e-mail's Internet message id: it is filed once (E5)."
    )
    sender = models.JSONField(default=dict, blank=True, help_text='{"address", "name"}')
    recipients = models.JSONField(
        default=list, blank=True, help_text='To and cc: [{"address", "name", "type": "to" | "cc"}]'
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    body = models.TextField(blank=True, help_text="A filed e-mail's text, capped (E3).")
    attachment_names = models.JSONField(default=list, blank=True, help_text="Names only, never the content.")
    filing_candidates = models.JSONField(
        default=list,
        blank=True,
        help_text="A filed e-mail that matched several CRM records of the same rank (E4): "
        '[{"kind", "external_id", "name"}]; filed without a link and listed in Needs attention.',
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="linked_activities"
    )
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="linked_activities"
    )

    class Meta:
        verbose_name_plural = "activities"
        ordering = ["-start"]
        constraints = [
            _unique_external_id("activity"),
            models.UniqueConstraint(
                fields=["environment", "meeting_uid"],
                # a retired stub keeps its UID for the deletion feed; a new one may take it
                condition=~Q(meeting_uid="") & Q(deleted_at__isnull=True),
                name="activity_unique_meeting_uid",
                violation_error_message="An activity for this meeting already exists in this environment.",
            ),
            models.CheckConstraint(
                condition=Q(end__gte=models.F("start")), name="activity_end_not_before_start"
            ),
            models.UniqueConstraint(
                fields=["environment", "message_id"],
                # tombstones too: an e-mail deleted in the CRM is not filed again (E5, E6)
                condition=~Q(message_id=""),
                name="activity_unique_message_id",
                violation_error_message="This e-mail is already filed in this environment.",
            ),
        ]
        # A calendar pass selects its mailbox's activities by address, case-insensitively.
        indexes = [models.Index(Lower("organizer_email"), name="activity_organizer_email_ci")]

    def __str__(self) -> str:
        return f"{self.get_type_display()}: {self.subject}"

    @property
    def is_synchronizable(self) -> bool:
        return self.synchronize and self.type in SYNCHRONIZED_ACTIVITY_TYPES

    def has_links(self) -> bool:
        # A filed e-mail leaves a tombstone: its message is not filed again (E5), and an outside
        # CRM reading changes learns of the deletion.
        return bool(self.message_id) or self.links.exists()

    def warnings(self) -> list[str]:
        """What the synchronizer cannot do with this activity as it stands, for people to see.

        An employee is matched to a sync user (the organizer's mailbox, an invitee's copy, K3)
        by address only: an employee attendee without one is silently left out otherwise."""
        found = []
        if self.organizer_id and not (self.organizer.email or self.organizer_email):
            found.append(
                f"The organizer {self.organizer.name} has no e-mail address: the activity cannot be "
                "matched to a sync user's calendar."
            )
        for attendee in self.attendees.all():
            if attendee.type != AttendeeType.EMPLOYEE or attendee.email:
                continue
            name = attendee.name or (attendee.employee.name if attendee.employee_id else "?")
            found.append(
                f"The employee attendee {name} has no e-mail address: it cannot be matched to a "
                "sync user, so it is neither invited nor given a copy in Exchange."
            )
        return found

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.start and self.end and self.end < self.start:
            errors["end"] = "The end is before the start."
        if self.recurrence:
            try:
                recurrence.check_syntax(self.recurrence)
            except (ValueError, TypeError) as exc:
                errors["recurrence"] = f"Not a valid RFC 5545 RRULE: {exc}"
            else:
                try:
                    recurrence.parse_rrule(self.recurrence, (self.start or timezone.now()).date())
                except recurrence.Unrepresentable as exc:
                    errors["recurrence"] = f"{exc}."
        if errors:
            raise ValidationError(errors)


class AttendeeType(models.TextChoices):
    EMPLOYEE = "employee", "Employee"
    CONTACT = "contact", "Contact"
    OTHER = "other", "Other"


class Attendee(models.Model):
    activity = models.ForeignKey(Activity, on_delete=models.CASCADE, related_name="attendees")
    type = models.CharField(max_length=20, choices=AttendeeType.choices, default=AttendeeType.OTHER)
    employee = models.ForeignKey(Employee, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    email = models.CharField("e-mail", max_length=254, blank=True)
    name = models.CharField(max_length=200, blank=True)
    invite = models.BooleanField(default=True)
    meeting_organizer = models.BooleanField(default=False)
    synchronized = models.BooleanField(
        default=False, help_text="Present in this attendee's Exchange calendar."
    )
    sent_to_synchronizer = models.BooleanField(default=False, help_text="Handed to Exchange.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-meeting_organizer", "name", "email"]
        constraints = [
            models.UniqueConstraint(
                "activity",
                Lower("email"),
                condition=~Q(email=""),
                name="attendee_unique_email_per_activity",
                violation_error_message="This address is already an attendee of the activity.",
            ),
        ]
        # A calendar pass selects its mailbox's activities by address, case-insensitively.
        indexes = [models.Index(Lower("email"), name="attendee_email_ci")]

    def __str__(self) -> str:
        return self.name or self.email

    def clean(self) -> None:
        if self.email:
            try:
                validate_email(self.email)
            except ValidationError as exc:
                raise ValidationError({"email": f"“{self.email}” is not a valid e-mail address."}) from exc
        if self.type == AttendeeType.EMPLOYEE and not (self.employee_id or self.email):
            raise ValidationError(
                {"employee": "An attendee of type Employee needs the employee or an address."}
            )


def purge_tombstones_older_than(before: datetime) -> int:
    """Tombstones no mailbox holds any more, older than ``before``: removed for good. Until then
    the API lists them (``include_deleted``), so an outside CRM learns of deletions."""
    purged = 0
    for model in (Company, Contact, Activity):
        for record in model.all_objects.filter(deleted_at__lt=before, links__isnull=True):
            record.purge()
            purged += 1
    return purged
