"""Graph throttling per app and mailbox: 429 with Retry-After (request budget, concurrency, forced faults)."""

from __future__ import annotations

from datetime import timedelta

from tests.fixtures.exchange_sim import graph_client

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
FOLDERS = f"/users/{ALICE}/contactFolders"


def throttled(answer) -> bool:
    return answer.status_code == 429 and answer.json()["error"]["code"] == "ApplicationThrottled" and int(answer.headers["Retry-After"]) >= 1


def test_throttling_is_off_by_default(graph):
    assert all(graph.get(FOLDERS).status_code == 200 for _ in range(30))


def test_a_request_budget_per_app_and_mailbox_on_the_simulator_clock(exchange_sim, graph):
    exchange_sim.graph.throttling.budget(requests=3, per_seconds=600)
    assert [graph.get(FOLDERS).status_code for _ in range(3)] == [200, 200, 200]
    answer = graph.get(FOLDERS)
    assert throttled(answer) and "MailboxRequestCount" in answer.json()["error"]["message"]
    assert 590 <= int(answer.headers["Retry-After"]) <= 600
    assert graph.get(f"/users/{BOB}/contactFolders").status_code == 200  # another mailbox
    exchange_sim.graph.add_app("other", "pw")
    with graph_client(exchange_sim, ("other", "pw")) as other:
        assert other.get(FOLDERS).status_code == 200  # another app
    exchange_sim.clock.advance(timedelta(seconds=601))
    assert graph.get(FOLDERS).status_code == 200


def test_more_concurrent_requests_than_allowed_are_429(exchange_sim, graph):
    throttling = exchange_sim.graph.throttling
    throttling.concurrency = 4
    for _ in range(4):  # four requests of the demo app to Alice's mailbox in flight
        throttling.enter("demo-client", ALICE)
    answer = graph.get(FOLDERS)
    assert throttled(answer) and "MailboxConcurrency" in answer.json()["error"]["message"]
    assert graph.get(f"/users/{BOB}/contactFolders").status_code == 200
    throttling.leave("demo-client", ALICE)
    assert graph.get(FOLDERS).status_code == 200


def test_faults_force_429_with_the_given_retry_after(exchange_sim, graph):
    exchange_sim.faults.throttled(times=2, retry_after=5, mailbox=ALICE)
    first, second, third = (graph.get(FOLDERS) for _ in range(3))
    assert throttled(first) and first.headers["Retry-After"] == "5" and throttled(second)
    assert third.status_code == 200
    exchange_sim.faults.server_busy(times=1, back_off_ms=2500)
    answer = graph.get(FOLDERS)
    assert throttled(answer) and answer.headers["Retry-After"] == "3"


def test_throttling_can_be_set_over_the_control_api(exchange_sim, graph):
    import httpx

    httpx.post(f"{exchange_sim.base_url}/_sim/graph/throttling", json={"requests": 1, "per_seconds": 60})
    assert graph.get(FOLDERS).status_code == 200
    assert throttled(graph.get(FOLDERS))
    assert httpx.get(f"{exchange_sim.base_url}/_sim/graph").json()["throttling"]["budget"] == {"requests": 1, "per_seconds": 60.0}
