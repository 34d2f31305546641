"""Attachments: ids of their own, HasAttachments, GetAttachment / CreateAttachment / DeleteAttachment."""

from __future__ import annotations

import pytest
from exchangelib import Contact, FileAttachment, ItemAttachment, Message
from exchangelib.attachments import AttachmentId
from exchangelib.errors import ErrorItemNotFound

from exchange_sim import Simulator


def test_an_item_saved_with_attachments_stays_readable_and_names_them(account):
    item = Message(account=account, folder=account.drafts, subject="With files")
    item.attach(FileAttachment(name="a.txt", content=b"hello", content_type="text/plain"))
    item.save()
    [attachment] = item.attachments
    assert attachment.attachment_id.id
    fresh = account.drafts.get(id=item.id)
    assert fresh.has_attachments is True
    [summary] = fresh.attachments
    assert (summary.name, summary.size, summary.attachment_id.id) == ("a.txt", 5, attachment.attachment_id.id)
    assert summary.content == b"hello"  # read with GetAttachment


def test_an_item_attachment_carries_the_whole_item(account):
    contact = Contact(account=account, folder=account.contacts, given_name="Ann", surname="Lee", display_name="Ann Lee")
    contact.save()
    item = Message(account=account, folder=account.drafts, subject="Card")
    item.attach(ItemAttachment(name="Ann", item=contact))
    item.save()
    [attached] = account.drafts.get(id=item.id).attachments
    assert isinstance(attached.item, Contact)
    assert (attached.item.given_name, attached.item.surname) == ("Ann", "Lee")


def test_attaching_to_a_saved_item_and_detaching_move_its_change_key(account, exchange_sim: Simulator):
    item = Message(account=account, folder=account.drafts, subject="Later")
    item.save()
    before = item.changekey
    item.attach(FileAttachment(name="b.bin", content=b"\x00\x01"))
    stored = exchange_sim.user("alice@contoso.example").get(item.id)
    assert stored.changekey != before and stored.has_attachments
    [attachment] = item.attachments
    attachment.detach()
    assert not exchange_sim.user("alice@contoso.example").get(item.id).has_attachments
    assert account.drafts.get(id=item.id).has_attachments is False


def test_an_item_without_attachments_says_so(account):
    item = Message(account=account, folder=account.drafts, subject="Plain")
    item.save()
    assert account.drafts.get(id=item.id).has_attachments is False


def test_a_detached_attachment_is_gone(account):
    item = Message(account=account, folder=account.drafts, subject="Once")
    item.attach(FileAttachment(name="c.txt", content=b"x"))
    item.save()
    [attachment] = item.attachments
    old_id = attachment.attachment_id.id
    attachment.detach()
    gone = FileAttachment(name="c.txt", parent_item=item, attachment_id=AttachmentId(id=old_id))
    with pytest.raises(ErrorItemNotFound):
        gone.detach()
