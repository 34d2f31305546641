"""The folder tree of a new Exchange Online mailbox and the folder operations around it."""

from __future__ import annotations

import pytest
from exchangelib import Message
from exchangelib.errors import (
    ErrorCannotDeleteObject,
    ErrorFolderExists,
    ErrorItemNotFound,
    ErrorObjectTypeChanged,
)
from exchangelib.folders import SHALLOW, CommonViews, Folder, FolderCollection, Messages, SingleFolderQuerySet

from exchange_sim import Simulator


def test_the_root_is_named_root_above_the_top_of_information_store(account):
    assert account.root.name == "root"
    assert [f.name for f in account.calendar.parts] == ["root", "Top of Information Store", "Calendar"]
    assert account.root.tree().startswith("root")


def test_a_mailbox_has_the_standard_folder_set(account):
    names = {f.name for f in FolderCollection(account=account, folders=[account.root]).find_folders()}
    assert len(names) > 40
    assert {"Common Views", "Finder", "Recoverable Items", "Deletions", "Purges", "Versions", "Sync Issues"} <= names
    assert [f.name for f in account.contacts.glob("gal*")] == ["GAL Contacts"]
    assert isinstance(account.root / "Common Views", CommonViews)


def test_the_standard_folders_cannot_be_deleted(account, exchange_sim: Simulator):
    with pytest.raises(ErrorCannotDeleteObject):
        (account.root / "Common Views").delete()
    assert exchange_sim.user("alice@contoso.example").folder("root/Common Views")


def test_a_plain_folder_has_no_folder_class_and_counts_unread_items(account):
    folder = Folder(parent=account.inbox, name="Plain").save()
    folder.refresh()
    assert type(folder) is Folder and folder.folder_class is None
    for subject in ("a", "b"):
        Message(account=account, folder=folder, subject=subject, is_read=False).save()
    folder.refresh()
    assert (folder.total_count, folder.unread_count, folder.child_folder_count) == (2, 2, 0)


def test_names_conflict_case_insensitively(account):
    Folder(parent=account.inbox, name="ABC").save()
    with pytest.raises(ErrorFolderExists) as refused:
        Folder(parent=account.inbox, name="abc").save()
    assert "Could not create folder 'abc'" in str(refused.value)


def test_empty_folder_removes_items_and_sub_folders_only_when_asked(account):
    folder = Messages(parent=account.inbox, name="Full").save()
    Messages(parent=folder, name="Child").save()
    Message(account=account, folder=folder, subject="x").save()
    folder.empty()
    assert folder.all().count() == 0 and len(list(folder.children)) == 1
    folder.empty(delete_sub_folders=True)
    assert len(list(folder.children)) == 0


def test_a_moved_folder_keeps_its_id_and_gets_a_new_change_key(account):
    moving = Folder(parent=account.inbox, name="Moving").save()
    target = Folder(parent=account.inbox, name="Target").save()
    before = moving.changekey
    moving.move(target)
    moving.refresh()
    assert moving.parent == target and moving.changekey != before


def test_the_folder_class_cannot_be_changed(account):
    folder = Messages(parent=account.inbox, name="Mail").save()
    folder.name = "Renamed"
    folder.save()  # writes the unchanged class along: fine
    folder.folder_class = "IPF.Other"
    with pytest.raises(ErrorObjectTypeChanged):
        folder.save(update_fields=["folder_class"])


def test_updating_a_deleted_folder_is_error_item_not_found(account):
    folder = Folder(parent=account.inbox, name="Gone").save()
    folder_id, changekey = folder.id, folder.changekey
    folder.delete()
    folder.id, folder.changekey = folder_id, changekey
    with pytest.raises(ErrorItemNotFound):
        folder.save()


def test_an_id_only_folder_shape_answers_only_the_named_properties(account):
    parent = Folder(parent=account.inbox, name="Parent").save()
    Folder(parent=parent, name="Child").save()
    [child] = list(SingleFolderQuerySet(account=account, folder=parent).depth(SHALLOW).only("name"))
    assert child.name == "Child" and child.child_folder_count is None
