"""SyncFolderItems reports a change of the read flag alone as ReadFlagChange, anything more as Update."""

from __future__ import annotations

from exchangelib import Message


def test_a_read_flag_change_alone_is_reported_as_read_flag_change(account):
    item = Message(account=account, folder=account.drafts, subject="Hello", is_read=False)
    item.save()
    list(account.drafts.sync_items())
    item.is_read = True
    item.save(update_fields=["is_read"])
    [(kind, (item_id, is_read))] = list(account.drafts.sync_items())
    assert (kind, item_id.id, is_read) == ("read_flag_change", item.id, True)


def test_a_read_flag_change_with_other_edits_is_an_update(account):
    item = Message(account=account, folder=account.drafts, subject="Hello", is_read=False)
    item.save()
    list(account.drafts.sync_items())
    item.is_read = True
    item.save(update_fields=["is_read"])
    item.subject = "Changed"
    item.save(update_fields=["subject"])
    [(kind, changed)] = list(account.drafts.sync_items())
    assert (kind, changed.subject) == ("update", "Changed")
