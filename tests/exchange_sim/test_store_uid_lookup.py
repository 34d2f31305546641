"""The store's lookup of a mailbox's item by UID (meeting delivery finds the invitees' copies with it)
answers what reading the whole mailbox answers, whatever happened to the items since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exchange_sim.store import Store

START = datetime(2027, 5, 3, 9, tzinfo=UTC)


def _event(store: Store, folder_id: str, uid: str, subject: str = "Review") -> str:
    props = {"Subject": subject, "UID": uid, "Start": START, "End": START + timedelta(hours=1)}
    return store.create_item(folder_id, "CalendarItem", props).id


def _scan(store: Store, address: str, uid: str, deleted: str):
    return store.find_item(address, "CalendarItem", lambda i: i.props.get("UID") == uid and i.folder_id != deleted)


def _same(store: Store, address: str, uid: str) -> None:
    deleted = store.distinguished_folder(address, "deleteditems").id
    indexed = store.find_item_with(address, "CalendarItem", "UID", uid, lambda i: i.folder_id != deleted)
    scanned = _scan(store, address, uid, deleted)
    assert (indexed and (indexed.id, indexed.changekey, indexed.props)) == (scanned and (scanned.id, scanned.changekey, scanned.props))


def test_the_uid_lookup_follows_creates_updates_moves_deletes_and_loads():
    store = Store()
    store.add_mailbox("ann@contoso.example")
    calendar = store.distinguished_folder("ann@contoso.example", "calendar").id
    deleted = store.distinguished_folder("ann@contoso.example", "deleteditems").id
    before_first_lookup = _event(store, calendar, "U1")
    _same(store, "ann@contoso.example", "U1")
    second = _event(store, calendar, "U2")
    _same(store, "ann@contoso.example", "U2")
    store.update_item(second, set_props={"UID": "U3"})  # the UID changes: U2 is gone, U3 is there
    for uid in ("U2", "U3"):
        _same(store, "ann@contoso.example", uid)
    store.update_item(before_first_lookup, merge=lambda item: item.props.update(UID="U3"))  # two with U3
    _same(store, "ann@contoso.example", "U3")
    store.delete_item(before_first_lookup, "MoveToDeletedItems")  # a new id, in Deleted Items
    _same(store, "ann@contoso.example", "U3")
    store.move_item(_event(store, calendar, "U4"), store.create_folder(calendar, "Other").id)
    _same(store, "ann@contoso.example", "U4")
    store.delete_item(second, "HardDelete")
    for uid in ("U1", "U3", "U4", "", "none"):
        _same(store, "ann@contoso.example", uid)
    store.load_json(store.to_json())  # new objects behind the index
    store.update_item(store.find_item("ann@contoso.example", "CalendarItem", lambda i: True).id, set_props={"Subject": "x"})
    for uid in ("U1", "U3", "U4"):
        _same(store, "ann@contoso.example", uid)
    assert store.find_item_with("ann@contoso.example", "CalendarItem", "UID", "U4", lambda i: i.folder_id != deleted) is not None
