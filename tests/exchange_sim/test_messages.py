"""Messages over both front ends: Internet message ids shared by sent and received copies, drafts, categories,
SyncFolderItems / delta on Inbox and Sent Items, sendMail, attachments named, and the /_sim/ delivery call."""

from __future__ import annotations

import json
import urllib.request

from exchangelib import Message

from exchange_sim import Simulator

from .conftest import connect

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"
A = f"/users/{ALICE}"


def sim_post(sim: Simulator, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{sim.url.rsplit('/EWS', 1)[0]}/_sim/{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def test_sent_and_received_copies_share_the_internet_message_id_and_a_saved_message_is_a_draft(
    account, exchange_sim: Simulator
):
    draft = Message(account=account, folder=account.drafts, subject="Draft", body="x", to_recipients=[BOB])
    draft.save()
    assert account.drafts.get(id=draft.id).is_draft is True
    Message(
        account=account, subject="Offer", body="Hi", to_recipients=[BOB], categories=["CRM"]
    ).send_and_save()
    [sent] = list(account.sent.all())
    [received] = list(connect(exchange_sim, BOB).inbox.all())
    assert sent.message_id and sent.message_id == received.message_id
    assert (sent.is_draft, received.is_draft, received.sender.email_address) == (False, False, ALICE)


def test_sync_folder_items_on_the_inbox_reads_headers_and_categories_are_updated(
    account, exchange_sim: Simulator
):
    exchange_sim.user(ALICE).receive_message(
        "Offer", "ann@fabrikam.example", cc=[BOB], categories=["CRM"], attachments=["offer.pdf"]
    )
    changes = list(
        account.inbox.sync_items(
            only_fields=["subject", "categories", "message_id", "sender", "cc_recipients", "has_attachments"]
        )
    )
    [(kind, item)] = changes
    assert kind == "create" and (item.subject, item.categories, item.sender.email_address) == (
        "Offer",
        ["CRM"],
        "ann@fabrikam.example",
    )
    assert (
        item.message_id.startswith("<")
        and item.has_attachments
        and [m.email_address for m in item.cc_recipients] == [BOB]
    )
    item.categories = ["CRM", "Filed in CRM"]
    item.save(update_fields=["categories"])
    assert exchange_sim.user(ALICE).messages()[0].props["Categories"] == ["CRM", "Filed in CRM"]
    [(kind, _)] = list(
        account.inbox.sync_items(sync_state=account.inbox.item_sync_state, only_fields=["categories"])
    )
    assert kind == "update"
    [fetched] = list(account.fetch(ids=[item]))
    assert [a.name for a in fetched.attachments] == ["offer.pdf"]


def test_the_control_call_delivers_a_message_and_sends_one(exchange_sim: Simulator):
    made = sim_post(exchange_sim, f"mailboxes/{ALICE}/messages", {"folder": "inbox", "from": "ann@fabrikam.example", "to": [ALICE],
                    "subject": "Hello", "body": "Hi", "categories": ["CRM"], "received": "2027-01-04T09:00:00Z",
                    "internet_message_id": "<m1@fabrikam.example>"})  # fmt: skip
    stored = exchange_sim.store.item(made["id"])
    assert (
        stored.props["InternetMessageId"],
        stored.props["IsDraft"],
        stored.props["DateTimeReceived"].isoformat(),
    ) == ("<m1@fabrikam.example>", False, "2027-01-04T09:00:00+00:00")
    sent = sim_post(
        exchange_sim,
        f"mailboxes/{ALICE}/messages",
        {"send": True, "to": [BOB], "subject": "Out", "body": "Yo"},
    )
    assert (
        exchange_sim.store.item(sent["id"]).props["InternetMessageId"]
        == exchange_sim.user(BOB).messages()[0].props["InternetMessageId"]
    )


def test_graph_messages_delta_reads_the_inbox_and_patch_sets_categories(exchange_sim: Simulator, graph):
    user = exchange_sim.user(ALICE)
    user.receive_message(
        "One", "ann@fabrikam.example", body="text one", categories=["CRM"], attachments=["a.txt"]
    )
    first = graph.get(
        f"{A}/mailFolders/inbox/messages/delta",
        params={"$select": "subject,categories,internetMessageId,isDraft,from"},
    )
    assert first.status_code == 200, first.text
    [message] = first.json()["value"]
    assert (
        message["subject"],
        message["categories"],
        message["isDraft"],
        message["from"]["emailAddress"]["address"],
    ) == ("One", ["CRM"], False, "ann@fabrikam.example")
    assert "body" not in message
    delta_link = first.json()["@odata.deltaLink"]
    full = graph.get(f"{A}/messages/{message['id']}", params={"$expand": "attachments($select=name)"},
                     headers={"Prefer": 'outlook.body-content-type="text"'}).json()  # fmt: skip
    assert (full["body"]["content"], [a["name"] for a in full["attachments"]]) == ("text one", ["a.txt"])
    patched = graph.patch(f"{A}/messages/{message['id']}", json={"categories": ["CRM", "Filed in CRM"]})
    assert patched.status_code == 200 and patched.json()["categories"] == ["CRM", "Filed in CRM"]
    assert (
        graph.patch(f"{A}/messages/{message['id']}", json={"subject": "x"}).status_code == 400
    )  # not a draft
    again = graph.get(delta_link).json()
    assert [m["categories"] for m in again["value"]] == [["CRM", "Filed in CRM"]]
    assert graph.get(again["@odata.deltaLink"]).json()["value"] == []


def test_graph_send_mail_delivers_and_keeps_the_copy_in_sent_items(exchange_sim: Simulator, graph):
    answer = graph.post(f"{A}/sendMail", json={"message": {"subject": "Quote", "body": {"contentType": "text", "content": "Hi"},
                        "toRecipients": [{"emailAddress": {"address": BOB}}]}})  # fmt: skip
    assert answer.status_code == 202, answer.text
    [sent] = graph.get(f"{A}/mailFolders/sentitems/messages").json()["value"]
    [received] = graph.get(f"/users/{BOB}/mailFolders/inbox/messages").json()["value"]
    assert (
        sent["internetMessageId"] == received["internetMessageId"]
        and not sent["isDraft"]
        and not received["isRead"]
    )
    draft = graph.post(f"{A}/messages", json={"subject": "Later"}).json()
    assert (
        draft["isDraft"] is True
        and graph.get(f"{A}/mailFolders/drafts/messages").json()["value"][0]["subject"] == "Later"
    )


def test_a_subscription_to_a_users_messages_is_notified_of_a_delivered_message(exchange_sim: Simulator, graph, webhook_receiver):
    from .test_graph_subscriptions import subscribe

    answer = subscribe(graph, exchange_sim, webhook_receiver, resource=f"users/{ALICE}/messages")
    assert answer.status_code == 201, answer.text
    exchange_sim.user(ALICE).receive_message("Hello", "ann@fabrikam.example")
    assert exchange_sim.graph.subscriptions.wait_idle()
    resources = [n["resource"] for n in webhook_receiver.notifications]
    assert any("/Messages/" in r for r in resources), resources
