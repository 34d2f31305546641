"""Graph JSON batching: at most 20 requests, each answered on its own (status, headers, body), dependsOn."""

from __future__ import annotations

import base64
from datetime import timedelta

from tests.fixtures.exchange_sim import graph_client

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
JSON = {"Content-Type": "application/json"}
MISSING = base64.urlsafe_b64encode(b"IT" + bytes(16)).decode()  # well formed, no such item


def create_request(n: int, user: str = ALICE, **extra) -> dict:
    return {"id": str(n), "method": "POST", "url": f"/users/{user}/contacts", "headers": JSON, "body": {"givenName": f"B{n}"}, **extra}


def by_id(answer) -> dict[str, dict]:
    assert answer.status_code == 200, answer.text
    return {r["id"]: r for r in answer.json()["responses"]}


def test_twenty_creates_in_one_batch_cost_one_request(exchange_sim, graph):
    exchange_sim.counters.reset()
    answers = by_id(graph.post("/$batch", json={"requests": [create_request(n) for n in range(20)]}))
    assert sorted(answers, key=int) == [str(n) for n in range(20)]
    assert {a["status"] for a in answers.values()} == {201}
    assert answers["3"]["body"]["givenName"] == "B3" and answers["3"]["headers"]["Content-Type"].startswith("application/json")
    assert len(exchange_sim.user(ALICE).contacts()) == 20
    assert exchange_sim.counters.for_mailbox(ALICE, protocol="graph") == 1
    assert exchange_sim.counters["graph.$batch"] == 1
    assert exchange_sim.counters.sub_requests("graph.contacts.create", ALICE) == 20


def test_more_than_twenty_requests_is_a_bad_batch(exchange_sim, graph):
    answer = graph.post("/$batch", json={"requests": [create_request(n) for n in range(21)]})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "BadRequest"
    assert exchange_sim.user(ALICE).contacts() == []


def test_malformed_batches_are_refused_whole(graph):
    duplicate = [create_request(1), create_request(1)]
    assert graph.post("/$batch", json={"requests": duplicate}).status_code == 400
    assert graph.post("/$batch", content=b"not json", headers=JSON).status_code == 400
    assert graph.post("/$batch", json={"requests": [create_request(1, dependsOn=["9"])]}).status_code == 400
    assert graph.get("/$batch").status_code == 405


def test_sub_requests_fail_on_their_own(exchange_sim, graph):
    requests = [
        create_request(1),
        {"id": "2", "method": "POST", "url": f"/users/{ALICE}/contacts", "headers": JSON, "body": {"shoeSize": 44}},
        {"id": "3", "method": "GET", "url": f"/users/{ALICE}/contacts/{MISSING}"},
        {"id": "4", "method": "POST", "url": f"/users/{ALICE}/contacts", "body": {"givenName": "NoType"}},
        {"id": "5", "method": "GET", "url": f"https://graph.microsoft.com/v1.0/users/{ALICE}/contacts"},
        {"id": "6", "method": "GET", "url": f"users/{ALICE}/contacts?$select=givenName"},
        {"id": "7", "method": "GET", "url": "/users/nobody@contoso.example/contacts"},
    ]
    answers = by_id(graph.post("/$batch", json={"requests": requests}))
    assert {k: a["status"] for k, a in answers.items()} == {"1": 201, "2": 400, "3": 404, "4": 400, "5": 400, "6": 200, "7": 404}
    assert answers["2"]["body"]["error"]["code"] == "RequestBodyRead"
    assert answers["3"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert [c["givenName"] for c in answers["6"]["body"]["value"]] == ["B1"]
    assert [r["id"] for r in graph.post("/$batch", json={"requests": requests}).json()["responses"]] == [str(n) for n in range(1, 8)]


def test_depends_on_orders_requests_and_a_failed_dependency_is_424(exchange_sim, graph):
    requests = [
        {"id": "c", "method": "GET", "url": f"/users/{ALICE}/contacts", "dependsOn": ["b"]},
        {"id": "b", "method": "POST", "url": f"/users/{ALICE}/contacts", "headers": JSON, "body": {"givenName": "Second"}, "dependsOn": ["a"]},
        {"id": "a", "method": "POST", "url": f"/users/{ALICE}/contacts", "headers": JSON, "body": {"givenName": "First"}},
    ]
    answers = by_id(graph.post("/$batch", json={"requests": requests}))
    assert [c["givenName"] for c in answers["c"]["body"]["value"]] == ["First", "Second"]
    failing = [
        {"id": "1", "method": "POST", "url": f"/users/{ALICE}/contacts", "headers": JSON, "body": {"bad": 1}},
        {"id": "2", "method": "POST", "url": f"/users/{ALICE}/contacts", "headers": JSON, "body": {"givenName": "Never"}, "dependsOn": ["1"]},
    ]
    answers = by_id(graph.post("/$batch", json={"requests": failing}))
    assert answers["2"]["status"] == 424
    assert "Never" not in [c.props.get("GivenName") for c in exchange_sim.user(ALICE).contacts()]


def test_each_sub_request_is_throttled_on_its_own(exchange_sim, graph):
    exchange_sim.faults.throttled(times=2, retry_after=3, operation="graph.contacts.create")
    answers = by_id(graph.post("/$batch", json={"requests": [create_request(n) for n in range(5)]}))
    throttled = [a for a in answers.values() if a["status"] == 429]
    assert len(throttled) == 2
    assert all(a["headers"]["Retry-After"] == "3" and a["body"]["error"]["code"] == "ApplicationThrottled" for a in throttled)
    assert len(exchange_sim.user(ALICE).contacts()) == 3


def test_a_request_budget_throttles_sub_requests_per_mailbox(exchange_sim, graph):
    exchange_sim.graph.throttling.budget(requests=3, per_seconds=60)
    requests = [create_request(n) for n in range(5)] + [create_request(n, BOB) for n in range(5, 7)]
    answers = by_id(graph.post("/$batch", json={"requests": requests}))
    assert [answers[str(n)]["status"] for n in range(7)] == [201, 201, 201, 429, 429, 201, 201]
    assert int(answers["3"]["headers"]["Retry-After"]) >= 59
    exchange_sim.clock.advance(timedelta(seconds=61))
    assert by_id(graph.post("/$batch", json={"requests": [create_request(9)]}))["9"]["status"] == 201


def test_the_application_access_policy_applies_to_each_sub_request(exchange_sim_factory):
    sim = exchange_sim_factory(apps=[("narrow", "pw", [ALICE])])
    with graph_client(sim) as graph:
        answers = by_id(graph.post("/$batch", json={"requests": [create_request(1), create_request(2, BOB)]}))
    assert answers["1"]["status"] == 201 and answers["2"]["status"] == 403


def test_a_batch_with_an_expired_token_is_401_as_a_whole(exchange_sim, graph):
    exchange_sim.graph.expire_tokens()
    answer = graph.post("/$batch", json={"requests": [create_request(1)]})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "InvalidAuthenticationToken"
