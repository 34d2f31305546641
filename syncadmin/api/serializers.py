"""The API's shapes. Translation rules for CRM data live in synccore.crmio, not here."""

from __future__ import annotations

import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from syncadmin.models import AuditEntry
from synccore.models import (
    Conflict,
    Employee,
    Environment,
    FieldMapping,
    ItemLink,
    LoopHold,
    SyncRun,
    SyncSettings,
    SyncUser,
    UnfiledMessage,
)
from synccore.models.config import SECRET_FIELDS


def _full_clean(instance, exclude=("environment",)) -> None:
    """Model rules (cross-field checks, constraints) as field-level 400s."""
    try:
        instance.full_clean(exclude=list(exclude))
    except DjangoValidationError as exc:
        raise serializers.ValidationError(
            {("non_field_errors" if k == "__all__" else k): v for k, v in exc.message_dict.items()}
        ) from exc


class EnvironmentSerializer(serializers.ModelSerializer):
    since = serializers.DateTimeField(source="state_changed_at", read_only=True)
    reason = serializers.CharField(source="state_reason", read_only=True)

    class Meta:
        model = Environment
        fields = ["id", "name", "description", "state", "since", "reason", "created_at", "updated_at"]
        read_only_fields = fields


# --- status (the runtime's dict, described for the schema) ------------------------------------------


class RunSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    trigger = serializers.CharField()
    outcome = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_s = serializers.FloatField(allow_null=True)
    progress = serializers.DictField(child=serializers.IntegerField())
    error = serializers.CharField(allow_blank=True, help_text="What failed and what to do next.")
    code = serializers.CharField(required=False, allow_blank=True, help_text="A stable name of the failure.")
    detail = serializers.CharField(required=False, allow_blank=True, help_text="The technical detail.")
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    deleted = serializers.IntegerField()
    skipped = serializers.IntegerField()
    failed = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    requests = serializers.IntegerField()


class PushSubscriptionStatusSerializer(serializers.Serializer):
    """A Microsoft Graph change-notification subscription (push over Graph)."""

    state = serializers.ChoiceField(choices=["creating", "active", "failed"])
    expires_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True, help_text="Why push is off for this mailbox, if it is.")


class KindStatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    last_pass = RunSummarySerializer(allow_null=True)
    next_due = serializers.DateTimeField(allow_null=True)
    push = PushSubscriptionStatusSerializer(
        allow_null=True, required=False, help_text="The Graph subscription of this kind; null: none."
    )


class UserStatusSerializer(serializers.Serializer):
    email = serializers.EmailField()
    active = serializers.BooleanField()
    backend = serializers.CharField(help_text="The backend this mailbox is reached through (H1).")
    health = serializers.CharField()
    last_error = serializers.CharField(allow_blank=True)
    contacts = KindStatusSerializer()
    calendar = KindStatusSerializer()
    kinds = serializers.DictField(
        child=KindStatusSerializer(),
        help_text="Every kind's state by its name (contacts, calendar, email): the e-mail kind is here only, "
        "since a user's email is its address.",
    )


class SecretStatusSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["unwatched", "valid", "expiring", "expired"])
    reason = serializers.CharField(allow_blank=True)
    expires_on = serializers.DateField(allow_null=True)


class StatusSerializer(serializers.Serializer):
    environment = serializers.CharField()
    id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=["stopped", "starting", "running", "stopping", "failed"])
    since = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    queue_depth = serializers.IntegerField()
    workers = serializers.ListField(child=serializers.DictField())
    users = UserStatusSerializer(many=True)
    secret = SecretStatusSerializer(help_text="The Graph client secret's expiry (O2, O6).")


class SyncNowSerializer(serializers.Serializer):
    user = serializers.EmailField(required=False, allow_null=True, default=None)
    kind = serializers.ChoiceField(choices=["all", "contacts", "calendar", "tasks", "email"], default="all")
    full = serializers.BooleanField(default=False)
    # P1: answer what the passes would do (200), write nothing, enqueue nothing.
    dry_run = serializers.BooleanField(default=False)
    cursor = serializers.CharField(required=False, allow_blank=True, default="")


class PreviewSerializer(serializers.Serializer):
    """A dry run's answer: the summary, the meeting messages, one page of actions."""

    summary = serializers.DictField()
    errors = serializers.ListField(child=serializers.CharField())
    messages = serializers.ListField(child=serializers.DictField())
    actions = serializers.ListField(child=serializers.DictField())
    next_cursor = serializers.CharField(allow_null=True)


class ExplainSerializer(serializers.Serializer):
    """P2: one CRM record's links and the decisions passes took about it, newest first."""

    environment = serializers.IntegerField()
    kind = serializers.CharField()
    external_id = serializers.CharField()
    record = serializers.DictField(allow_null=True)
    links = serializers.ListField(child=serializers.DictField())
    conflicts = serializers.ListField(child=serializers.DictField())
    loop_hold = serializers.DictField(allow_null=True, help_text="P3: the loop detector holds it.")
    decisions = serializers.ListField(child=serializers.DictField())


class SwitchBackendSerializer(serializers.Serializer):
    to = serializers.ChoiceField(choices=["ews", "graph"])
    user = serializers.EmailField(required=False, allow_null=True, default=None)
    dry_run = serializers.BooleanField(default=True)


class SwitchReportSerializer(serializers.Serializer):
    users = serializers.ListField(child=serializers.DictField())
    links = serializers.IntegerField()
    found = serializers.IntegerField()
    not_found = serializers.IntegerField()
    dry_run = serializers.BooleanField()


class TestAlertSerializer(serializers.Serializer):
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=["email", "webhook"]), help_text="Where the test alert goes."
    )


class TestMailboxesSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="How many mailboxes are being tested.")


class ConnectionReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    tried = serializers.ListField(child=serializers.CharField())
    error = serializers.CharField(allow_blank=True)


# --- settings ----------------------------------------------------------------------------------------


class SyncSettingsSerializer(serializers.ModelSerializer):
    """Secrets are write-only: omitted keeps them, null clears them, ``<name>_set`` reads back."""

    service_password = serializers.CharField(
        write_only=True, required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    oauth_client_secret = serializers.CharField(
        write_only=True, required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    service_password_set = serializers.SerializerMethodField()
    oauth_client_secret_set = serializers.SerializerMethodField()

    class Meta:
        model = SyncSettings
        exclude = ["id", "environment"]
        read_only_fields = ["updated_at"]
        extra_kwargs = {"pull_interval": {"min_value": 1}}

    def get_service_password_set(self, obj) -> bool:
        return bool(obj.service_password)

    def get_oauth_client_secret_set(self, obj) -> bool:
        return bool(obj.oauth_client_secret)

    def update(self, instance, validated_data):
        for name in SECRET_FIELDS:
            if name in validated_data and validated_data[name] is None:
                validated_data[name] = ""
        # The model refuses a stored secret following a changed destination unless given anew.
        instance.secrets_entered = {n for n in SECRET_FIELDS if validated_data.get(n)}
        for name, value in validated_data.items():
            setattr(instance, name, value)
        _full_clean(instance)
        instance.save()
        return instance


# --- sync users ----------------------------------------------------------------------------------------


class BulkUsersSerializer(serializers.Serializer):
    users = serializers.ListField(
        child=serializers.CharField(max_length=254),
        allow_empty=False,
        max_length=10000,
        help_text="The users' ids or mailbox addresses.",
    )


class SyncUserSerializer(serializers.ModelSerializer):
    employee_external_id = serializers.CharField(
        required=False,
        help_text="The CRM employee; when omitted, the employee with the mailbox's address (any case).",
    )
    employee_name = serializers.CharField(source="employee.name", read_only=True)
    email_case_warning = serializers.CharField(read_only=True)
    effective_backend = serializers.CharField(
        read_only=True, help_text="The backend in use: the user's own, else the environment's."
    )

    class Meta:
        model = SyncUser
        fields = [
            "id",
            "mailbox_email",
            "employee_external_id",
            "employee_name",
            "contacts_enabled",
            "calendar_enabled",
            "tasks_enabled",
            "email_enabled",
            "contact_folder_override",
            "categorize_override",
            "active",
            "backend",
            "effective_backend",
            "health",
            "last_contact_pass_at",
            "last_calendar_pass_at",
            "last_error",
            "last_error_at",
            "backoff_until",
            "deletions_confirmed",
            "email_case_warning",
        ]
        read_only_fields = [
            "health",
            "last_contact_pass_at",
            "last_calendar_pass_at",
            "last_error",
            "last_error_at",
            "backoff_until",
            "deletions_confirmed",
        ]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["employee_external_id"] = instance.employee.external_id
        return data

    def validate(self, attrs):
        environment = self.context["environment"]
        external_id = attrs.pop("employee_external_id", None)
        email = attrs.get("mailbox_email") or (self.instance.mailbox_email if self.instance else "")
        if external_id:
            employee = Employee.objects.filter(environment=environment, external_id=external_id).first()
            if employee is None:
                raise serializers.ValidationError(
                    {"employee_external_id": [f"No employee with external id “{external_id}”."]}
                )
            attrs["employee"] = employee
        elif self.instance is None or "mailbox_email" in attrs:
            employee = Employee.objects.filter(environment=environment, email__iexact=email).first()
            if employee is None:
                raise serializers.ValidationError(
                    {"mailbox_email": [f"No employee of {environment.name} has the address {email}."]}
                )
            attrs["employee"] = employee
        # A copy: the instance itself must keep its stored values until saved (the audit's
        # "before" and Test & enable's "what changed" read them).
        candidate = copy.copy(self.instance) if self.instance else SyncUser(environment=environment)
        for name, value in attrs.items():
            setattr(candidate, name, value)
        candidate.environment = environment
        _full_clean(candidate, exclude=())
        return attrs

    def create(self, validated_data):
        return SyncUser.objects.create(environment=self.context["environment"], **validated_data)


# --- field mappings ------------------------------------------------------------------------------------


class FieldMappingSerializer(serializers.ModelSerializer):
    crm_field = serializers.CharField(
        max_length=50, help_text="A CRM field of the entity (see synccore.mapping)."
    )
    exchange_field = serializers.CharField(max_length=50, help_text="An Exchange field of the entity.")

    class Meta:
        model = FieldMapping
        fields = ["id", "entity", "crm_field", "exchange_field", "direction", "enabled", "position", "fixed"]
        read_only_fields = ["fixed"]

    def validate(self, attrs):
        environment = self.context["environment"]
        candidate = FieldMapping(environment=environment)
        if self.instance is not None:
            candidate = FieldMapping.objects.get(pk=self.instance.pk)
        for name, value in attrs.items():
            setattr(candidate, name, value)
        _full_clean(candidate, exclude=())
        return attrs

    def create(self, validated_data):
        return FieldMapping.objects.create(environment=self.context["environment"], **validated_data)


# --- runs and conflicts ----------------------------------------------------------------------------------


class SyncRunSerializer(serializers.ModelSerializer):
    user = serializers.SerializerMethodField()
    duration_s = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "user",
            "kind",
            "trigger",
            "full",
            "started_at",
            "finished_at",
            "duration_s",
            "outcome",
            "created",
            "updated",
            "deleted",
            "skipped",
            "failed",
            "conflicts",
            "requests",
            "progress_done",
            "progress_total",
            "error",
            "worker",
        ]
        read_only_fields = fields

    def get_user(self, obj) -> str | None:
        return obj.sync_user.mailbox_email if obj.sync_user_id else None


class ConflictSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="link.sync_user.mailbox_email", read_only=True)
    item = serializers.SerializerMethodField()
    kind = serializers.CharField(source="link.kind", read_only=True)
    crm_value = serializers.JSONField(read_only=True, allow_null=True)
    exchange_value = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = Conflict
        fields = [
            "id",
            "user",
            "kind",
            "item",
            "field",
            "crm_value",
            "exchange_value",
            "choice",
            "detected_at",
            "resolved_at",
            "resolved_by",
        ]
        read_only_fields = fields

    def get_item(self, obj) -> str:
        record = obj.link.crm_record
        return str(record) if record is not None else ""


class UnfiledMessageSerializer(serializers.ModelSerializer):
    """The message of an attention item of state ``unfiled`` (issue 19)."""

    class Meta:
        model = UnfiledMessage
        fields = ["remote_id", "message_id", "folder", "subject", "sender", "sent_at", "web_link"]
        read_only_fields = fields


class LoopHoldSerializer(serializers.ModelSerializer):
    """The hold of an attention item of state ``loop`` (P3): the pass that held it, the fields
    that flip with the values they flip between, the writes that flipped; released with ``release``."""

    pass_kind = serializers.CharField(read_only=True, help_text="contacts, calendar, tasks")
    release = serializers.SerializerMethodField(help_text="POST here to release the item (administrator).")

    class Meta:
        model = LoopHold
        fields = ["pass_kind", "entity", "fields", "history", "held_at", "release"]
        read_only_fields = fields

    def get_release(self, obj: LoopHold) -> str:
        kind = {"contact": "contacts", "company": "companies"}.get(obj.entity, "activities")
        return f"/api/v1/environments/{obj.environment_id}/items/{kind}/{obj.external_id}/release/"


class AttentionItemSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="sync_user.mailbox_email", read_only=True)
    # Strings, not the link's enums: an e-mail that could not be filed is kind "email", state "unfiled".
    kind = serializers.CharField(read_only=True, help_text="contact, company, activity, task; email (unfiled)")
    state = serializers.CharField(
        read_only=True, help_text="failed, skipped, held, not_found, ambiguous; unfiled; loop (held by the loop detector)"
    )
    item = serializers.SerializerMethodField()
    external_id = serializers.SerializerMethodField()
    message = serializers.SerializerMethodField(
        help_text="For an e-mail that could not be filed (state unfiled): the message; else null."
    )
    loop = serializers.SerializerMethodField(
        help_text="For an item the loop detector holds (state loop, P3): the hold; else null."
    )

    class Meta:
        model = ItemLink
        fields = [
            "id",
            "user",
            "kind",
            "item",
            "external_id",
            "state",
            "last_error",
            "last_error_at",
            "updated_at",
            "message",
            "loop",
        ]
        read_only_fields = fields

    def get_item(self, obj) -> str:
        record = obj.crm_record
        return str(record) if record is not None else ""

    def get_external_id(self, obj) -> str:
        record = obj.crm_record
        return record.external_id if record is not None else ""

    @extend_schema_field(UnfiledMessageSerializer(allow_null=True))
    def get_message(self, obj) -> dict | None:
        return None

    @extend_schema_field(LoopHoldSerializer(allow_null=True))
    def get_loop(self, obj) -> dict | None:
        return None


class UnfiledAttentionItemSerializer(serializers.Serializer):
    """An e-mail that could not be filed, in the shape of the other attention items: kind
    ``email``, state ``unfiled``, ``last_error`` the sentence saying why and what to do, no CRM
    record (``item`` is the subject); dismissed with ``POST …/attention/unfiled/{id}/dismiss/``."""

    def to_representation(self, instance: UnfiledMessage) -> dict:
        return {
            "id": instance.pk,
            "user": instance.sync_user.mailbox_email,
            "kind": "email",
            "item": instance.subject,
            "external_id": "",
            "state": "unfiled",
            "last_error": instance.reason,
            "last_error_at": serializers.DateTimeField().to_representation(instance.last_seen_at),
            "updated_at": serializers.DateTimeField().to_representation(instance.last_seen_at),
            "message": UnfiledMessageSerializer(instance).data,
            "loop": None,
        }


class LoopAttentionItemSerializer(serializers.Serializer):
    """An item the loop detector holds (P3), in the shape of the other attention items: kind its
    CRM record's (contact, company, activity), state ``loop``, ``last_error`` the sentence the
    console shows, ``loop`` the hold; its id is the hold's, not an item link's."""

    def to_representation(self, instance: LoopHold) -> dict:
        flips = ", ".join(sorted(instance.fields)) or "its fields"
        at = serializers.DateTimeField().to_representation(instance.held_at)
        return {
            "id": instance.pk,
            "user": instance.sync_user.mailbox_email,
            "kind": instance.entity,
            "item": instance.subject,
            "external_id": instance.external_id,
            "state": "loop",
            "last_error": (
                f"Held by the loop detector: {flips} went back and forth between the same values over "
                "several passes; something outside writes it back. Not written until released: fix the "
                "writer first."
            ),
            "last_error_at": at,
            "updated_at": at,
            "message": None,
            "loop": LoopHoldSerializer(instance).data,
        }


class AuditEntrySerializer(serializers.ModelSerializer):
    environment = serializers.CharField(
        source="environment.name", read_only=True, allow_null=True, default=None
    )
    changes = serializers.JSONField(read_only=True)

    class Meta:
        model = AuditEntry
        fields = ["id", "at", "username", "environment", "action", "target", "changes", "via", "outcome"]
        read_only_fields = fields


class RemovedItemsSerializer(serializers.Serializer):
    removed = serializers.IntegerField(help_text="Contacts removed from the mailbox.")


class ResolveConflictSerializer(serializers.Serializer):
    keep = serializers.ChoiceField(choices=["crm", "exchange"], help_text="Which side's value to keep.")


def conflicts_of(environment: Environment):
    return Conflict.objects.filter(link__environment=environment).select_related(
        "link__sync_user", "link__contact", "link__company", "link__activity"
    )


def unresolved(queryset, resolved: bool | None):
    if resolved is None:
        return queryset
    return queryset.filter(~Q(resolved_at=None) if resolved else Q(resolved_at=None))
