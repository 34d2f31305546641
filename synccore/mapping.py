"""The field-mapping vocabulary: which CRM fields may be mapped to which Exchange fields.

The Exchange field names are the attribute names of the mailbox dataclasses
(``synccore.mailbox.base.ContactCard`` / ``CalendarEvent``), so the engine can apply a mapping
row without knowing the backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from synccore.mailbox.base import PROPERTY_PREFIX

CONTACT = "contact"
COMPANY = "company"
ACTIVITY = "activity"
TASK = "task"
ENTITY_CHOICES = [(CONTACT, "Contact"), (COMPANY, "Company"), (ACTIVITY, "Activity"), (TASK, "Task")]

CRM_TO_EXCHANGE = "crm_to_exchange"
EXCHANGE_TO_CRM = "exchange_to_crm"
BOTH = "both"
DIRECTION_CHOICES = [(CRM_TO_EXCHANGE, "CRM → Exchange"), (BOTH, "Both ways"), (EXCHANGE_TO_CRM, "Exchange → CRM")]
# Contacts and companies flow one way (C6): an Outlook edit is overwritten with the CRM's values,
# so only activities may map a field both ways.
TWO_WAY_ENTITIES = frozenset({ACTIVITY, TASK})
ONE_WAY_MESSAGE = (
    "Contacts and companies are synchronized one way, CRM → Exchange: an edit made in Outlook is "
    "overwritten by the CRM's value. Only activity and task fields can go both ways or Exchange → CRM."
)


def direction_choices(entity: str) -> list[tuple[str, str]]:
    """The directions a row of this entity may take."""
    if entity in TWO_WAY_ENTITIES:
        return list(DIRECTION_CHOICES)
    return [(CRM_TO_EXCHANGE, dict(DIRECTION_CHOICES)[CRM_TO_EXCHANGE])]

CONTACT_EXCHANGE_FIELDS = {
    "given_name": "First name",
    "middle_name": "Middle name",
    "surname": "Last name",
    "company_name": "Company",
    "job_title": "Job title",
    "department": "Department",
    "email_address_1": "E-mail 1",
    "email_address_2": "E-mail 2",
    "email_address_3": "E-mail 3",
    "business_phone": "Business phone",
    "business_phone_2": "Business phone 2",
    "mobile_phone": "Mobile phone",
    "home_phone": "Home phone",
    "business_fax": "Business fax",
    "business_address": "Business address",
    "notes": "Notes",
    "business_homepage": "Web page",
    "office_location": "Office",
    "assistant_name": "Assistant",
}

CRM_CONTACT_FIELDS = {
    "first_name": "First name",
    "middle_name": "Middle name",
    "last_name": "Last name",
    "company_display": "Company (Name - Division)",
    "job_title": "Job title",
    "department": "Department",
    "email1": "E-mail 1",
    "email2": "E-mail 2",
    "email3": "E-mail 3",
    "business_phone": "Business phone",
    "mobile_phone": "Mobile phone",
    "home_phone": "Home phone",
    "fax": "Fax",
    "business_address": "Business address (with country ISO code)",
    "comment": "Comment",
    "website": "Web site",
}

CRM_COMPANY_FIELDS = {
    "name": "Name",
    "company_display": "Name - Division",
    "email": "E-mail",
    "phone": "Phone",
    "fax": "Fax",
    "business_address": "Address (with country ISO code)",
    "website": "Web site",
    "comment": "Comment",
}

ACTIVITY_EXCHANGE_FIELDS = {
    "subject": "Subject",
    "body": "Body",
    "start": "Start",
    "end": "End",
    "location": "Location",
    "is_private": "Private (sensitivity)",
    "reminder_minutes": "Reminder",
}

CRM_ACTIVITY_FIELDS = {
    "subject": "Description",
    "comment": "Comment",
    "start": "Start",
    "end": "End",
    "location": "Location",
    "private": "Private",
    "reminder_minutes": "Reminder",
}

# Tasks (T3): the Exchange names are ``TaskItem``'s (the To Do names over Graph).
TASK_EXCHANGE_FIELDS = {
    "subject": "Subject",
    "body": "Body",
    "status": "Status (completion)",
    "due": "Due date",
    "start": "Start date",
    "importance": "Importance",
    "reminder": "Reminder",
}

CRM_TASK_FIELDS = {
    "subject": "Description",
    "comment": "Comment",
    "status": "Status",
    "due": "Due date",
    "start": "Start date",
    "priority": "Priority",
    "reminder_minutes": "Reminder",
}

CRM_FIELDS = {
    CONTACT: CRM_CONTACT_FIELDS,
    COMPANY: CRM_COMPANY_FIELDS,
    ACTIVITY: CRM_ACTIVITY_FIELDS,
    TASK: CRM_TASK_FIELDS,
}
EXCHANGE_FIELDS = {
    CONTACT: CONTACT_EXCHANGE_FIELDS,
    COMPANY: CONTACT_EXCHANGE_FIELDS,
    ACTIVITY: ACTIVITY_EXCHANGE_FIELDS,
    TASK: TASK_EXCHANGE_FIELDS,
}


@dataclass(frozen=True)
class DefaultRow:
    entity: str
    crm_field: str
    exchange_field: str
    fixed: bool  # a fixed row is locked: the sync depends on it (names, times)
    direction: str = CRM_TO_EXCHANGE


DEFAULT_ROWS: tuple[DefaultRow, ...] = (
    DefaultRow(CONTACT, "first_name", "given_name", True),
    DefaultRow(CONTACT, "middle_name", "middle_name", True),
    DefaultRow(CONTACT, "last_name", "surname", True),
    DefaultRow(CONTACT, "company_display", "company_name", False),
    DefaultRow(CONTACT, "email1", "email_address_1", False),
    DefaultRow(CONTACT, "email2", "email_address_2", False),
    DefaultRow(CONTACT, "email3", "email_address_3", False),
    DefaultRow(CONTACT, "business_phone", "business_phone", False),
    DefaultRow(CONTACT, "mobile_phone", "mobile_phone", False),
    DefaultRow(CONTACT, "job_title", "job_title", False),
    DefaultRow(CONTACT, "comment", "notes", False),
    DefaultRow(CONTACT, "business_address", "business_address", False),
    DefaultRow(COMPANY, "company_display", "company_name", True),
    DefaultRow(COMPANY, "email", "email_address_1", False),
    DefaultRow(COMPANY, "phone", "business_phone", False),
    DefaultRow(COMPANY, "business_address", "business_address", False),
    DefaultRow(COMPANY, "comment", "notes", False),
    DefaultRow(ACTIVITY, "subject", "subject", True, BOTH),
    DefaultRow(ACTIVITY, "comment", "body", False, BOTH),
    DefaultRow(ACTIVITY, "start", "start", True, BOTH),
    DefaultRow(ACTIVITY, "end", "end", True, BOTH),
    DefaultRow(ACTIVITY, "location", "location", False, BOTH),
    DefaultRow(ACTIVITY, "private", "is_private", False, BOTH),
    DefaultRow(ACTIVITY, "reminder_minutes", "reminder_minutes", False, CRM_TO_EXCHANGE),
    # T3: description → subject, status, due, start, comment → body (K12), priority → importance,
    # the reminder per the settings' default (K13), written on create only.
    DefaultRow(TASK, "subject", "subject", True, BOTH),
    DefaultRow(TASK, "status", "status", True, BOTH),
    DefaultRow(TASK, "due", "due", False, BOTH),
    DefaultRow(TASK, "start", "start", False, BOTH),
    DefaultRow(TASK, "comment", "body", False, BOTH),
    DefaultRow(TASK, "priority", "importance", False, BOTH),
    DefaultRow(TASK, "reminder_minutes", "reminder", False, CRM_TO_EXCHANGE),
)


# --- Custom CRM fields ---------------------------------------------------------------------------
# A record's ``custom_fields`` key is offered as the CRM field ``custom:<key>`` for every key in
# use in the environment; it maps to a free Exchange field or to ``property:<Name>``, a named
# extended property of the product's own property set (Outlook lists it among the item's
# custom fields). The contact engine writes them for contacts and companies, the calendar engine for
# activities (appointments and meetings) and the task engine for tasks.
CUSTOM_PREFIX = "custom:"
CUSTOM_ENTITIES = frozenset({CONTACT, COMPANY, ACTIVITY, TASK})
# The standard Exchange fields a custom activity or task field may fill (the others have a meaning
# the engines depend on), with the custom type they take (None: any, written as text). Such a field
# is free only while its own row is disabled: one enabled row per Exchange field.
CUSTOM_STANDARD = {
    ACTIVITY: {"location": None},
    TASK: {"start": "date", "due": "date"},
}
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
# Structured Exchange fields: only the matching structured CRM field fills them.
STRUCTURED = frozenset({"business_address"})


def registry_entity(entity: str) -> str:
    """The entity whose custom keys a mapping entity offers: a task is an activity of type Task, so
    it has the activities' keys (the CRM API and the back office record them as activity keys)."""
    return ACTIVITY if entity == TASK else entity


def is_custom(crm_field: str) -> bool:
    return crm_field.startswith(CUSTOM_PREFIX)


def custom_key(crm_field: str) -> str:
    return crm_field[len(CUSTOM_PREFIX) :]


def is_property(exchange_field: str) -> bool:
    return exchange_field.startswith(PROPERTY_PREFIX) and bool(
        _NAME_RE.match(exchange_field[len(PROPERTY_PREFIX) :])
    )


def property_name(exchange_field: str) -> str:
    return exchange_field[len(PROPERTY_PREFIX) :]


def crm_fields(entity: str, custom_keys: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The CRM fields a row of this entity may take: the built-in ones, then the custom keys."""
    fields = dict(CRM_FIELDS.get(entity, {}))
    if entity in CUSTOM_ENTITIES:
        fields.update({CUSTOM_PREFIX + key: f"Custom: {key}" for key in sorted(custom_keys)})
    return fields


def exchange_fields(entity: str, custom_keys: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The Exchange fields offered for this entity: the built-in ones, then an extended property
    named after each custom key (any ``property:<Name>`` is accepted)."""
    fields = dict(EXCHANGE_FIELDS.get(entity, {}))
    if entity in CUSTOM_ENTITIES:
        fields.update(
            {PROPERTY_PREFIX + key: f"Outlook custom field “{key}”" for key in sorted(custom_keys)}
        )
    return fields


def pair_problem(entity: str, crm_field: str, exchange_field: str, custom_type: str | None = None) -> str:
    """Why this CRM field cannot fill this Exchange field ('' when it can); ``custom_type``: the
    type of a custom CRM field's key (text, number, date)."""
    if (crm_field in STRUCTURED) != (exchange_field in STRUCTURED):
        return "An address maps only to an address."
    standard = CUSTOM_STANDARD.get(entity)
    if standard is None:
        return ""
    if is_property(exchange_field):
        # The calendar and task engines carry their own fields in the item's own fields only.
        return "" if is_custom(crm_field) else f"Only a custom field maps to an Outlook custom field for a {entity}."
    if is_custom(crm_field):
        if exchange_field not in standard:
            names = ", ".join(EXCHANGE_FIELDS[entity][name] for name in standard)
            return (
                f"A custom {entity} field maps to an Outlook custom field (property:<Name>) or to one of: "
                f"{names} (with its own row disabled)."
            )
        wanted = standard[exchange_field]
        if wanted and custom_type and custom_type != wanted:
            return f"{EXCHANGE_FIELDS[entity][exchange_field]} takes a {wanted} custom field only."
    return ""
