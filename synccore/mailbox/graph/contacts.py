"""The contact operations of the Graph backend: the contact folder, delta rounds, finding items
by sync id, and writes through ``$batch``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from synccore.mailbox import base
from synccore.mailbox.base import ChangePage, ConnectionConfig, ContactCard, ItemResult, RemoteRef
from synccore.mailbox.graph.client import (
    DELTA_PAGE_SIZE,
    IMMUTABLE_IDS,
    PAGE_SIZE,
    Call,
    GraphClient,
    odata_query,
    segment,
    user_path,
)
from synccore.mailbox.graph.translation import (
    BUSINESS_FAX_PROPERTY_ID,
    EXPAND_SYNC_ID,
    SYNC_ID_PROPERTY_ID,
    change_key_of,
    contact_body,
    copy_body,
    deletion_results,
    extended_value,
    if_match,
    item_results,
    odata_string,
    property_id,
    sync_id_filter,
)

DEFAULT_CONTACTS = "contacts"  # the well-known name of the default Contacts folder
FIND_CHUNK = 20  # sync ids looked up one by one (one $batch) before the whole folder is listed


class ContactOperations:
    """The contact half of ``MailboxBackend`` over Graph (mixed into ``GraphBackend``)."""

    client: GraphClient
    config: ConnectionConfig

    def ensure_contact_folder(self, mailbox: str, name: str) -> str:
        if not name:
            # Graph takes the well-known name wherever a folder id goes: no request.
            return DEFAULT_CONTACTS
        # Folders directly under the default Contacts folder, which is where Outlook shows them.
        folders = f"{user_path(mailbox)}/contactFolders"
        found = self.client.get(
            mailbox,
            f"{folders}?{odata_query(filter=f'displayName eq {odata_string(name)}', select='id,displayName')}",
        )
        for folder in found.get("value", []):
            if str(folder.get("displayName", "")).lower() == name.lower():
                return folder["id"]
        answer = self.client.send(mailbox, "POST", folders, body={"displayName": name}, idempotent=False)
        if answer.status == 409:  # made meanwhile by another pass
            return self.ensure_contact_folder(mailbox, name)
        if not answer.ok:
            raise answer.error()
        return answer.body["id"]

    # Reading ---------------------------------------------------------------------------------

    def _delta(self, mailbox: str, first_url: str, token: str, folder_id: str) -> ChangePage:
        """One delta round: every page, removals as ``@removed``; the token is the deltaLink."""
        changed: dict[str, RemoteRef] = {}
        deleted: dict[str, None] = {}
        headers = {"Prefer": f"{IMMUTABLE_IDS}, odata.maxpagesize={DELTA_PAGE_SIZE}"}
        page: dict[str, Any] = {}
        try:
            for page in self.client.pages(mailbox, token or first_url, headers=headers):
                for entry in page.get("value", []):
                    item_id = entry["id"]
                    if "@removed" in entry:
                        changed.pop(item_id, None)
                        deleted[item_id] = None
                    else:
                        deleted.pop(item_id, None)
                        changed[item_id] = RemoteRef(item_id, change_key_of(entry), folder_id)
        except base.ItemNotFound as exc:
            if token:  # a token of a folder that is no more: a reconcile finds the truth
                raise base.InvalidSyncToken(str(exc), code=exc.code) from exc
            raise
        except base.InvalidItem as exc:
            if token:  # a malformed or foreign token (e.g. stored by the EWS backend)
                raise base.InvalidSyncToken(str(exc), code=exc.code) from exc
            raise
        next_token = page.get("@odata.deltaLink", "")
        if not next_token:
            raise base.TransientMailboxError("Microsoft Graph ended a delta round without a deltaLink.")
        return ChangePage(changed=list(changed.values()), deleted=list(deleted), token=next_token)

    def contact_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        first = f"{user_path(mailbox)}/contactFolders/{segment(folder_id)}/contacts/delta?{odata_query(select='id,changeKey')}"
        return self._delta(mailbox, first, token, folder_id)

    def _folder_items(self, mailbox: str, folder_id: str) -> Iterable[dict[str, Any]]:
        url = f"{user_path(mailbox)}/contactFolders/{segment(folder_id)}/contacts?" + odata_query(
            select="id,changeKey", expand=EXPAND_SYNC_ID, top=PAGE_SIZE
        )
        for page in self.client.pages(mailbox, url):
            yield from page.get("value", [])

    def list_synced_items(self, mailbox: str, folder_id: str) -> dict[str, RemoteRef]:
        found: dict[str, RemoteRef] = {}
        for item in self._folder_items(mailbox, folder_id):
            sync_id = extended_value(item, SYNC_ID_PROPERTY_ID)
            if sync_id:
                found.setdefault(sync_id, RemoteRef(item["id"], change_key_of(item), folder_id))
        return found

    def find_by_sync_ids(
        self, mailbox: str, folder_ids: Sequence[str], sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        wanted = list(dict.fromkeys(sync_ids))
        found: dict[str, RemoteRef] = {}
        for folder_id in dict.fromkeys(folder_ids):
            missing = [s for s in wanted if s not in found]
            if not missing:
                break
            if len(missing) > FIND_CHUNK:
                # Many lost links (a failed pass): reading the folder once is cheaper.
                listed = self.list_synced_items(mailbox, folder_id)
                found.update({s: listed[s] for s in missing if s in listed})
                continue
            calls = [
                Call(
                    "GET",
                    f"{user_path(mailbox)}/contactFolders/{segment(folder_id)}/contacts?"
                    + odata_query(filter=sync_id_filter(s), select="id,changeKey"),
                )
                for s in missing
            ]
            for sync_id, answer in zip(missing, self.client.batch(mailbox, calls), strict=True):
                if not answer.ok:
                    raise answer.error()
                for item in answer.body.get("value", [])[:1]:
                    found[sync_id] = RemoteRef(item["id"], change_key_of(item), folder_id)
        return found

    # Writing ---------------------------------------------------------------------------------

    def create_contacts(self, mailbox: str, folder_id: str, cards: Sequence[ContactCard]) -> list[ItemResult]:
        if not cards:
            return []
        url = f"{user_path(mailbox)}/contactFolders/{segment(folder_id)}/contacts"
        answers = self.client.batch(mailbox, [Call("POST", url, contact_body(card)) for card in cards])
        return item_results(answers, folder_id)

    def update_contacts(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, ContactCard, Iterable[str]]]
    ) -> list[ItemResult]:
        if not updates:
            return []
        calls = []
        asked: list[list[str]] = []
        for ref, card, names in updates:
            names = list(names)
            asked.append(names)
            whole = set(card.mapped_values()) <= set(names)
            # A partial update is made against the version we know; a whole overwrite (C6) is not.
            headers = {} if whole else if_match(ref.change_key)
            calls.append(
                Call("PATCH", self._contact_url(mailbox, ref.item_id), contact_body(card, names), headers)
            )
        answers = self.client.batch(mailbox, calls)
        stale = [i for i, a in enumerate(answers) if a.status == 412]
        if stale:
            # Changed in Outlook since we last saw it: the CRM is the source (C6), so every mapped
            # field is written onto the current version.
            again = self.client.batch(
                mailbox,
                [
                    Call(
                        "PATCH",
                        self._contact_url(mailbox, updates[i][0].item_id),
                        contact_body(updates[i][1], {*updates[i][1].mapped_values(), *asked[i]}),
                    )
                    for i in stale
                ],
            )
            for i, answer in zip(stale, again, strict=True):
                answers[i] = answer
        return [
            ItemResult(ref=RemoteRef(ref.item_id, change_key_of(a.body or {}), ref.folder_id))
            if a.ok
            else ItemResult(error=a.error())
            for (ref, _, _), a in zip(updates, answers, strict=True)
        ]

    def _contact_url(self, mailbox: str, item_id: str) -> str:
        return f"{user_path(mailbox)}/contacts/{segment(item_id)}"

    def move_items(
        self, mailbox: str, refs: Sequence[RemoteRef], folder_id: str, properties: Sequence[str] = ()
    ) -> list[ItemResult]:
        """Graph v1.0 cannot move a contact: copy it into the folder, then delete the original
        (the copy has a new id; a copy left by an interrupted move is found by its sync id)."""
        if not refs:
            return []
        ids = [SYNC_ID_PROPERTY_ID, BUSINESS_FAX_PROPERTY_ID, *(property_id(name) for name in properties)]
        expand = (
            "singleValueExtendedProperties($filter="
            + " or ".join(f"id eq {odata_string(i)}" for i in ids)
            + ")"
        )
        reads = self.client.batch(
            mailbox,
            [
                Call("GET", f"{self._contact_url(mailbox, r.item_id)}?{odata_query(expand=expand)}")
                for r in refs
            ],
        )
        results: list[ItemResult | None] = [None] * len(refs)
        sources: dict[int, dict[str, Any]] = {}
        for i, answer in enumerate(reads):
            if answer.ok:
                sources[i] = answer.body
            else:
                results[i] = ItemResult(error=answer.error())
        present = (
            self.list_synced_items(mailbox, folder_id)
            if any(extended_value(s, SYNC_ID_PROPERTY_ID) for s in sources.values())
            else {}
        )
        to_copy = []
        copies: dict[int, RemoteRef] = {}
        for i, source in sources.items():
            if source.get("parentFolderId") == folder_id:
                copies[i] = RemoteRef(source["id"], change_key_of(source), folder_id)
                results[i] = ItemResult(ref=copies[i])
                continue
            existing = present.get(extended_value(source, SYNC_ID_PROPERTY_ID) or "\0")
            if existing is not None:
                copies[i] = existing
            else:
                to_copy.append(i)
        url = f"{user_path(mailbox)}/contactFolders/{segment(folder_id)}/contacts"
        created = self.client.batch(mailbox, [Call("POST", url, copy_body(sources[i])) for i in to_copy])
        for i, answer in zip(to_copy, created, strict=True):
            if answer.ok:
                copies[i] = RemoteRef(answer.body["id"], change_key_of(answer.body), folder_id)
            else:
                results[i] = ItemResult(error=answer.error())
        originals = [i for i in copies if results[i] is None]
        deleted = self.delete_items(mailbox, [refs[i] for i in originals])
        for i, outcome in zip(originals, deleted, strict=True):
            results[i] = ItemResult(ref=copies[i]) if outcome.ok else ItemResult(error=outcome.error)
        return [r if r is not None else ItemResult(error=base.ItemError("not moved")) for r in results]

    def delete_items(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        if not refs:
            return []
        urls = [self._contact_url(mailbox, r.item_id) for r in refs]
        return deletion_results(refs, self.client.batch(mailbox, [Call("DELETE", url) for url in urls]))
