"""Graph contacts delta: rounds of nextLink/deltaLink pages, @removed entries, 410 Gone for invalid tokens."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

ALICE = "alice@contoso.example"
A = f"/users/{ALICE}"
DELTA = f"{A}/contactFolders/contacts/contacts/delta"


def round_of(graph, url: str, **kwargs) -> tuple[list[dict], str, int]:
    """Follow nextLinks to the deltaLink: (entries, deltaLink, requests made)."""
    entries: list[dict] = []
    answer = graph.get(url, **kwargs)
    requests = 1
    while True:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        entries += body["value"]
        if "@odata.deltaLink" in body:
            return entries, body["@odata.deltaLink"], requests
        assert "$skiptoken" in parse_qs(urlparse(body["@odata.nextLink"]).query)
        answer = graph.get(body["@odata.nextLink"], headers=kwargs.get("headers"))
        requests += 1


def test_a_first_round_pages_through_every_contact_and_ends_with_a_delta_link(exchange_sim, graph):
    user = exchange_sim.user(ALICE)
    for n in range(5):
        user.create_contact(GivenName=f"C{n}")
    entries, delta_link, requests = round_of(graph, DELTA, headers={"Prefer": "odata.maxpagesize=2"})
    assert sorted(e["givenName"] for e in entries) == [f"C{n}" for n in range(5)]
    assert requests == 3
    assert "$deltatoken" in parse_qs(urlparse(delta_link).query)
    exchange_sim.counters.reset()
    idle, _, requests = round_of(graph, delta_link)
    assert idle == [] and requests == 1
    assert exchange_sim.counters.for_mailbox(ALICE, protocol="graph") == 1


def test_a_next_round_brings_creates_updates_and_removals(exchange_sim, graph):
    user = exchange_sim.user(ALICE)
    kept = user.create_contact(GivenName="Kept")
    edited = user.create_contact(GivenName="Edited")
    deleted = user.create_contact(GivenName="Deleted")
    moved_out = user.create_contact(GivenName="MovedOut")
    user.create_folder("Archive")
    _, delta_link, _ = round_of(graph, DELTA)
    first_ids = {e["givenName"]: e["id"] for e in round_of(graph, DELTA)[0]}
    user.edit(edited, JobTitle="CFO")
    user.delete(deleted)
    user.move(moved_out, "contacts/Archive")
    user.create_contact(GivenName="New")
    entries, _, _ = round_of(graph, delta_link)
    removed = {e["id"] for e in entries if "@removed" in e}
    assert removed == {first_ids["Deleted"], first_ids["MovedOut"]}
    assert all(e["@removed"] == {"reason": "deleted"} for e in entries if "@removed" in e)
    changed = {e["givenName"]: e for e in entries if "@removed" not in e}
    assert set(changed) == {"Edited", "New"} and changed["Edited"]["jobTitle"] == "CFO"
    assert kept.id  # untouched: not in the round


def test_select_is_baked_into_the_tokens(exchange_sim, graph):
    user = exchange_sim.user(ALICE)
    user.create_contact(GivenName="A", Surname="One")
    entries, delta_link, _ = round_of(graph, DELTA, params={"$select": "givenName"})
    assert set(entries[0]) == {"@odata.etag", "id", "givenName"}
    user.create_contact(GivenName="B", Surname="Two")
    entries, _, _ = round_of(graph, delta_link)
    assert set(entries[0]) == {"@odata.etag", "id", "givenName"}


def gone(answer) -> bool:
    return answer.status_code == 410 and answer.json()["error"]["code"] == "SyncStateNotFound"


def test_an_invalid_or_invalidated_token_is_410_gone(exchange_sim, graph):
    exchange_sim.user(ALICE).create_contact(GivenName="A")
    _, delta_link, _ = round_of(graph, DELTA)
    assert gone(graph.get(DELTA, params={"$deltatoken": "bogus"}))
    assert gone(graph.get(delta_link.replace("$deltatoken=", "$deltatoken=x")))
    crm = graph.post(f"{A}/contactFolders", json={"displayName": "CRM"}).json()
    token = parse_qs(urlparse(delta_link).query)["$deltatoken"][0]
    assert gone(graph.get(f"{A}/contactFolders/{crm['id']}/contacts/delta", params={"$deltatoken": token}))
    assert graph.get(delta_link).status_code == 200
    exchange_sim.graph.invalidate_delta_tokens()
    assert gone(graph.get(delta_link))
    entries, _, _ = round_of(graph, DELTA)  # a new round starts over: a full resync
    assert [e["givenName"] for e in entries] == ["A"]


def test_a_fault_can_make_the_next_delta_request_410(exchange_sim, graph):
    _, delta_link, _ = round_of(graph, DELTA)
    exchange_sim.faults.arm("invalid_sync_state", times=1, operation="graph.contacts.delta", mailbox=ALICE)
    assert gone(graph.get(delta_link))
    assert graph.get(delta_link).status_code == 200


def test_delta_supports_select_only(graph):
    answer = graph.get(DELTA, params={"$expand": "singleValueExtendedProperties"})
    assert answer.status_code == 400


def test_the_default_folder_delta_without_a_folder(exchange_sim, graph):
    exchange_sim.user(ALICE).create_contact(GivenName="Dflt")
    entries, _, _ = round_of(graph, f"{A}/contacts/delta")
    assert [e["givenName"] for e in entries] == ["Dflt"]
