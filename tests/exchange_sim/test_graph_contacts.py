"""Graph contacts and contact folders over the simulator's store (CRUD, PATCH, ETags, OData options, EWS interop)."""

from __future__ import annotations

import pytest
from exchangelib import Contact, ExtendedProperty

from tests.fixtures.exchange_sim import graph_client

from .conftest import connect

ALICE = "alice@contoso.example"
A = f"/users/{ALICE}"
SYNC_SET = "6a1f1f7e-3c52-4d43-9a55-8f3c5b0d2a11"
SYNC_ID = f"String {{{SYNC_SET}}} Name CrmSyncId"
def by_sync_id(value: str) -> str:
    return f"singleValueExtendedProperties/Any(ep: ep/id eq '{SYNC_ID}' and ep/value eq '{value}')"

EXPAND_SYNC_ID = f"singleValueExtendedProperties($filter=id eq '{SYNC_ID}')"


def create(graph, folder: str = "contacts", **body):
    answer = graph.post(f"{A}/contactFolders/{folder}/contacts", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_contact_is_created_read_and_rendered_with_every_property(graph, exchange_sim):
    created = create(
        graph,
        givenName="Ann",
        surname="Lee",
        companyName="Fabrikam",
        emailAddresses=[{"address": "ann@fabrikam.example", "name": "Ann Lee"}, {"address": "a.lee@home.example"}],
        businessPhones=["+49 30 1"],
        mobilePhone="+49 170 2",
        businessAddress={"street": "Main 1", "city": "Berlin", "postalCode": "10115", "countryOrRegion": "DE"},
        personalNotes="first line\nsecond line",
        categories=["CRM"],
    )
    assert created["@odata.etag"] == f'W/"{created["changeKey"]}"'
    assert created["displayName"] == "Ann Lee" and created["fileAs"] == "Lee, Ann"
    assert created["middleName"] is None and created["homePhones"] == [] and created["otherAddress"] == {}
    assert created["emailAddresses"] == [
        {"name": "Ann Lee", "address": "ann@fabrikam.example"},
        {"name": "a.lee@home.example", "address": "a.lee@home.example"},
    ]
    assert created["personalNotes"] == "first line\nsecond line"
    again = graph.get(f"{A}/contacts/{created['id']}").json()
    assert {k: v for k, v in again.items() if k != "@odata.context"} == {k: v for k, v in created.items() if k != "@odata.context"}
    stored = exchange_sim.user(ALICE).contacts()[0]
    assert stored.props["PhoneNumbers"] == {"BusinessPhone": "+49 30 1", "MobilePhone": "+49 170 2"}
    assert stored.props["PhysicalAddresses"]["Business"] == {"Street": "Main 1", "City": "Berlin", "PostalCode": "10115", "CountryOrRegion": "DE"}
    assert "<br>" in stored.body_html  # Exchange keeps the notes as HTML


def test_patch_changes_only_what_it_names_and_null_clears(graph):
    created = create(graph, givenName="Ann", surname="Lee", jobTitle="CTO", businessPhones=["+49 1", "+49 2"], mobilePhone="+49 3")
    answer = graph.patch(f"{A}/contacts/{created['id']}", json={"jobTitle": None, "businessPhones": ["+49 9"], "surname": "Lee-Smith"})
    assert answer.status_code == 200
    patched = answer.json()
    assert patched["jobTitle"] is None and patched["businessPhones"] == ["+49 9"] and patched["mobilePhone"] == "+49 3"
    assert patched["givenName"] == "Ann" and patched["surname"] == "Lee-Smith"
    assert patched["changeKey"] != created["changeKey"]


def test_if_match_with_a_stale_change_key_is_412(graph, exchange_sim):
    created = create(graph, givenName="Ann")
    exchange_sim.user(ALICE).edit(exchange_sim.user(ALICE).contacts()[0], JobTitle="Edited in Outlook")
    stale = {"If-Match": created["@odata.etag"]}
    answer = graph.patch(f"{A}/contacts/{created['id']}", json={"givenName": "Anne"}, headers=stale)
    assert answer.status_code == 412 and answer.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph.delete(f"{A}/contacts/{created['id']}", headers=stale).status_code == 412
    fresh = graph.get(f"{A}/contacts/{created['id']}").json()
    answer = graph.patch(f"{A}/contacts/{created['id']}", json={"givenName": "Anne"}, headers={"If-Match": fresh["@odata.etag"]})
    assert answer.status_code == 200 and answer.json()["jobTitle"] == "Edited in Outlook"


def test_delete_moves_the_contact_to_deleted_items(graph, exchange_sim):
    created = create(graph, givenName="Gone")
    assert graph.delete(f"{A}/contacts/{created['id']}").status_code == 204
    answer = graph.get(f"{A}/contacts/{created['id']}")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "ErrorItemNotFound"
    assert [c.props["GivenName"] for c in exchange_sim.user(ALICE).contacts("deleteditems")] == ["Gone"]
    created = create(graph, givenName="Purged")
    assert graph.post(f"{A}/contacts/{created['id']}/permanentDelete").status_code == 204
    assert len(exchange_sim.user(ALICE).all_contacts()) == 1


def test_unknown_properties_and_malformed_ids_are_refused(graph):
    answer = graph.post(f"{A}/contacts", json={"givenName": "Ann", "favouriteColour": "blue"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "RequestBodyRead"
    assert graph.get(f"{A}/contacts/not-an-id!").json()["error"]["code"] == "ErrorInvalidIdMalformed"
    assert graph.get(f"{A}/contacts", params={"$select": "givenName,shoeSize"}).status_code == 400


def test_folders_and_child_folders(graph, exchange_sim):
    answer = graph.post(f"{A}/contactFolders", json={"displayName": "CRM"})
    assert answer.status_code == 201
    crm = answer.json()
    default = graph.get(f"{A}/contactFolders/contacts").json()
    assert crm["parentFolderId"] == default["id"] and default["displayName"] == "Contacts"
    assert graph.post(f"{A}/contactFolders", json={"displayName": "crm"}).status_code == 409
    child = graph.post(f"{A}/contactFolders/{crm['id']}/childFolders", json={"displayName": "Partners"}).json()
    assert [f["displayName"] for f in graph.get(f"{A}/contactFolders/{crm['id']}/childFolders").json()["value"]] == ["Partners"]
    found = graph.get(f"{A}/contactFolders", params={"$filter": "displayName eq 'CRM'"}).json()["value"]
    assert [f["id"] for f in found] == [crm["id"]]
    create(graph, crm["id"], givenName="In CRM")
    assert [c.props["GivenName"] for c in exchange_sim.user(ALICE).contacts("contacts/CRM")] == ["In CRM"]
    assert graph.get(f"{A}/contacts").json()["value"] == []  # /contacts is the default folder only
    assert graph.patch(f"{A}/contactFolders/{child['id']}", json={"displayName": "Suppliers"}).json()["displayName"] == "Suppliers"
    assert graph.delete(f"{A}/contactFolders/{child['id']}").status_code == 204


def test_select_top_and_next_links_page_a_folder(graph):
    for n in range(7):
        create(graph, givenName=f"P{n}", surname="Pager")
    answer = graph.get(f"{A}/contacts", params={"$select": "givenName", "$top": "3"}).json()
    names = [c["givenName"] for c in answer["value"]]
    assert set(answer["value"][0]) == {"@odata.etag", "id", "givenName"}
    while "@odata.nextLink" in answer:
        answer = graph.get(answer["@odata.nextLink"]).json()
        names += [c["givenName"] for c in answer["value"]]
    assert names == [f"P{n}" for n in range(7)]
    default_page = graph.get(f"{A}/contacts", headers={"Prefer": "odata.maxpagesize=5"}).json()
    assert len(default_page["value"]) == 5 and "@odata.nextLink" in default_page


def test_filter_and_orderby(graph):
    create(graph, givenName="Zed", surname="Alpha", emailAddresses=[{"address": "zed@x.example"}])
    create(graph, givenName="Amy", surname="Beta", emailAddresses=[{"address": "amy@y.example"}])
    by_mail = graph.get(f"{A}/contacts", params={"$filter": "emailAddresses/any(a:a/address eq 'AMY@y.example')"}).json()["value"]
    assert [c["givenName"] for c in by_mail] == ["Amy"]
    ordered = graph.get(f"{A}/contacts", params={"$orderby": "givenName desc"}).json()["value"]
    assert [c["givenName"] for c in ordered] == ["Zed", "Amy"]
    starts = graph.get(f"{A}/contacts", params={"$filter": "startswith(surname,'al')"}).json()["value"]
    assert [c["givenName"] for c in starts] == ["Zed"]
    assert graph.get(f"{A}/contacts", params={"$filter": "givenName eq"}).status_code == 400


def test_the_sync_id_extended_property_is_created_found_and_expanded(graph):
    created = create(graph, givenName="Ann", singleValueExtendedProperties=[{"id": SYNC_ID, "value": "crm-42"}])
    assert "singleValueExtendedProperties" not in created  # only with $expand
    create(graph, givenName="Other", singleValueExtendedProperties=[{"id": SYNC_ID, "value": "crm-43"}])
    found = graph.get(f"{A}/contacts", params={"$filter": by_sync_id("crm-42"), "$expand": EXPAND_SYNC_ID}).json()["value"]
    assert [c["id"] for c in found] == [created["id"]]
    assert found[0]["singleValueExtendedProperties"] == [{"id": SYNC_ID, "value": "crm-42"}]
    one = graph.get(f"{A}/contacts/{created['id']}", params={"$select": "givenName", "$expand": EXPAND_SYNC_ID}).json()
    assert one["singleValueExtendedProperties"] == [{"id": SYNC_ID, "value": "crm-42"}] and "surname" not in one
    patched = graph.patch(f"{A}/contacts/{created['id']}", json={"singleValueExtendedProperties": [{"id": SYNC_ID.replace(SYNC_SET, SYNC_SET.upper()), "value": "crm-44"}]})
    assert patched.status_code == 200
    assert graph.get(f"{A}/contacts", params={"$filter": by_sync_id("crm-44")}).json()["value"][0]["id"] == created["id"]


def test_a_contact_written_over_ews_is_found_over_graph_by_its_sync_id_and_back(exchange_sim, graph):
    class SyncId(ExtendedProperty):
        property_set_id = SYNC_SET
        property_name = "CrmSyncId"
        property_type = "String"

    Contact.register("crm_sync_id", SyncId)
    try:
        account = connect(exchange_sim)
        Contact(folder=account.contacts, account=account, given_name="Ewa", surname="Ews", display_name="Ewa Ews", crm_sync_id="crm-ews").save()
        found = graph.get(f"{A}/contacts", params={"$filter": by_sync_id("crm-ews"), "$select": "givenName"}).json()["value"]
        assert [c["givenName"] for c in found] == ["Ewa"]
        create(graph, givenName="Gra", singleValueExtendedProperties=[{"id": SYNC_ID, "value": "crm-graph"}])
        over_ews = [c for c in account.contacts.all() if c.crm_sync_id == "crm-graph"]
        assert [c.given_name for c in over_ews] == ["Gra"]
    finally:
        Contact.deregister("crm_sync_id")


def test_immutable_ids_survive_moves_and_deletion_to_deleted_items(exchange_sim):
    with graph_client(exchange_sim, immutable_ids=True) as graph, graph_client(exchange_sim) as rest:
        created = create(graph, givenName="Mover")
        rest_id = rest.get(f"{A}/contacts").json()["value"][0]["id"]
        assert rest_id != created["id"]
        user = exchange_sim.user(ALICE)
        user.create_folder("Archive")
        moved = user.move(user.contacts()[0], "contacts/Archive")  # Outlook moves it: a new EWS id
        assert graph.get(f"{A}/contacts/{created['id']}").json()["id"] == created["id"]
        assert rest.get(f"{A}/contacts/{rest_id}").status_code == 404  # a REST id dies with the move
        assert rest.get(f"{A}/contacts/{created['id']}").status_code == 200  # immutable ids work without the header
        user.delete(moved)
        deleted_items = user.folder("deleteditems").id.replace("+", "-").replace("/", "_")
        assert graph.get(f"{A}/contacts/{created['id']}").json()["parentFolderId"] == deleted_items


def test_a_move_over_graph_is_a_create_and_a_delete_with_a_new_id(exchange_sim):
    with graph_client(exchange_sim, immutable_ids=True) as graph:
        crm = graph.post(f"{A}/contactFolders", json={"displayName": "CRM"}).json()
        old = create(graph, givenName="Moved", singleValueExtendedProperties=[{"id": SYNC_ID, "value": "crm-7"}])
        assert graph.post(f"{A}/contacts/{old['id']}/move", json={"destinationId": crm["id"]}).status_code == 400
        new = create(graph, crm["id"], givenName="Moved", singleValueExtendedProperties=[{"id": SYNC_ID, "value": "crm-7"}])
        assert graph.delete(f"{A}/contacts/{old['id']}").status_code == 204
        assert new["id"] != old["id"]


@pytest.mark.parametrize("folder_ref", ["contacts", "Contacts"])
def test_the_default_folder_has_a_well_known_name(graph, folder_ref):
    assert graph.get(f"{A}/contactFolders/{folder_ref}").json()["displayName"] == "Contacts"
