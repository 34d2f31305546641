"""Graph translateExchangeIds over the simulator: delegated tokens only (Microsoft documents
"Application: Not supported"), and one item's ids consistent across the EWS and Graph front ends."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.exchange_sim.conftest import connect
from tests.fixtures.exchange_sim import graph_client, tls

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"
URL = f"/users/{ALICE}/translateExchangeIds"


def as_user(sim, address: str) -> httpx.Client:
    token = sim.graph.directory.sign_delegated(sim.graph_app[0], address)
    return httpx.Client(
        base_url=sim.graph_url, verify=tls(sim), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def translate(client, ids, source, target, user=ALICE) -> httpx.Response:
    return client.post(
        f"/users/{user}/translateExchangeIds",
        json={"inputIds": ids, "sourceIdType": source, "targetIdType": target},
    )


@pytest.fixture
def meeting(exchange_sim):
    return exchange_sim.user(ALICE).create_event(
        "Review", datetime(2027, 3, 10, 9, tzinfo=UTC), datetime(2027, 3, 10, 10, tzinfo=UTC)
    )


def test_an_application_token_is_refused_as_microsoft_documents(exchange_sim, meeting):
    with graph_client(exchange_sim) as app_only:
        answer = translate(app_only, [meeting.id], "ewsId", "restImmutableEntryId")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "ErrorAccessDenied"


def test_a_delegated_user_translates_only_ids_of_its_own_mailbox(exchange_sim, meeting):
    with as_user(exchange_sim, BOB) as bob:
        answer = translate(bob, [meeting.id], "ewsId", "restId")
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "ErrorAccessDenied"


def test_an_ews_id_and_the_graph_ids_name_the_same_item_both_ways(exchange_sim, meeting):
    with as_user(exchange_sim, ALICE) as alice, graph_client(exchange_sim, immutable_ids=True) as app:
        (result,) = translate(alice, [meeting.id], "ewsId", "restImmutableEntryId").json()["value"]
        assert result["sourceId"] == meeting.id
        immutable = result["targetId"]
        listed = app.get(f"/users/{ALICE}/events").json()["value"]
        assert [e["id"] for e in listed] == [immutable]
        assert app.get(f"/users/{ALICE}/events/{immutable}").json()["subject"] == "Review"
        back = translate(alice, [immutable], "restImmutableEntryId", "ewsId").json()["value"][0]
        assert back["targetId"] == meeting.id
        for fmt in ("restId", "entryId", "immutableEntryId"):
            there = translate(alice, [meeting.id], "ewsId", fmt).json()["value"][0]["targetId"]
            assert translate(alice, [there], fmt, "ewsId").json()["value"][0]["targetId"] == meeting.id


def test_an_item_made_over_graph_is_read_over_ews_by_its_translated_id(exchange_sim):
    with as_user(exchange_sim, ALICE) as alice, graph_client(exchange_sim, immutable_ids=True) as app:
        created = app.post(f"/users/{ALICE}/contacts", json={"givenName": "Ann", "surname": "Lee"}).json()
        ews_id = translate(alice, [created["id"]], "restImmutableEntryId", "ewsId").json()["value"][0]["targetId"]
    account = connect(exchange_sim, ALICE)
    (item,) = list(account.fetch(ids=[(ews_id, None)]))
    assert (item.given_name, item.surname) == ("Ann", "Lee")


def test_ids_that_cannot_be_translated_get_error_details(exchange_sim, meeting):
    bobs = exchange_sim.user(BOB).create_contact(GivenName="Bo")
    with as_user(exchange_sim, ALICE) as alice:
        results = translate(alice, ["not an id", bobs.id, meeting.id], "ewsId", "restId").json()["value"]
        assert results[0]["errorDetails"]["code"] == "ErrorInvalidIdMalformed"
        assert results[1]["errorDetails"]["code"] == "ErrorItemNotFound"  # another mailbox's item
        assert "targetId" in results[2]
        assert translate(alice, [meeting.id], "ewsId", "uuid").status_code == 400
        assert translate(alice, ["x"] * 1001, "ewsId", "restId").status_code == 400
