"""A CRM record loaded with columns left unread (``defer``, as the calendar pass loads its
activities) holds what a full load holds, and reads a left-out column when it is asked for."""

from __future__ import annotations

import pytest
from django.forms.models import model_to_dict

from synccore.models import Activity
from synccore.sync.calendar_plan import NOT_CALENDAR
from tests.fixtures import factories as f

pytestmark = pytest.mark.django_db


def test_an_activity_loaded_without_its_mail_and_task_columns_reads_as_a_full_load():
    env = f.environment()
    made = f.activity(env, location="Room 1", custom_fields={"k": 1}, recipients=["a@b.example"], body="mail text")
    full = Activity.all_objects.get(pk=made.pk)
    part = Activity.all_objects.defer(*NOT_CALENDAR).get(pk=made.pk)
    assert part.get_deferred_fields() == {Activity._meta.get_field(name).attname for name in NOT_CALENDAR}
    read = [f.attname for f in Activity._meta.concrete_fields if f.name not in NOT_CALENDAR]
    assert {name: getattr(part, name) for name in read} == {name: getattr(full, name) for name in read}
    assert (part.recipients, part.body) == (["a@b.example"], "mail text")  # read when asked
    assert model_to_dict(part) == model_to_dict(full)
