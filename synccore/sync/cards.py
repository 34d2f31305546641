"""CRM contacts and companies → contact cards, through the environment's field mapping (C8)."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from synccore import mapping
from synccore.mailbox.base import ContactCard, PostalAddress
from synccore.models import Company, Contact, Environment, FieldMapping, custom

# Exchange's limits on contact properties (longer values are refused by the server).
TEXT_LIMIT = 255
EMAIL_LIMIT = 254
NOTES_LIMIT = 32_000
EMAIL_FIELDS = ("email_address_1", "email_address_2", "email_address_3")


class BadInput(ValueError):
    """An item the synchronizer cannot write as it is; the message says why, for people."""


def _address(record: Contact | Company) -> PostalAddress:
    return PostalAddress(
        street=record.street.strip(),
        city=record.city.strip(),
        state=record.state.strip(),
        postal_code=record.postal_code.strip(),
        country=record.country.iso_code if record.country_id and record.country else "",
    )


CONTACT_VALUES: dict[str, Callable[[Contact], Any]] = {
    "first_name": lambda c: c.first_name,
    "middle_name": lambda c: c.middle_name,
    "last_name": lambda c: c.last_name,
    "company_display": lambda c: c.company.display_name if c.company_id and c.company else "",
    "job_title": lambda c: c.job_title,
    "department": lambda c: c.department,
    "email1": lambda c: c.email1,
    "email2": lambda c: c.email2,
    "email3": lambda c: c.email3,
    "business_phone": lambda c: c.business_phone,
    "mobile_phone": lambda c: c.mobile_phone,
    "home_phone": lambda c: c.home_phone,
    "fax": lambda c: c.fax,
    "business_address": _address,
    "comment": lambda c: c.comment,
    "website": lambda c: c.website,
}

COMPANY_VALUES: dict[str, Callable[[Company], Any]] = {
    "name": lambda c: c.name,
    "company_display": lambda c: c.display_name,
    "email": lambda c: c.email,
    "phone": lambda c: c.phone,
    "fax": lambda c: c.fax,
    "business_address": _address,
    "website": lambda c: c.website,
    "comment": lambda c: c.comment,
}


@dataclass(frozen=True)
class Mapping:
    """The enabled rows of one entity: Exchange field → CRM field."""

    rows: tuple[tuple[str, str], ...]

    @classmethod
    def load(cls, environment: Environment) -> dict[str, Mapping]:
        rows: dict[str, list[tuple[str, str]]] = {mapping.CONTACT: [], mapping.COMPANY: []}
        for entity, crm_field, exchange_field in FieldMapping.objects.filter(
            environment=environment, enabled=True, entity__in=rows
        ).values_list("entity", "crm_field", "exchange_field"):
            rows[entity].append((exchange_field, crm_field))
        return {entity: cls(tuple(sorted(pairs))) for entity, pairs in rows.items()}


def _clean(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _fill(
    card: ContactCard, record: Contact | Company, rows: Mapping, values: dict[str, Callable[[Any], Any]]
) -> None:
    """The enabled rows onto the card; only their fields are written and compared."""
    for exchange_field, crm_field in rows.rows:
        if mapping.is_custom(crm_field):
            value = custom.as_text((record.custom_fields or {}).get(mapping.custom_key(crm_field)))
        elif crm_field in values:
            value = values[crm_field](record)
        else:
            continue
        if mapping.is_property(exchange_field):
            card.properties[mapping.property_name(exchange_field)] = _clean(value)
        elif exchange_field in ContactCard.MAPPED:
            setattr(card, exchange_field, _clean(value))
    card.mapped_fields = tuple(exchange for exchange, _ in rows.rows if exchange in ContactCard.MAPPED)


def contact_card(contact: Contact, rows: Mapping) -> ContactCard:
    card = ContactCard()
    _fill(card, contact, rows, CONTACT_VALUES)
    full_name = " ".join(p for p in (card.given_name, card.middle_name, card.surname) if p)
    card.display_name = full_name or card.company_name
    card.file_as = ", ".join(
        p for p in (card.surname, " ".join(x for x in (card.given_name, card.middle_name) if x)) if p
    )
    return card


def company_card(company: Company, rows: Mapping) -> ContactCard:
    card = ContactCard()
    _fill(card, company, rows, COMPANY_VALUES)
    card.display_name = card.file_as = company.display_name.strip()
    return card


def validate_card(card: ContactCard, *, is_company: bool) -> None:
    """Raise BadInput with a readable reason for data Exchange would refuse or we should not write."""
    if is_company:
        if not card.display_name:
            raise BadInput("The company has no name.")
    elif not card.surname:
        raise BadInput("The contact has no last name.")
    for name in EMAIL_FIELDS:
        value = getattr(card, name)
        if not value:
            continue
        if len(value) > EMAIL_LIMIT:
            raise BadInput(f"{_label(name)} is longer than {EMAIL_LIMIT} characters.")
        if not _valid_email(value):
            raise BadInput(f"{_label(name)} “{value}” is not a valid e-mail address.")
    for name, value in card.mapped_values().items():
        limit = NOTES_LIMIT if name == "notes" or mapping.is_property(name) else TEXT_LIMIT
        if isinstance(value, str) and len(value) > limit:
            raise BadInput(
                f"{_label(name)} is longer than Exchange allows ({len(value)} > {limit} characters)."
            )
        if isinstance(value, dict):
            for part, text in value.items():
                if len(text) > TEXT_LIMIT:
                    raise BadInput(f"The business address {part} is longer than {TEXT_LIMIT} characters.")


@functools.lru_cache(maxsize=4096)
def _valid_email(value: str) -> bool:
    """Django's check of an address; every pass checks every card again (C9): cached."""
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


def _label(name: str) -> str:
    if mapping.is_property(name):
        return f"The Outlook custom field “{mapping.property_name(name)}”"
    return mapping.CONTACT_EXCHANGE_FIELDS.get(name, name.replace("_", " ").capitalize())


def card_hash(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def changed_fields(values: dict[str, Any], snapshot: dict[str, Any]) -> list[str]:
    """Fields whose value differs from the last agreed snapshot (C8: only those are written)."""
    return [name for name, value in values.items() if snapshot.get(name, _MISSING) != value]


def dropped_fields(values: dict[str, Any], snapshot: dict[str, Any]) -> list[str]:
    """Fields we wrote with a value that no enabled row maps any more: cleared once (C8), then
    left to Outlook — neither written nor compared again."""
    return [name for name, value in (snapshot or {}).items() if name not in values and _filled(value)]


def _filled(value: Any) -> bool:
    if isinstance(value, dict):
        return any(value.values())
    return value not in ("", None)


_MISSING = object()
