"""Shapes of the CRM integration objects (pinned by the issue); synccore.crmio translates them.

Every field but ``external_id`` is optional on upsert: an update changes only the fields given,
a create takes the model's defaults for the others. Responses are produced by crmio.export.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from synccore import crmio
from synccore.models import ActivityType, AttendeeType, EmailDirection, TaskPriority, TaskStatus


def _text(max_length: int | None = None, **kwargs) -> serializers.CharField:
    return serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=max_length, **kwargs
    )


@extend_schema_field(OpenApiTypes.STR)
class MomentField(serializers.CharField):
    """ISO 8601 date-time with offset; a date (YYYY-MM-DD, end exclusive) for all-day activities."""


@extend_schema_field(
    {"type": "object", "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "number"}]}}
)
class CustomFieldsField(serializers.JSONField):
    """Custom CRM fields: key → text, number or date (YYYY-MM-DD); merged key by key on upsert,
    null removes a key. crmio checks the keys and the types."""


def _custom() -> CustomFieldsField:
    return CustomFieldsField(
        required=False,
        allow_null=True,
        help_text=(
            "Custom fields: key → text, number or date (YYYY-MM-DD). An upsert merges them key by "
            "key; null removes a key. A key keeps the type it was first given."
        ),
    )


class CrmRecordSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=100)
    updated_at = serializers.DateTimeField(read_only=True)
    deleted = serializers.BooleanField(
        read_only=True,
        help_text=(
            "A tombstone: deleted in the CRM and still being removed from mailboxes, or deleted by the "
            "synchronizer (deleted in Exchange). Listed with include_deleted until the retention age."
        ),
    )

    def to_representation(self, instance):
        return crmio.export(instance)


class CompanySerializer(CrmRecordSerializer):
    name = _text(200)
    division = _text(100)
    country = _text(2, help_text="ISO 3166-1 alpha-2")
    synchronize = serializers.BooleanField(required=False)
    email = _text(254)
    phone = _text(50)
    fax = _text(50)
    website = _text(200)
    street = _text(200)
    postal_code = _text(20)
    city = _text(100)
    state = _text(100)
    comment = _text()
    custom_fields = _custom()


class ContactSerializer(CrmRecordSerializer):
    first_name = _text(100)
    middle_name = _text(100)
    last_name = _text(100)
    company_external_id = _text(100)
    job_title = _text(100)
    department = _text(100)
    emails = serializers.ListField(
        child=serializers.CharField(max_length=254, allow_blank=True), required=False, max_length=3
    )
    business_phone = _text(50)
    mobile_phone = _text(50)
    home_phone = _text(50)
    fax = _text(50)
    website = _text(200)
    street = _text(200)
    postal_code = _text(20)
    city = _text(100)
    state = _text(100)
    comment = _text()
    country = _text(2, help_text="ISO 3166-1 alpha-2")
    language = _text(2, help_text="ISO 639-1")
    synchronize = serializers.BooleanField(required=False)
    rep_email = _text(254)
    sales_groups = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=crmio.MAX_SALES_GROUPS
    )
    favorite_of = serializers.ListField(
        child=serializers.CharField(max_length=254), required=False, max_length=crmio.MAX_FAVORITES
    )
    custom_fields = _custom()


class EmployeeSerializer(CrmRecordSerializer):
    name = _text(200)
    email = _text(254)
    username = _text(150)


class AttendeeSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254, allow_blank=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    type = serializers.ChoiceField(choices=AttendeeType.values, required=False)
    invite = serializers.BooleanField(required=False)
    synchronized = serializers.BooleanField(required=False)
    sent_to_synchronizer = serializers.BooleanField(required=False)


class OccurrenceExceptionSerializer(serializers.Serializer):
    original_start = serializers.CharField()
    start = serializers.CharField(required=False)
    end = serializers.CharField(required=False)
    subject = serializers.CharField(required=False, allow_blank=True)
    location = serializers.CharField(required=False, allow_blank=True)


class EmailAddressSerializer(serializers.Serializer):
    address = serializers.CharField()
    name = serializers.CharField()


class RecipientSerializer(EmailAddressSerializer):
    type = serializers.ChoiceField(choices=["to", "cc"])


class ActivitySerializer(CrmRecordSerializer):
    type = serializers.ChoiceField(choices=ActivityType.values, required=False)
    subject = _text(255)
    start = MomentField(required=False)
    end = MomentField(required=False)
    all_day = serializers.BooleanField(required=False)
    time_zone = _text(64, help_text="IANA, e.g. Europe/Amsterdam")
    location = _text(255)
    comment = _text()
    custom_fields = _custom()
    private = serializers.BooleanField(required=False)
    synchronize = serializers.BooleanField(required=False)
    created_by_erp = serializers.BooleanField(required=False)
    organizer_email = _text(254)
    recurrence = _text(help_text="null, or an RFC 5545 RRULE such as FREQ=WEEKLY;COUNT=5")
    exdates = serializers.ListField(child=serializers.CharField(), required=False, max_length=crmio.MAX_EXDATES)
    exceptions = OccurrenceExceptionSerializer(many=True, required=False, max_length=crmio.MAX_EXCEPTIONS)
    reminder_minutes = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=40320)
    attendees = AttendeeSerializer(many=True, required=False, max_length=crmio.MAX_ATTENDEES)
    warnings = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="What the synchronizer cannot do with the activity, e.g. an employee attendee without an address.",
    )
    # A task's own fields (type task); a task needs no start or end: they default to its due day.
    status = serializers.ChoiceField(choices=TaskStatus.values, required=False)
    due = _text(40, help_text="A task's due day (YYYY-MM-DD), or a date-time taken as its day in time_zone")
    completed_at = MomentField(required=False, allow_null=True)
    priority = serializers.ChoiceField(choices=TaskPriority.values, required=False)
    responsible_email = _text(254, help_text="The employee whose mailbox gets the task")
    contact_external_id = _text(100)
    company_external_id = _text(100)
    # A filed e-mail's own fields (type email, E3): written by the synchronizer, read here.
    direction = serializers.ChoiceField(
        choices=EmailDirection.values, read_only=True, allow_null=True, help_text="in (received) | out (sent)"
    )
    message_id = serializers.CharField(read_only=True, allow_null=True, help_text="The Internet message id")
    sender = EmailAddressSerializer(read_only=True, allow_null=True)
    recipients = RecipientSerializer(many=True, read_only=True, help_text="To and cc")
    sent_at = serializers.CharField(read_only=True, allow_null=True, help_text="ISO 8601, in time_zone")
    body = serializers.CharField(read_only=True, help_text="The message's text, capped (the settings' email_body_limit)")
    attachment_names = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Names only: attachments are never copied"
    )
    filing_candidates = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        read_only=True,
        help_text="Filed without a link: the CRM records of the same rank it matched (kind, external_id, name)",
    )


SERIALIZERS = {
    "companies": CompanySerializer,
    "contacts": ContactSerializer,
    "employees": EmployeeSerializer,
    "activities": ActivitySerializer,
}


class UpsertResultSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["created", "updated", "error"])
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class BulkUpsertResponseSerializer(serializers.Serializer):
    results = UpsertResultSerializer(many=True)
