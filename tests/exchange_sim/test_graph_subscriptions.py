"""Graph change-notification subscriptions: validation handshake, notifications, expiry and renewal, lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.fixtures.exchange_sim import graph_client

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"
A = f"/users/{ALICE}"


def expiry(sim, minutes: int = 60) -> str:
    return (sim.clock.now() + timedelta(minutes=minutes)).astimezone(UTC).isoformat().replace("+00:00", "Z")


def subscribe(graph, sim, receiver, resource=f"users/{ALICE}/contacts", **extra):
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": receiver.url,
        "lifecycleNotificationUrl": receiver.lifecycle_url,
        "resource": resource,
        "expirationDateTime": expiry(sim),
        "clientState": "s3cret-state",
        **extra,
    }
    return graph.post("/subscriptions", json=body)


def test_creating_a_subscription_validates_the_notification_url_first(exchange_sim, graph, webhook_receiver):
    answer = subscribe(graph, exchange_sim, webhook_receiver)
    assert answer.status_code == 201, answer.text
    sub = answer.json()
    assert sub["resource"] == f"users/{ALICE}/contacts" and sub["clientState"] == "s3cret-state"
    assert sub["changeType"] == "created,updated,deleted" and sub["applicationId"] == "demo-client"
    assert sub["expirationDateTime"].endswith("Z")
    assert len(webhook_receiver.validations) == 2  # the notification URL and the lifecycle URL
    assert " " in webhook_receiver.validations[0]  # the token has to be URL-decoded by the endpoint
    assert [s["id"] for s in graph.get("/subscriptions").json()["value"]] == [sub["id"]]
    assert graph.get(f"/subscriptions/{sub['id']}").json()["notificationUrl"] == webhook_receiver.url


def test_a_failed_validation_creates_no_subscription(exchange_sim, graph, webhook_receiver):
    for mode in ("wrong", "fail"):
        webhook_receiver.validation = mode
        answer = subscribe(graph, exchange_sim, webhook_receiver)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "ValidationError", mode
    webhook_receiver.validation = "slow"
    webhook_receiver.slow_seconds = 1.0
    exchange_sim.graph.subscriptions.validation_timeout = 0.3
    assert subscribe(graph, exchange_sim, webhook_receiver).status_code == 400
    closed = subscribe(graph, exchange_sim, webhook_receiver, notificationUrl="http://127.0.0.1:9/nothing-listens")
    assert closed.status_code == 400
    assert exchange_sim.graph.subscriptions.all() == []


def test_bad_subscription_requests(exchange_sim, graph, webhook_receiver):
    def error(answer):
        return answer.status_code, answer.json()["error"]["code"]

    assert error(subscribe(graph, exchange_sim, webhook_receiver, notificationUrl="http://hooks.example.com/graph"))[0] == 400
    assert error(subscribe(graph, exchange_sim, webhook_receiver, changeType="renamed"))[0] == 400
    assert error(subscribe(graph, exchange_sim, webhook_receiver, resource=f"users/{ALICE}/onenote/notebooks"))[0] == 400
    too_far = subscribe(graph, exchange_sim, webhook_receiver, expirationDateTime=expiry(exchange_sim, 10081 + 5))
    assert error(too_far) == (400, "ExtensionError") and "10080 minutes" in too_far.json()["error"]["message"]
    assert error(subscribe(graph, exchange_sim, webhook_receiver, expirationDateTime=expiry(exchange_sim, -5)))[0] == 400
    assert error(subscribe(graph, exchange_sim, webhook_receiver, clientState="x" * 129))[0] == 400


def test_changes_from_any_side_are_notified_with_client_state(exchange_sim, graph, webhook_receiver):
    sub = subscribe(graph, exchange_sim, webhook_receiver).json()
    user = exchange_sim.user(ALICE)
    contact = user.create_contact(GivenName="From Outlook")
    user.edit(contact, JobTitle="CEO")
    created = graph.post(f"{A}/contacts", json={"givenName": "From Graph"}).json()
    graph.delete(f"{A}/contacts/{created['id']}")
    exchange_sim.user(BOB).create_contact(GivenName="Not Alice")
    notes = webhook_receiver.wait_for(4)
    assert exchange_sim.graph.subscriptions.wait_idle()
    assert [n["changeType"] for n in notes] == ["created", "updated", "created", "deleted"]
    assert {n["subscriptionId"] for n in notes} == {sub["id"]} and {n["clientState"] for n in notes} == {"s3cret-state"}
    assert notes[0]["resource"].startswith("Users/") and "/Contacts/" in notes[0]["resource"]
    assert notes[2]["resourceData"]["id"] == created["id"]
    assert notes[0]["resourceData"]["@odata.etag"].startswith('W/"')
    assert notes[0]["tenantId"] == exchange_sim.graph.tenant_id
    assert all(path == "/hooks/graph/" for path, _ in webhook_receiver.posts)


def test_a_folder_subscription_sees_only_its_folder_and_change_types_filter(exchange_sim, graph, webhook_receiver):
    crm = graph.post(f"{A}/contactFolders", json={"displayName": "CRM"}).json()
    answer = subscribe(graph, exchange_sim, webhook_receiver, resource=f"users/{ALICE}/contactFolders/{crm['id']}/contacts", changeType="created")
    assert answer.status_code == 201
    user = exchange_sim.user(ALICE)
    user.create_contact(GivenName="Elsewhere")
    inside = user.create_contact("contacts/CRM", GivenName="Inside")
    user.edit(inside, JobTitle="edited: not a created")
    assert exchange_sim.graph.subscriptions.wait_idle()
    assert [n["changeType"] for n in webhook_receiver.received()] == ["created"]


def test_event_subscriptions_see_invitations_arriving(exchange_sim, graph, webhook_receiver):
    assert subscribe(graph, exchange_sim, webhook_receiver, resource=f"users/{BOB}/events").status_code == 201
    body = {
        "subject": "Sync",
        "start": {"dateTime": "2027-03-10T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2027-03-10T11:00:00", "timeZone": "UTC"},
        "attendees": [{"emailAddress": {"address": BOB}, "type": "required"}],
    }
    assert graph.post(f"{A}/events", json=body).status_code == 201
    notes = webhook_receiver.wait_for(1)
    assert notes[0]["changeType"] == "created" and "/Events/" in notes[0]["resource"]


def test_subscriptions_expire_on_the_simulator_clock_and_renew_by_patch(exchange_sim, graph, webhook_receiver):
    sub = subscribe(graph, exchange_sim, webhook_receiver).json()
    exchange_sim.clock.advance(timedelta(minutes=50))
    renewed = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": expiry(exchange_sim, 60)})
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] > sub["expirationDateTime"]
    exchange_sim.clock.advance(timedelta(minutes=30))
    exchange_sim.user(ALICE).create_contact(GivenName="Still watched")
    assert len(webhook_receiver.wait_for(1)) == 1
    exchange_sim.clock.advance(timedelta(minutes=31))
    exchange_sim.user(ALICE).create_contact(GivenName="Expired")
    assert exchange_sim.graph.subscriptions.wait_idle()
    assert len(webhook_receiver.received()) == 1
    with graph_client(exchange_sim) as fresh:  # two hours passed: the old token expired too
        assert fresh.get(f"/subscriptions/{sub['id']}").status_code == 404
        assert fresh.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": expiry(exchange_sim, 60)}).status_code == 404


def test_a_deleted_subscription_notifies_nothing(exchange_sim, graph, webhook_receiver):
    sub = subscribe(graph, exchange_sim, webhook_receiver).json()
    assert graph.delete(f"/subscriptions/{sub['id']}").status_code == 204
    exchange_sim.user(ALICE).create_contact(GivenName="Unseen")
    assert exchange_sim.graph.subscriptions.wait_idle()
    assert webhook_receiver.received() == []
    assert graph.delete(f"/subscriptions/{sub['id']}").status_code == 404


def test_lifecycle_notifications_on_demand(exchange_sim, graph, webhook_receiver):
    sub = subscribe(graph, exchange_sim, webhook_receiver).json()
    assert exchange_sim.graph.subscriptions.lifecycle(sub["id"], "reauthorizationRequired") is True
    control = httpx.post(f"{exchange_sim.base_url}/_sim/graph/subscriptions/{sub['id']}/lifecycle", json={"event": "missed"})
    assert control.json() == {"sent": True}
    events = webhook_receiver.wait_for(2, lifecycle=True)
    assert [e["lifecycleEvent"] for e in events] == ["reauthorizationRequired", "missed"]
    assert events[0]["subscriptionId"] == sub["id"] and events[0]["clientState"] == "s3cret-state"
    assert {path for path, _ in webhook_receiver.posts} == {"/hooks/graph/lifecycle/"}
    assert graph.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204


def test_a_webhook_that_keeps_failing_gets_a_missed_lifecycle_notification(exchange_sim, graph, webhook_receiver):
    subscribe(graph, exchange_sim, webhook_receiver)
    exchange_sim.graph.subscriptions.retry_delays = [0.05, 0.05]
    webhook_receiver.status = 500
    exchange_sim.user(ALICE).create_contact(GivenName="Lost")
    assert [e["lifecycleEvent"] for e in webhook_receiver.wait_for(1, lifecycle=True)] == ["missed"]
    assert len(webhook_receiver.received()) == 3  # the first try and two retries
    webhook_receiver.status = 202
    exchange_sim.user(ALICE).create_contact(GivenName="Found")
    assert webhook_receiver.wait_for(4)[-1]["changeType"] == "created"


def test_immutable_ids_in_notifications_follow_the_prefer_header(exchange_sim, webhook_receiver):
    with graph_client(exchange_sim, immutable_ids=True) as graph:
        subscribe(graph, exchange_sim, webhook_receiver)
        created = graph.post(f"{A}/contacts", json={"givenName": "Imm"}).json()
    assert webhook_receiver.wait_for(1)[0]["resourceData"]["id"] == created["id"]


def test_an_app_restricted_to_other_mailboxes_cannot_subscribe(exchange_sim_factory, webhook_receiver):
    sim = exchange_sim_factory(apps=[("narrow", "pw", [BOB])])
    with graph_client(sim) as graph:
        answer = subscribe(graph, sim, webhook_receiver)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "ErrorAccessDenied"


def test_subscriptions_are_listed_per_app(exchange_sim, graph, webhook_receiver):
    subscribe(graph, exchange_sim, webhook_receiver)
    exchange_sim.graph.add_app("other", "pw")
    with graph_client(exchange_sim, ("other", "pw")) as other:
        assert other.get("/subscriptions").json()["value"] == []
    assert datetime.fromisoformat(exchange_sim.graph.subscriptions.all()[0].expiration.isoformat()) > exchange_sim.clock.now()
