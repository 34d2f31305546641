"""Sending mail: SendItem and CreateItem with a send disposition, between simulator mailboxes."""

from __future__ import annotations

from exchangelib import Message

from exchange_sim import Simulator

from .conftest import connect


def draft(account, *to: str) -> Message:
    item = Message(account=account, folder=account.drafts, subject="Hello", body="Hi", to_recipients=list(to))
    item.save()
    return item


def test_send_item_moves_the_draft_to_sent_items_and_delivers_to_the_inbox(account, exchange_sim: Simulator):
    item = draft(account, "bob@contoso.example", "someone@fabrikam.example")
    assert account.bulk_send(ids=[item]) == [True]
    assert list(account.drafts.all()) == []
    [sent] = list(account.sent.all())
    assert (sent.subject, sent.is_draft) == ("Hello", False)
    [received] = list(connect(exchange_sim, "bob@contoso.example").inbox.all())
    assert (received.subject, received.is_read, received.author.email_address) == ("Hello", False, "alice@contoso.example")


def test_send_item_without_a_copy_leaves_nothing_behind(account, exchange_sim: Simulator):
    item = draft(account, "bob@contoso.example")
    assert account.bulk_send(ids=[item], save_copy=False) == [True]
    assert list(account.drafts.all()) == [] and list(account.sent.all()) == []
    assert len(list(connect(exchange_sim, "bob@contoso.example").inbox.all())) == 1


def test_create_item_with_send_and_save_copy_sends_at_once(account, exchange_sim: Simulator):
    Message(account=account, subject="Direct", body="Hi", to_recipients=["carol@contoso.example"]).send_and_save()
    assert [m.subject for m in account.sent.all()] == ["Direct"]
    assert [m.subject for m in connect(exchange_sim, "carol@contoso.example").inbox.all()] == ["Direct"]
