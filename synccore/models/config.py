"""The synchronizer's configuration: environments, their settings, sync users, field mappings."""

from __future__ import annotations

import ipaddress
import re
import ssl
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from synccore import mapping
from synccore.fields import EncryptedTextField


class SynchronizerState(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    FAILED = "failed", "Failed"


class Environment(models.Model):
    name = models.CharField(max_length=100, unique=True, help_text="e.g. Production, Test")
    description = models.TextField(blank=True)
    state = models.CharField(
        max_length=20, choices=SynchronizerState.choices, default=SynchronizerState.STOPPED, editable=False
    )
    state_changed_at = models.DateTimeField(default=timezone.now, editable=False)
    state_reason = models.TextField(blank=True, editable=False, help_text="Why it failed, when it did.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        creating = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if creating:
                # Every environment has its settings and the default mapping rows from birth.
                SyncSettings.objects.get_or_create(environment=self)
                FieldMapping.create_defaults(self)

    def set_state(self, state: str, reason: str = "") -> None:
        self.state = state
        self.state_reason = reason
        self.state_changed_at = timezone.now()
        self.save(update_fields=["state", "state_reason", "state_changed_at", "updated_at"])


class Backend(models.TextChoices):
    EWS = "ews", "Exchange Server (EWS)"
    GRAPH = "graph", "Exchange Online (Microsoft Graph)"
    DOMINO = "domino", "HCL Domino (REST API)"


class AuthType(models.TextChoices):
    NTLM = "ntlm", "NTLM"
    BASIC = "basic", "Basic"
    OAUTH2 = "oauth2", "OAuth 2.0 (client credentials)"


class AccessType(models.TextChoices):
    IMPERSONATION = "impersonation", "Impersonation"
    DELEGATE = "delegate", "Delegate"


class IntervalUnit(models.TextChoices):
    MINUTES = "minutes", "minutes"
    HOURS = "hours", "hours"
    DAYS = "days", "days"


class ConflictPolicy(models.TextChoices):
    LATER_WINS = "later_wins", "The later change wins"
    CRM_WINS = "crm_wins", "CRM wins"
    EXCHANGE_WINS = "exchange_wins", "Exchange wins"


class SyncDirection(models.TextChoices):
    """Which way a data type flows (T5); contacts are always CRM → mailbox (C6)."""

    BOTH = "both", "Both ways"
    CRM_TO_MAILBOX = "crm_to_mailbox", "CRM → mailbox"
    MAILBOX_TO_CRM = "mailbox_to_crm", "Mailbox → CRM"
    OFF = "off", "Off"


class PersonalDeletionPolicy(models.TextChoices):
    KEEP = "keep", "Keep the CRM activity"
    DELETE = "delete", "Delete the CRM activity"


SECRET_FIELDS = ("service_password", "oauth_client_secret")
# Endpoints that receive credentials: plain http only to this machine, unless allowed.
PLAIN_HTTP_CHECKED = ("ews_url", "graph_endpoint", "authority_url", "domino_url")


# A bundle of every public CA is about 250 KB; a file far larger is not one.
MAX_CA_BUNDLE_BYTES = 5 * 1024 * 1024


def ca_bundle_problem(path: str) -> str:
    """Why the file at ``path`` is not a PEM bundle of CA certificates this server can use, or ''.
    Checked when the settings are saved, so a bad bundle never reaches a connection."""
    bundle = Path(path)
    try:
        if bundle.stat().st_size > MAX_CA_BUNDLE_BYTES:
            return f"The CA bundle {path} is larger than {MAX_CA_BUNDLE_BYTES // (1024 * 1024)} MB: not a bundle."
        ssl.create_default_context(cafile=str(bundle))
    except FileNotFoundError:
        return f"The CA bundle {path} is not a file on this server."
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"The CA bundle {path} is not a PEM file of certificates this server can read ({exc})."
    return ""


def _plain_http_elsewhere(url: str) -> bool:
    parts = urlsplit(url or "")
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


class SyncSettings(models.Model):
    """Mirrors “MS Exchange Synchronization Settings” plus what to synchronize at all (the
    reference's “COM parameters”)."""

    environment = models.OneToOneField(Environment, on_delete=models.CASCADE, related_name="settings")

    # What to synchronize
    synchronize_contacts = models.BooleanField(
        default=False, help_text="Needs ISO codes on the countries and languages in use."
    )
    synchronize_activities = models.BooleanField(default=False)
    synchronize_tasks = models.BooleanField(
        default=False, help_text="CRM activities of type Task ⇄ Exchange tasks / Microsoft To Do (T1)."
    )
    calendar_direction = models.CharField(
        max_length=20, choices=SyncDirection.choices, default=SyncDirection.BOTH, help_text="T5."
    )
    tasks_direction = models.CharField(
        max_length=20, choices=SyncDirection.choices, default=SyncDirection.BOTH, help_text="T5."
    )

    # Connection
    backend = models.CharField(max_length=10, choices=Backend.choices, default=Backend.EWS)
    ews_url = models.URLField(
        "EWS URL",
        blank=True,
        help_text="e.g. https://mail.example.com/EWS/Exchange.asmx (no autodiscover needed).",
    )
    autodiscover_email = models.EmailField(
        "autodiscover e-mail", blank=True, help_text="Used only when no EWS URL is given."
    )
    auth_type = models.CharField(max_length=10, choices=AuthType.choices, default=AuthType.NTLM)
    service_account = models.CharField(max_length=254, blank=True, help_text="DOMAIN\\user or user@domain.")
    service_password = EncryptedTextField(blank=True)
    oauth_tenant_id = models.CharField("tenant id", max_length=100, blank=True)
    oauth_client_id = models.CharField("client id", max_length=100, blank=True)
    oauth_client_secret = EncryptedTextField("client secret", blank=True)
    oauth_client_secret_expires_on = models.DateField(
        "client secret expires on",
        null=True,
        blank=True,
        help_text="The day the client secret (or certificate) stops working, as Entra ID shows it: "
        "alerts are sent 30 days before and when it has expired. Empty: not watched.",
    )
    graph_endpoint = models.URLField(
        "Graph endpoint",
        blank=True,
        help_text="Empty: https://graph.microsoft.com/v1.0 (national clouds differ).",
    )
    authority_url = models.URLField(
        "token authority", blank=True, help_text="Empty: https://login.microsoftonline.com/<tenant id>."
    )
    domino_url = models.URLField(
        "Domino REST API URL",
        blank=True,
        help_text="HCL Domino mail files: the REST API base that /v1/auth and /pim-v1/… hang from, "
        "e.g. https://domino.example.com:8880/api. The service account and its password log in.",
    )
    allow_plain_http = models.BooleanField(
        "allow plain http",
        default=False,
        help_text=(
            "Test environments only: lets the EWS URL, Graph endpoint and token authority be plain "
            "http:// to another machine. Passwords and tokens then cross the network unencrypted."
        ),
    )
    ca_bundle = models.CharField(
        "CA bundle",
        max_length=500,
        blank=True,
        help_text=(
            "Path of a PEM file with the certificate authorities to trust for Graph and the token "
            "authority (a private CA or a TLS-inspecting proxy). Empty: the system's trust store."
        ),
    )
    access_type = models.CharField(
        max_length=20, choices=AccessType.choices, default=AccessType.IMPERSONATION
    )

    # Schedule and push
    pull_interval = models.PositiveIntegerField(default=15)
    pull_interval_unit = models.CharField(
        max_length=10, choices=IntervalUnit.choices, default=IntervalUnit.MINUTES
    )
    push_enabled = models.BooleanField("enable push synchronization", default=False)

    # Contacts
    categorize_contacts = models.BooleanField(
        "categorization", default=False, help_text="Write contacts into a folder of their own."
    )
    contact_folder_name = models.CharField(max_length=100, default="CRM Contacts")
    filter_by_rep = models.BooleanField(default=False)
    filter_by_sales_group = models.BooleanField(default=False)
    filter_by_favorites = models.BooleanField(default=False)
    synchronize_companies = models.BooleanField(default=False)

    # Calendar
    calendar_horizon_days = models.PositiveIntegerField(
        default=90, validators=[MinValueValidator(1), MaxValueValidator(3650)], help_text="How far ahead."
    )
    reminder_call_minutes = models.PositiveIntegerField(null=True, blank=True, default=15)
    reminder_appointment_minutes = models.PositiveIntegerField(null=True, blank=True, default=15)
    reminder_task_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=None,
        help_text="Minutes before the due day's start that new tasks remind (K13); empty: no reminder.",
    )
    conflict_policy = models.CharField(
        max_length=20, choices=ConflictPolicy.choices, default=ConflictPolicy.LATER_WINS
    )
    personal_deletion_policy = models.CharField(
        "personal appointment deleted in Exchange",
        max_length=10,
        choices=PersonalDeletionPolicy.choices,
        default=PersonalDeletionPolicy.KEEP,
    )
    internal_domains = models.CharField(
        max_length=500,
        blank=True,
        help_text="The organisation's mail domains, comma-separated (empty: the sync users' domains).",
    )
    comment_to_external_attendees = models.BooleanField(
        "write CRM comments into meetings with external attendees", default=False
    )

    # E-mail filing (E1–E6)
    file_emails = models.BooleanField(
        "file e-mails",
        default=False,
        help_text="Messages users mark in Outlook (or, with track all, every message with a CRM address) "
        "become CRM activities of type E-mail (E1).",
    )
    file_emails_from = models.DateField(
        "file e-mails from",
        null=True,
        blank=True,
        help_text="Only messages received or sent on or after this day (empty: no limit).",
    )
    email_filing_category = models.CharField(
        max_length=255, default="CRM", help_text="The Outlook category users mark a message with (E2)."
    )
    email_filed_category = models.CharField(
        max_length=255, default="Filed in CRM", help_text="The category a filed message gets (E6)."
    )
    track_all_emails = models.BooleanField(
        "track all e-mails",
        default=False,
        help_text="File every message with a CRM contact or company among its sender and recipients, "
        "without a category (E2).",
    )
    email_body_limit = models.PositiveIntegerField(
        "e-mail body limit",
        default=20000,
        validators=[MinValueValidator(0), MaxValueValidator(1_000_000)],
        help_text="Characters of a message's text kept in the activity (E3).",
    )

    # Alerts (O6)
    alert_emails = models.TextField(
        "alert e-mail addresses",
        blank=True,
        help_text="Who is told when a user turns unhealthy or recovers, the environment fails or "
        "degrades, push is lost or back, or the client secret is about to expire: one or more "
        "addresses, separated by commas or new lines (empty: no e-mail).",
    )
    alert_webhook_url = models.URLField(
        "alert webhook URL",
        max_length=500,
        blank=True,
        help_text="Receives each alert as a JSON POST (environment, event, user, kind, state, reason, "
        "at); empty: no webhook.",
    )

    # Safety
    safety_limit_percent = models.PositiveSmallIntegerField(
        "safety limit (%)",
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="A pass that would delete more than this share of a mailbox's synced items stops and asks.",
    )
    safety_limit_minimum = models.PositiveIntegerField(
        "safety limit (items)",
        default=10,
        help_text="…and only when it would delete more than this many items.",
    )
    loop_flips = models.PositiveSmallIntegerField(
        "loop detector (flips)",
        default=3,
        help_text="An item whose same fields flip back and forth this many times is held instead of "
        "written again (0: off).",
    )
    loop_passes = models.PositiveSmallIntegerField(
        "loop detector (passes)",
        default=10,
        validators=[MinValueValidator(2), MaxValueValidator(100)],
        help_text="…within this many passes of the mailbox.",
    )
    meeting_message_limit = models.PositiveIntegerField(
        "meeting message limit",
        default=50,
        help_text="A calendar pass that would send more invitations, or more cancellations, than this "
        "is held until an administrator confirms (0: no limit).",
    )
    batch_size = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Items per request.",
    )

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "synchronization settings"
        verbose_name_plural = "synchronization settings"

    def __str__(self) -> str:
        return f"Settings of {self.environment}"

    @property
    def pull_interval_delta(self) -> timedelta:
        return timedelta(**{self.pull_interval_unit: self.pull_interval})

    def alert_addresses(self) -> list[str]:
        """The alert e-mail addresses, as entered (commas, semicolons or new lines between them)."""
        return [a for a in re.split(r"[\s,;]+", self.alert_emails or "") if a]

    def organisation_domains(self) -> set[str]:
        configured = {d.strip().lower().lstrip("@") for d in self.internal_domains.split(",") if d.strip()}
        if configured:
            return configured
        emails = SyncUser.objects.filter(environment_id=self.environment_id).values_list(
            "mailbox_email", flat=True
        )
        return {e.rsplit("@", 1)[-1].lower() for e in emails if "@" in e}

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if not self.pull_interval:
            errors.setdefault("pull_interval", []).append("The pull interval must be greater than zero.")
        if self.categorize_contacts and not self.contact_folder_name.strip():
            errors.setdefault("contact_folder_name", []).append("Categorization needs a folder name.")
        if self.synchronize_contacts and self.environment_id:
            message = missing_iso_codes_message(self.environment)
            if message:
                errors.setdefault("synchronize_contacts", []).append(message)
        bad = [a for a in self.alert_addresses() if not _is_email(a)]
        if bad:
            errors.setdefault("alert_emails", []).append(
                f"Not an e-mail address: {', '.join(bad)}. Separate addresses with commas or new lines."
            )
        if self.ca_bundle:
            problem = ca_bundle_problem(self.ca_bundle)
            if problem:
                errors.setdefault("ca_bundle", []).append(problem)
        if not self.allow_plain_http:
            for name in self.plain_http_fields():
                errors.setdefault(name, []).append(
                    "Plain http would send the credentials unencrypted: use https (or, for a test "
                    "environment, turn on “allow plain http”)."
                )
        for name, messages in self._redirected_secrets().items():
            errors.setdefault(name, []).extend(messages)
        if errors:
            raise ValidationError(errors)

    def plain_http_fields(self) -> list[str]:
        """The endpoints set to plain http:// on a host other than this machine."""
        return [name for name in PLAIN_HTTP_CHECKED if _plain_http_elsewhere(getattr(self, name))]

    def secret_destinations(self) -> dict[str, tuple[str, ...]]:
        """Where each secret (or the token it buys) is sent."""
        oauth = ("authority_url", "graph_endpoint", "ca_bundle", "oauth_tenant_id")
        if self.auth_type == AuthType.OAUTH2:
            oauth = (*oauth, "ews_url")
        return {"service_password": ("ews_url", "autodiscover_email", "domino_url"), "oauth_client_secret": oauth}

    def _redirected_secrets(self) -> dict[str, list[str]]:
        """A stored secret may not follow a changed destination unless it is entered again: else
        whoever may edit the settings could send it to a server of theirs and read it there.
        Forms and the API name the secrets entered in this save in ``secrets_entered``."""
        if self.pk is None:
            return {}
        destinations = self.secret_destinations()
        names = {n for fields in destinations.values() for n in fields}
        before = type(self).objects.filter(pk=self.pk).values(*names, *SECRET_FIELDS).first()
        if before is None:
            return {}
        entered = set(getattr(self, "secrets_entered", ()))
        problems: dict[str, list[str]] = {}
        for secret, fields in destinations.items():
            kept = getattr(self, secret) and getattr(self, secret) == before[secret]
            if not kept or secret in entered:
                continue  # none, cleared, or given anew in this save
            moved = [f for f in fields if (getattr(self, f) or "") != (before[f] or "")]
            if moved:
                labels = ", ".join(str(self._meta.get_field(f).verbose_name) for f in moved)
                label = self._meta.get_field(secret).verbose_name
                problems[secret] = [f"Enter the {label} again: where it is sent changed ({labels})."]
        return problems

    def backends_in_use(self) -> set[str]:
        """The environment's backend and every active sync user's own (a hybrid organisation)."""
        own = SyncUser.objects.filter(environment_id=self.environment_id, active=True).exclude(backend="")
        return {self.backend, *own.values_list("backend", flat=True)}

    def connection_problems(self) -> list[str]:
        """What is missing before the synchronizer can connect (checked at start, not on save)."""
        problems = []
        in_use = self.backends_in_use()
        if Backend.EWS in in_use:
            if not (self.ews_url or self.autodiscover_email):
                problems.append("Give the EWS URL or an autodiscover e-mail address.")
            if self.auth_type in (AuthType.NTLM, AuthType.BASIC):
                if not self.service_account:
                    problems.append("Give the service account.")
                if not self.service_password:
                    problems.append("Give the service account's password.")
        if Backend.GRAPH in in_use or (Backend.EWS in in_use and self.auth_type == AuthType.OAUTH2):
            for field in ("oauth_tenant_id", "oauth_client_id", "oauth_client_secret"):
                if not getattr(self, field):
                    problems.append(f"Give the {self._meta.get_field(field).verbose_name}.")
        if Backend.DOMINO in in_use:
            if not self.domino_url:
                problems.append("Give the Domino REST API URL.")
            if not self.service_account:
                problems.append("Give the service account.")
            if not self.service_password:
                problems.append("Give the service account's password.")
            # To Do items sync over Domino; contacts and e-mail filing do not (docs/domino.md).
            for on, what in ((self.synchronize_contacts, "Contacts"), (self.file_emails, "E-mail filing")):
                if on:
                    problems.append(
                        f"{what} cannot be synchronized with HCL Domino mail files yet (docs/domino.md): "
                        "turn it off for this environment."
                    )
        problems += self.custom_property_problems(in_use)
        if Backend.GRAPH in in_use and self.ca_bundle:
            # Checked on save too; the file may have changed since (replaced, removed).
            problem = ca_bundle_problem(self.ca_bundle)
            if problem:
                problems.append(problem)
        if not (self.synchronize_contacts or self.synchronize_activities or self.synchronize_tasks or self.file_emails):
            problems.append("Turn on contact, activity or task synchronization, or e-mail filing.")
        return problems


    def custom_property_problems(self, in_use: set[str]) -> list[str]:
        """Mapping rows to an Outlook custom field (``property:<Name>``) a backend in use cannot
        carry: HCL Domino has no extended properties, Microsoft To Do (tasks over Graph) neither."""
        entities = []
        if Backend.DOMINO in in_use and self.synchronize_activities:
            entities.append((mapping.ACTIVITY, "Activities", "HCL Domino mail files"))
        if Backend.GRAPH in in_use and self.synchronize_tasks:
            entities.append((mapping.TASK, "Tasks", "Microsoft To Do (tasks over Graph)"))
        if Backend.DOMINO in in_use and self.synchronize_tasks:
            entities.append((mapping.TASK, "Tasks", "HCL Domino To Do items"))
        problems = []
        for entity, what, where in entities:
            rows = FieldMapping.objects.filter(
                environment_id=self.environment_id, entity=entity, enabled=True, exchange_field__startswith=mapping.PROPERTY_PREFIX
            ).values_list("crm_field", flat=True)
            if rows:
                names = ", ".join(sorted(rows))
                problems.append(
                    f"{what}: {where} cannot carry Outlook custom fields (extended properties), so "
                    f"{names} would not be synchronized: map them to a standard field or disable those rows."
                )
        return problems


def _is_email(value: str) -> bool:
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


def missing_iso_codes_message(environment: Environment) -> str:
    """Name the countries and languages in use that have no ISO code (C1), or ''."""
    from synccore.models.crm import Company, Contact, Country, Language

    contacts = Contact.objects.filter(environment=environment, synchronize=True)
    country_ids = set(contacts.exclude(country=None).values_list("country_id", flat=True))
    country_ids |= set(
        Company.objects.filter(environment=environment, synchronize=True)
        .exclude(country=None)
        .values_list("country_id", flat=True)
    )
    language_ids = set(contacts.exclude(language=None).values_list("language_id", flat=True))
    countries = sorted(Country.objects.filter(pk__in=country_ids, iso_code="").values_list("name", flat=True))
    languages = sorted(
        Language.objects.filter(pk__in=language_ids, iso_code="").values_list("name", flat=True)
    )
    parts = []
    if countries:
        parts.append("countries " + ", ".join(countries))
    if languages:
        parts.append("languages " + ", ".join(languages))
    if not parts:
        return ""
    return (
        "Contact synchronization needs ISO codes on the countries and languages in use; missing on "
        + "; ".join(parts)
        + "."
    )


class Health(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    BACKING_OFF = "backing_off", "Backing off"
    UNHEALTHY = "unhealthy", "Unhealthy"
    HELD = "held", "Held by the safety limit"


class SyncUser(models.Model):
    """Mirrors “MS Exchange Synchronization Users”, plus the user's live state."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="sync_users")
    employee = models.ForeignKey(
        "synccore.Employee",
        on_delete=models.PROTECT,
        related_name="sync_users",
        help_text="The CRM employee.",
    )
    mailbox_email = models.EmailField("mailbox e-mail", max_length=254)
    contacts_enabled = models.BooleanField("synchronize contacts", default=True)
    calendar_enabled = models.BooleanField("synchronize calendar", default=True)
    tasks_enabled = models.BooleanField("synchronize tasks", default=True)
    email_enabled = models.BooleanField(
        "file e-mails", default=True, help_text="E-mail filing for this user, while the environment files e-mails (E1)."
    )
    contact_folder_override = models.CharField(
        max_length=100,
        blank=True,
        help_text="A contact folder for this user only (empty: the environment's).",
    )
    categorize_override = models.BooleanField(
        "categorization",
        null=True,
        blank=True,
        help_text="Categorization on or off for this user only (empty: the environment's).",
    )
    active = models.BooleanField(
        default=True, help_text="Inactive users are not synchronized; their mailboxes are left as they are."
    )
    backend = models.CharField(
        max_length=10,
        choices=Backend.choices,
        blank=True,
        help_text=(
            "How this mailbox is reached (empty: the environment's). In a hybrid organisation, "
            "on-premises mailboxes use EWS and Exchange Online mailboxes Microsoft Graph; both "
            "connections are in the environment's settings. Changing it keeps every link (H2)."
        ),
    )
    linked_backend = models.CharField(
        max_length=10,
        blank=True,
        editable=False,
        help_text="The protocol the stored item ids and sync tokens are in (empty: none stored yet).",
    )

    # Live state, written by the synchronizer.
    health = models.CharField(max_length=20, choices=Health.choices, default=Health.HEALTHY, editable=False)
    last_contact_pass_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_calendar_pass_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_task_pass_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_email_pass_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    backoff_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Per kind (contacts, calendar, …): its state, since when and why (synccore.sync.runs); the
    # user's health above is the worst of them.
    kind_health = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="Per kind: its state (healthy, backing_off, held, failing), since when and why.",
    )
    # One confirmation per kind: a pass of one kind uses (and clears) its own only, so a contact
    # pass cannot take away the calendar's confirmation when "Confirm" runs every kind.
    contacts_limit_confirmed = models.BooleanField(
        default=False,
        editable=False,
        help_text="An administrator allowed the next contact pass to delete beyond the safety limit.",
    )
    calendar_limit_confirmed = models.BooleanField(
        default=False,
        editable=False,
        help_text="An administrator allowed the next calendar pass to delete beyond the safety limit, or "
        "to send more meeting messages than the meeting message limit.",
    )
    tasks_limit_confirmed = models.BooleanField(
        default=False,
        editable=False,
        help_text="An administrator allowed the next task pass to delete beyond the safety limit.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["mailbox_email"]
        constraints = [
            models.UniqueConstraint(
                "environment",
                Lower("mailbox_email"),
                name="syncuser_one_per_mailbox",
                violation_error_message="This mailbox already has a sync user in this environment.",
            )
        ]

    def __str__(self) -> str:
        return self.mailbox_email

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding and kwargs.get("update_fields") is None:
            # Only the relinking writes linked_backend (by an update): a form or the admin saving
            # an instance read before a move must not take the move back.
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name != "linked_backend"
            ]
        super().save(*args, **kwargs)

    # The kinds a pass of which can be held by a limit and confirmed (safety limit, P4).
    CONFIRMABLE_KINDS = ("contacts", "calendar", "tasks")

    @property
    def deletions_confirmed(self) -> bool:
        """Whether some kind's next pass is confirmed (the API's pinned ``deletions_confirmed``)."""
        return any(self.limit_confirmed(kind) for kind in self.CONFIRMABLE_KINDS)

    def limit_confirmed(self, kind: str) -> bool:
        """An administrator allowed the next pass of this kind beyond the safety or meeting limit."""
        kind = str(kind)
        return kind in self.CONFIRMABLE_KINDS and getattr(self, f"{kind}_limit_confirmed")

    def confirm_limits(self, kinds: list[str] | tuple[str, ...]) -> list[str]:
        """Confirm the next pass of these kinds; the fields to save."""
        fields = [f"{kind}_limit_confirmed" for kind in map(str, kinds) if kind in self.CONFIRMABLE_KINDS]
        for field in fields:
            setattr(self, field, True)
        return fields

    def use_confirmation(self, kind: str) -> None:
        """A confirmation counts for one pass of its kind: cleared once that pass used it. Saved
        as one column, so a pass of another kind running meanwhile keeps its own."""
        if not self.limit_confirmed(kind):
            return
        field = f"{kind!s}_limit_confirmed"
        setattr(self, field, False)
        type(self).objects.filter(pk=self.pk).update(**{field: False}, updated_at=timezone.now())

    @property
    def contact_folder_name(self) -> str:
        return self.contact_folder_override or self.environment.settings.contact_folder_name

    @property
    def effective_backend(self) -> str:
        """The backend this mailbox is reached through: its own, else the environment's (H1)."""
        return self.backend or self.environment.settings.backend

    @staticmethod
    def on_backend(backend: str) -> Q:
        """Sync users whose effective backend is ``backend`` (a filter on SyncUser)."""
        return Q(backend=backend) | Q(backend="", environment__settings__backend=backend)

    @property
    def categorize_contacts(self) -> bool:
        """C5 for this user: the override when set, else the environment's switch."""
        if self.categorize_override is not None:
            return self.categorize_override
        return self.environment.settings.categorize_contacts

    @property
    def email_case_warning(self) -> str:
        """A visible warning when the addresses differ only in case (K5), or ''."""
        employee_email = self.employee.email if self.employee_id else ""
        if (
            employee_email
            and employee_email != self.mailbox_email
            and employee_email.lower() == self.mailbox_email.lower()
        ):
            return (
                f"The mailbox address “{self.mailbox_email}” differs from the employee's “{employee_email}” "
                "only in upper/lower case. Exchange treats them as the same address, so synchronization "
                "works; the reference CRM required exact case."
            )
        return ""

    def clean(self) -> None:
        errors = {}
        if self.employee_id:
            employee = self.employee
            if employee.environment_id != self.environment_id:
                errors["employee"] = "The employee belongs to another environment."
            elif not employee.email:
                errors["employee"] = f"The employee {employee.name} has no e-mail address."
            elif employee.email.lower() != (self.mailbox_email or "").lower():
                errors["mailbox_email"] = (
                    f"The mailbox e-mail must be the employee's address ({employee.email})."
                )
        if self.categorize_override and self.environment_id and not self.contact_folder_name.strip():
            errors["contact_folder_override"] = "Categorization needs a folder name."
        if self.mailbox_email and self.environment_id:
            clash = SyncUser.objects.filter(
                environment_id=self.environment_id, mailbox_email__iexact=self.mailbox_email
            ).exclude(pk=self.pk)
            if clash.exists():
                errors["mailbox_email"] = "This mailbox already has a sync user in this environment."
        if errors:
            raise ValidationError(errors)


class FieldMapping(models.Model):
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="field_mappings")
    entity = models.CharField(max_length=20, choices=mapping.ENTITY_CHOICES)
    crm_field = models.CharField("CRM field", max_length=50)
    exchange_field = models.CharField("Exchange field", max_length=50)
    direction = models.CharField(
        max_length=20, choices=mapping.DIRECTION_CHOICES, default=mapping.CRM_TO_EXCHANGE
    )
    fixed = models.BooleanField(default=False, editable=False, help_text="Fixed rows cannot be changed.")
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment", "entity", "position", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "entity", "exchange_field"],
                condition=Q(enabled=True),
                name="fieldmapping_one_source_per_exchange_field",
                violation_error_message="This Exchange field is already mapped for this entity.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.entity}: {self.crm_field} → {self.exchange_field}"

    @classmethod
    def create_defaults(cls, environment: Environment) -> None:
        existing = set(
            cls.objects.filter(environment=environment).values_list("entity", "crm_field", "exchange_field")
        )
        cls.objects.bulk_create(
            cls(
                environment=environment,
                entity=row.entity,
                crm_field=row.crm_field,
                exchange_field=row.exchange_field,
                direction=row.direction,
                fixed=row.fixed,
                position=index,
            )
            for index, row in enumerate(mapping.DEFAULT_ROWS)
            if (row.entity, row.crm_field, row.exchange_field) not in existing
        )

    def custom_keys(self) -> list[str]:
        """The custom field keys in use in the environment for this row's entity."""
        if not self.environment_id or self.entity not in mapping.CUSTOM_ENTITIES:
            return []
        return list(
            self.environment.custom_fields.filter(entity=mapping.registry_entity(self.entity)).values_list(
                "key", flat=True
            )
        )

    def custom_type(self) -> str | None:
        """The type of this row's custom CRM field (None: not a custom field, or not in use)."""
        if not (self.environment_id and mapping.is_custom(self.crm_field)):
            return None
        found = self.environment.custom_fields.filter(
            entity=mapping.registry_entity(self.entity), key=mapping.custom_key(self.crm_field)
        ).values_list("value_type", flat=True)
        return next(iter(found), None)

    def clean(self) -> None:
        errors = {}
        keys = self.custom_keys()
        if self.crm_field not in mapping.crm_fields(self.entity, keys):
            errors["crm_field"] = f"“{self.crm_field}” is not a CRM field of a {self.entity}."
            if mapping.is_custom(self.crm_field) and self.entity in mapping.CUSTOM_ENTITIES:
                errors["crm_field"] += " No record of the environment has this custom field."
        exchange_ok = self.exchange_field in mapping.exchange_fields(self.entity, keys) or (
            self.entity in mapping.CUSTOM_ENTITIES and mapping.is_property(self.exchange_field)
        )
        if not exchange_ok:
            errors["exchange_field"] = f"“{self.exchange_field}” is not an Exchange field of a {self.entity}."
        elif "crm_field" not in errors and (
            problem := mapping.pair_problem(self.entity, self.crm_field, self.exchange_field, self.custom_type())
        ):
            errors["exchange_field"] = problem
        if self.direction != mapping.CRM_TO_EXCHANGE and self.entity not in mapping.TWO_WAY_ENTITIES:
            errors["direction"] = mapping.ONE_WAY_MESSAGE
        if self.pk and self.fixed:
            original = FieldMapping.objects.get(pk=self.pk)
            if (original.crm_field, original.exchange_field, original.enabled) != (
                self.crm_field,
                self.exchange_field,
                self.enabled,
            ):
                errors["__all__"] = "This row is fixed: the synchronizer depends on it."
        if errors:
            raise ValidationError(errors)
