"""Rows written by models/bulk.py are stored exactly as Django's own save() stores them (issue 17).

bulk.py prepares values itself for the types a pass stores (texts, keys, moments, JSON, UUIDs,
booleans) rather than through Django's chain of calls per field: every field of every model is
checked against Django's own preparation on the database of the test run (SQLite, or PostgreSQL
with DATABASE_URL), and rows written in bulk read back equal to rows saved one by one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.db import connection

from synccore import mapping
from synccore.models import Activity, Decision, DecisionOutcome, ItemLink, LinkState, SyncKind, SyncRun
from synccore.models.bulk import (
    DJANGO,
    fast_preparation,
    insert_keyed_rows,
    insert_rows,
    save_rows,
    update_fields,
)
from tests.fixtures import factories as f

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
SAMPLES = [
    None,
    "",
    "text ü €",
    "12",
    LinkState.SYNCED,  # a choices member: a str subclass
    True,
    False,
    0,
    7,
    2**40,
    1.5,
    datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
    datetime(2026, 10, 25, 2, 30, 15, 123456, tzinfo=BERLIN),
    date(2026, 2, 28),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    {"subject": ["Alt", "Neu ü"], "n": 1, "none": None},
    ["a", 1, None],
]


def driver_form(value: object) -> object:
    """What the driver gets, comparable: psycopg's Jsonb wrapper has no equality of its own."""
    if type(value).__name__ == "Jsonb":
        return ("Jsonb", value.obj, value.dumps)
    return (type(value), value)


def test_every_field_of_every_model_hands_the_driver_what_django_hands_it():
    checked = 0
    for model in apps.get_app_config("synccore").get_models():
        for field in model._meta.concrete_fields:
            fast = fast_preparation(field, connection)
            for value in SAMPLES:
                convert = fast[type(value)]
                if convert is DJANGO:
                    continue
                # Django refuses nothing bulk.py prepares itself (else it would take Django's path).
                expected = field.get_db_prep_save(value, connection)
                got = value if convert is None else convert(value)
                assert driver_form(got) == driver_form(expected), (model.__name__, field.name, value)
                checked += 1
    assert checked > 500  # the fast path covers the models' fields, not nothing


def test_a_naive_moment_takes_djangos_path_and_its_warning():
    field = ItemLink._meta.get_field("series_from")
    convert = fast_preparation(field, connection)[datetime]
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        got = convert(datetime(2026, 5, 1, 9, 0))
    with pytest.warns(RuntimeWarning):
        assert driver_form(got) == driver_form(field.get_db_prep_save(datetime(2026, 5, 1, 9, 0), connection))


def stored(model, pk: int, *, leave_out: tuple[str, ...] = ()) -> dict:
    row = model._default_manager.filter(pk=pk).values().get()
    return {k: v for k, v in row.items() if k not in ("id", *leave_out)}


def link_values(env, user, activity, **extra) -> dict:
    return {
        "environment": env,
        "sync_user": user,
        "kind": mapping.ACTIVITY,
        "activity": activity,
        "remote_id": "AAMk/ü+=",
        "remote_change_key": "CK1",
        "crm_hash": "h" * 64,
        "snapshot": {"subject": "Besprechung ü", "start": "2026-05-01T09:00:00+02:00", "attendees": ["a@b.c"], "n": None},
        "series_from": datetime(2026, 10, 25, 2, 30, 15, 123456, tzinfo=BERLIN),
        "state": LinkState.SYNCED,
        "synced_at": datetime(2026, 5, 1, 7, 0, 0, 654321, tzinfo=UTC),
        **extra,
    }


def test_links_inserted_in_bulk_read_back_as_links_saved_one_by_one():
    env = f.environment()
    user = f.sync_user(env)
    saved = ItemLink(**link_values(env, user, f.activity(env)))
    saved.save()
    bulk = ItemLink(**link_values(env, user, f.activity(env)))
    insert_keyed_rows(ItemLink, [bulk], "sync_id")
    assert bulk.pk is not None and bulk.pk != saved.pk
    leave_out = ("activity_id", "sync_id", "created_at", "updated_at")
    assert stored(ItemLink, bulk.pk, leave_out=leave_out) == stored(ItemLink, saved.pk, leave_out=leave_out)
    assert ItemLink.objects.get(pk=bulk.pk).sync_id == bulk.sync_id


def test_links_saved_in_bulk_read_back_as_links_saved_one_by_one():
    env = f.environment()
    user = f.sync_user(env)
    one = ItemLink.objects.create(**link_values(env, user, f.activity(env)))
    other = ItemLink.objects.create(**link_values(env, user, f.activity(env)))
    before = ItemLink.objects.get(pk=other.pk).updated_at
    for link in (one, other):
        link.snapshot = {"subject": "Neu", "occurrences": {"2026-05-08": {"subject": "x"}}}
        link.series_from = None
        link.state = LinkState.FAILED
        link.last_error = "Kaputt €"
        link.last_error_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=BERLIN)
    one.save()
    save_rows(ItemLink, [other])
    leave_out = ("activity_id", "sync_id", "created_at", "updated_at")
    assert stored(ItemLink, other.pk, leave_out=leave_out) == stored(ItemLink, one.pk, leave_out=leave_out)
    assert ItemLink.objects.get(pk=other.pk).updated_at > before  # auto_now stamped, as save() does


def test_activity_fields_updated_in_bulk_read_back_as_saved():
    env = f.environment()
    one, other = f.activity(env), f.activity(env)
    for activity in (one, other):
        activity.meeting_uid = f"crm-ü-{activity.pk}"
        activity.private = True
        activity.reminder_minutes = 15
        activity.due = date(2026, 2, 28)
        activity.recurrence_exdates = ["2026-05-08"]
        activity.end = activity.start + timedelta(hours=2)
    names = ["meeting_uid", "private", "reminder_minutes", "due", "recurrence_exdates", "end"]
    one.save(update_fields=names)
    update_fields(Activity, [other], names)
    mine = {k: v for k, v in stored(Activity, one.pk).items() if k in names}
    theirs = {k: v for k, v in stored(Activity, other.pk).items() if k in names}
    assert theirs.pop("meeting_uid") == f"crm-ü-{other.pk}"
    assert mine.pop("meeting_uid") == f"crm-ü-{one.pk}"
    assert theirs == mine


def test_decisions_inserted_in_bulk_read_back_as_saved():
    env = f.environment()
    user = f.sync_user(env)
    run = SyncRun.objects.create(environment=env, sync_user=user, kind=SyncKind.CALENDAR)
    values = {
        "environment_id": env.pk,
        "sync_user_id": user.pk,
        "run_id": run.pk,
        "pass_kind": SyncKind.CALENDAR,
        "entity": mapping.ACTIVITY,
        "record_id": 2**40,
        "remote_id": "AAMk",
        "subject": "Besprechung ü",
        "action": "update",
        "fields": {"subject": ["Alt", "Neu"], "start": [None, "2026-05-01T09:00:00+02:00"]},
        "rule": "K5",
        "outcome": DecisionOutcome.DONE,
        "at": datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN),
    }
    saved = Decision.objects.create(**values)
    insert_rows(Decision, [Decision(**values)])
    bulk = Decision.objects.exclude(pk=saved.pk).get()
    assert stored(Decision, bulk.pk) == stored(Decision, saved.pk)


def test_a_row_holding_an_unsaved_related_object_is_refused_as_save_refuses_it():
    env = f.environment()
    user = f.sync_user(env)
    link = ItemLink(**link_values(env, user, Activity(environment=env, subject="not saved")))
    with pytest.raises(ValueError, match="unsaved related object"):
        insert_rows(ItemLink, [link])


def test_a_row_given_its_related_object_after_that_was_saved_takes_its_key_as_save_does():
    env = f.environment()
    user = f.sync_user(env)
    activity = Activity(environment=env, subject="later", start=datetime(2026, 5, 1, 9, tzinfo=UTC))
    activity.end = activity.start + timedelta(hours=1)
    link = ItemLink(**link_values(env, user, activity))
    activity.save()  # the link still holds no key for it
    insert_keyed_rows(ItemLink, [link], "sync_id")
    assert ItemLink.objects.get(pk=link.pk).activity_id == activity.pk


def test_a_row_whose_key_was_changed_forgets_the_related_object_it_held_as_save_does():
    env = f.environment()
    user = f.sync_user(env)
    first, second = f.activity(env), f.activity(env)
    link = ItemLink.objects.create(**link_values(env, user, first))
    link.activity_id = second.pk
    save_rows(ItemLink, [link])
    assert ItemLink.objects.get(pk=link.pk).activity_id == second.pk
    assert link.activity == second  # read again by its key, not the one held before
