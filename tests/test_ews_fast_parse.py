"""SyncFolderItems (IdOnly) and CreateItem answers are read for ids only (client.py), through
exchangelib's own services: the same changes, tokens, errors, retries and request counts as
exchangelib's generic parsing into whole items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from exchangelib import Contact
from exchangelib.errors import ErrorFolderNotFound
from exchangelib.properties import ItemId
from exchangelib.services import CreateItem
from exchangelib.util import MNS, TNS
from lxml import etree

from synccore.mailbox import base
from synccore.mailbox.base import CalendarEvent, ConnectionConfig, ContactCard, RemoteRef
from synccore.mailbox.ews import backend as ews_backend
from synccore.mailbox.ews.backend import EwsBackend
from synccore.mailbox.ews.client import _IdOnlyCreateItem, _IdOnlySyncFolderItems, item_result
from tests.fixtures.ews_offline import offline_account

ALICE = "alice@contoso.example"


@pytest.fixture
def ews(exchange_sim):
    user, password = exchange_sim.credentials
    backend = EwsBackend(
        ConnectionConfig(
            backend="ews", ews_url=exchange_sim.url, username=user, password=password, batch_size=4
        )
    )
    yield backend
    backend.close()


def generic_changes(ews: EwsBackend, folder_id: str, token: str) -> tuple[list, list, str]:
    """What exchangelib's own sync_items (whole items) reports, for comparison."""
    folder = ews.folder(ews.account(ALICE), folder_id)
    changed, deleted = [], []
    for change_type, item in folder.sync_items(
        sync_state=token or None, only_fields=[], max_changes_returned=3
    ):
        if change_type == "delete":
            deleted.append(item.id)
        elif change_type in ("create", "update"):
            changed.append(RemoteRef(item.id, item.changekey or "", folder_id))
    return changed, deleted, folder.item_sync_state


def test_changes_over_several_pages_are_the_ones_exchangelib_reads(exchange_sim, ews, monkeypatch):
    monkeypatch.setattr(ews_backend, "SYNC_PAGE", 3)
    alice = exchange_sim.user(ALICE)
    folder_id = ews.ensure_contact_folder(ALICE, "")
    made = [alice.create_contact(GivenName=f"Ann {n}", Surname="Lee") for n in range(8)]

    before = exchange_sim.counters["SyncFolderItems"]
    first = ews.contact_changes(ALICE, folder_id, "")
    assert exchange_sim.counters["SyncFolderItems"] - before == 3  # 3 + 3 + 2 changes
    assert sorted(r.item_id for r in first.changed) == sorted(i.id for i in made)
    assert all(r.change_key and r.folder_id == folder_id for r in first.changed)
    assert first.deleted == [] and first.token

    changed, deleted, _ = generic_changes(ews, folder_id, "")
    assert (first.changed, first.deleted) == (changed, deleted)

    alice.edit(made[0], Surname="Ng")
    alice.delete(made[1], hard=True)
    second = ews.contact_changes(ALICE, folder_id, first.token)
    assert [r.item_id for r in second.changed] == [made[0].id]
    assert (
        second.changed[0].change_key != next(r for r in first.changed if r.item_id == made[0].id).change_key
    )
    assert second.deleted == [made[1].id]
    assert (second.changed, second.deleted) == generic_changes(ews, folder_id, first.token)[:2]

    idle = ews.contact_changes(ALICE, folder_id, second.token)
    assert (idle.changed, idle.deleted, bool(idle.token)) == ([], [], True)


def test_an_invalid_sync_state_is_an_invalid_sync_token(exchange_sim, ews):
    folder_id = ews.ensure_contact_folder(ALICE, "")
    exchange_sim.faults.invalid_sync_state(times=1)
    with pytest.raises(base.InvalidSyncToken):
        ews.contact_changes(ALICE, folder_id, "")


def test_a_busy_server_is_waited_for_and_asked_again(exchange_sim, ews):
    exchange_sim.user(ALICE).create_contact(GivenName="Ann")
    folder_id = ews.ensure_contact_folder(ALICE, "")
    exchange_sim.faults.server_busy(times=1, back_off_ms=10, operation="SyncFolderItems")
    before = ews.requests
    page = ews.contact_changes(ALICE, folder_id, "")
    assert len(page.changed) == 1
    assert ews.requests - before == 2


def test_read_flag_changes_are_read_for_their_ids():
    t = "http://schemas.microsoft.com/exchange/services/2006/types"
    service = _IdOnlySyncFolderItems(account=offline_account())
    answers = {
        "Create": f'<t:Create xmlns:t="{t}"><t:Message><t:ItemId Id="a" ChangeKey="1"/></t:Message></t:Create>',
        "Update": f'<t:Update xmlns:t="{t}"><t:CalendarItem><t:ItemId Id="b" ChangeKey="2"/></t:CalendarItem></t:Update>',
        "Delete": f'<t:Delete xmlns:t="{t}"><t:ItemId Id="c" ChangeKey="3"/></t:Delete>',
        "ReadFlagChange": f'<t:ReadFlagChange xmlns:t="{t}"><t:ItemId Id="d" ChangeKey="4"/><t:IsRead>true</t:IsRead></t:ReadFlagChange>',
    }
    read = [service._elem_to_obj(etree.fromstring(xml)) for xml in answers.values()]
    assert read == [
        ("create", "a", "1"),
        ("update", "b", "2"),
        ("delete", "c", "3"),
        ("read_flag_change", "d", "4"),
    ]
    assert ItemId.response_tag() == f"{{{t}}}ItemId"


def test_created_items_answer_their_ids_and_change_keys_in_order(exchange_sim, ews):
    alice = exchange_sim.user(ALICE)
    folder_id = ews.ensure_contact_folder(ALICE, "")
    cards = [ContactCard(given_name=f"Ann {n}", surname="Lee", sync_id=f"crm-{n}") for n in range(6)]
    cards.insert(2, ContactCard(given_name="x" * 300))  # refused before sending: this card only
    before = exchange_sim.counters["CreateItem"]
    results = ews.create_contacts(ALICE, folder_id, cards)
    assert exchange_sim.counters["CreateItem"] - before == 2  # 6 valid cards in batches of 4
    assert isinstance(results[2].error, base.InvalidItem)
    written = [r for n, r in enumerate(results) if n != 2]
    assert all(r.ok and r.ref.folder_id == folder_id for r in written)
    stored = {i.id: i for i in alice.items("contacts")}
    assert [stored[r.ref.item_id].props["GivenName"] for r in written] == [f"Ann {n}" for n in range(6)]
    assert all(r.ref.change_key == stored[r.ref.item_id].changekey for r in written)


def test_a_create_in_a_missing_folder_fails_as_with_exchangelib_s_own_parsing(exchange_sim, ews):
    folder_id = ews.ensure_contact_folder(ALICE, "Gone")
    exchange_sim.user(ALICE).store.delete_folder(folder_id)
    with pytest.raises(base.ItemNotFound, match="ErrorFolderNotFound"):
        ews.create_contacts(ALICE, folder_id, [ContactCard(given_name="Ann"), ContactCard(given_name="Bo")])
    account = ews.account(ALICE)
    with pytest.raises(ErrorFolderNotFound):
        account.bulk_create(folder=ews.folder(account, folder_id), items=[Contact(display_name="Ann")])


CREATE_ANSWER = """<m:CreateItemResponse xmlns:m="{m}" xmlns:t="{t}"><m:ResponseMessages>
<m:CreateItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>
  <m:Items><t:Contact><t:ItemId Id="id-1" ChangeKey="ck-1"/></t:Contact></m:Items></m:CreateItemResponseMessage>
<m:CreateItemResponseMessage ResponseClass="Error"><m:MessageText>Could not save</m:MessageText>
  <m:ResponseCode>ErrorItemSave</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:Items/>
</m:CreateItemResponseMessage>
<m:CreateItemResponseMessage ResponseClass="Error"><m:MessageText>Malformed</m:MessageText>
  <m:ResponseCode>ErrorInvalidIdMalformed</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:Items/>
</m:CreateItemResponseMessage>
<m:CreateItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>
  <m:Items><t:CalendarItem><t:ItemId Id="id-2" ChangeKey="ck-2"/></t:CalendarItem></m:Items>
</m:CreateItemResponseMessage></m:ResponseMessages></m:CreateItemResponse>"""


def test_per_item_errors_of_a_create_answer_are_the_ones_exchangelib_reads():
    account = offline_account()
    answer = etree.fromstring(CREATE_ANSWER.format(m=MNS, t=TNS))
    messages = list(answer[0])

    def read(service) -> list:
        return [
            item_result(r, "f") for r in service._elems_to_objs(service._get_elements_in_response(messages))
        ]

    fast, generic = read(_IdOnlyCreateItem(account=account)), read(CreateItem(account=account))
    assert [r.ref for r in fast] == [r.ref for r in generic]
    assert [r.ref.item_id for r in fast if r.ok] == ["id-1", "id-2"]
    assert [(type(r.error), str(r.error)) for r in fast] == [(type(r.error), str(r.error)) for r in generic]
    assert [r.error.code for r in fast if not r.ok] == ["ErrorItemSave", "ErrorInvalidIdMalformed"]


def test_created_events_answer_their_ids_and_a_busy_server_is_asked_again(exchange_sim, ews):
    folder_id = ews.ensure_calendar_folder(ALICE)
    start = datetime(2027, 3, 1, 9, tzinfo=UTC)
    events = [
        CalendarEvent(
            subject=f"Call {n}", start=start + timedelta(days=n), end=start + timedelta(days=n, hours=1)
        )
        for n in range(3)
    ]
    exchange_sim.faults.server_busy(times=1, back_off_ms=10, operation="CreateItem")
    before = ews.requests
    results = ews.create_events(ALICE, folder_id, events, send_invitations=False)
    assert ews.requests - before == 2
    stored = {i.id: i for i in exchange_sim.user(ALICE).items("calendar")}
    assert [stored[r.ref.item_id].props["Subject"] for r in results] == ["Call 0", "Call 1", "Call 2"]
    assert all(r.ref.change_key == stored[r.ref.item_id].changekey for r in results)
