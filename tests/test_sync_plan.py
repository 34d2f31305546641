"""The engines decide before they write, and give their decisions as plain data
(``synccore/sync/actions.py``): what a preview of a pass prints."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from synccore import mapping
from synccore.mailbox.base import ContactCard
from synccore.models import ItemLink, SyncKind, SyncRun
from synccore.sync import actions
from synccore.sync.actions import Action, ItemKey
from synccore.sync.calendar import CalendarPass, run_calendar_pass
from synccore.sync.connection import open_backend
from synccore.sync.contacts import Desired, Plan
from synccore.sync.runs import PassContext
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews")]


def test_an_action_reads_as_one_line_of_a_preview():
    action = Action(
        actions.UPDATE,
        ItemKey(7, "AAMk1", "Review"),
        actions.EXCHANGE,
        {"subject": ("A", "B")},
        "Changed in the CRM.",
        "K8",
    )
    assert action.describe() == "would update “Review” (#7) in Exchange: subject: 'A' → 'B' (K8)"
    assert action in {action}  # frozen: hashable, though its fields are a dict


def test_the_contact_plan_gives_its_decisions_as_actions():
    card = ContactCard(given_name="Anna", surname="Jansen", display_name="Anna Jansen")
    new = ItemLink(kind=mapping.CONTACT, contact_id=3)
    known = ItemLink(kind=mapping.CONTACT, contact_id=4, remote_id="AAMk4", snapshot={"surname": "Jans"})
    gone = ItemLink(kind=mapping.CONTACT, contact_id=5, remote_id="AAMk5")
    plan = Plan(
        creates=[(new, Desired(mapping.CONTACT, 3, card, {"surname": "Jansen"}, "h"))],
        updates=[(known, Desired(mapping.CONTACT, 4, card, {"surname": "Jansen"}, "h"), ["surname"])],
        deletes=[gone],
    )
    kinds = [(a.kind, a.item.record_id, a.rule) for a in plan.actions()]
    assert kinds == [("delete", 5, "C7"), ("create", 3, "C2"), ("update", 4, "C6")]
    assert plan.actions()[2].fields == {"surname": ("Jans", "Jansen")}


def test_k8_the_calendar_planner_decides_a_push_without_writing_anything(crm):
    start = timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)
    activity = f.activity(crm.env, subject="Review", start=start, organizer=crm.alice.employee)
    run_calendar_pass(crm.alice.pk)
    activity.subject = "Review (CRM)"
    activity.save()
    link = ItemLink.objects.select_related("activity").get(activity=activity)
    backend = open_backend(crm.env.settings)
    try:
        run = SyncRun(sync_user=crm.alice, kind=SyncKind.CALENDAR)
        engine = CalendarPass(crm.alice, backend, PassContext(), run)
        crm.sim.counters.reset()
        steps = engine.planner.linked(link, engine.my_activities()[activity.pk], None, False)
    finally:
        backend.close()
    assert crm.sim.counters.total() == 0
    (step,) = steps
    action = step.action()
    assert (action.kind, action.side, action.rule) == ("update", "exchange", "K8")
    assert action.item == ItemKey(activity.pk, link.remote_id, "Review (CRM)")
    assert action.fields == {"subject": ("Review", "Review (CRM)")}
    link.refresh_from_db()
    assert link.snapshot["subject"] == "Review"
    assert crm.mailbox().events()[0].props["Subject"] == "Review"
