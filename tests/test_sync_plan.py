"""The engines decide before they write, and give their decisions as plain data
(``synccore/sync/actions.py``): what a preview of a pass prints."""

from __future__ import annotations

import pytest

from synccore import mapping
from synccore.mailbox.base import ContactCard
from synccore.models import ItemLink
from synccore.sync import actions
from synccore.sync.actions import Action, ItemKey
from synccore.sync.contacts import Desired, Plan

pytestmark = pytest.mark.django_db


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

