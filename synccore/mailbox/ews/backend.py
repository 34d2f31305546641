"""``EwsBackend``: the mailbox interface over Exchange Server on premises (EWS, exchangelib).

Choices that matter (see DESIGN §7):
- folder objects are built from stored ids, so a pass in a fresh process does not walk the
  folder tree;
- updates send only the named fields (a full ``save()`` rewrites times and empties fields);
- the calendar and task operations are mixed in from ``calendar.py`` and ``tasks.py``; conversions are in
  ``translation.py``; exchangelib's errors, retries and request counting in ``client.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import ClassVar

from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Contact,
    Credentials,
    Folder,
    Identity,
    OAuth2Credentials,
    Q,
    Version,
)
from exchangelib.folders import SHALLOW, Contacts, FolderCollection, Root
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import Protocol
from exchangelib.services import CreateFolder

from synccore.mailbox import base
from synccore.mailbox.base import (
    ChangePage,
    ConnectionConfig,
    ContactCard,
    ItemResult,
    MailboxBackend,
    PushStyle,
    RemoteRef,
)
from synccore.mailbox.ews.calendar import CalendarOperations
from synccore.mailbox.ews.client import (
    FIND_PAGE,
    SERVER_BUILD,
    SYNC_PAGE,
    Serialized,
    SyncRetryPolicy,
    bulk_create,
    bulk_update,
    item_result,
    requests_sent,
    sync_item_ids,
    translate,
)
from synccore.mailbox.ews.fastxml import contact_xml
from synccore.mailbox.ews.messages import MessageOperations
from synccore.mailbox.ews.streaming import StreamingOperations
from synccore.mailbox.ews.tasks import TaskOperations
from synccore.mailbox.ews.translation import SYNC_ID_FIELD, ews_fields, to_contact

log = logging.getLogger(__name__)


class EwsBackend(CalendarOperations, TaskOperations, MessageOperations, StreamingOperations, MailboxBackend):
    """A ``MailboxBackend`` over EWS: contacts and folders here, the calendar and stream push
    mixed in."""

    push_style: ClassVar[PushStyle] = "stream"

    def __init__(self, config: ConnectionConfig, *, own_pool: bool = False) -> None:
        """``own_pool``: connections of this backend's own, not shared with the rest of the process.

        exchangelib keeps one protocol (one pool of HTTP sessions) per endpoint and credentials for
        the whole process. A streaming connection blocks one of those sessions for minutes, so
        each push connection asks for a pool of its own.
        """
        self.config = config
        self._own_pool = own_pool
        self._own_protocols: dict[int, Protocol] = {}
        self._configuration = Configuration(
            service_endpoint=config.ews_url or None,
            server=None,
            credentials=self._credentials(config),
            auth_type=self._auth_type(config),
            version=Version(build=SERVER_BUILD),
            retry_policy=SyncRetryPolicy(max_wait=config.max_wait_s),
            max_connections=config.max_connections,
        )
        self._accounts: dict[str, Account] = {}
        self._requests_at_start = requests_sent()

    @property
    def requests(self) -> int:  # type: ignore[override]
        return requests_sent() - self._requests_at_start

    @staticmethod
    def _auth_type(config: ConnectionConfig) -> str:
        return {"ntlm": NTLM, "basic": BASIC, "oauth2": OAUTH2}[config.auth_type]

    @staticmethod
    def _credentials(config: ConnectionConfig):
        if config.auth_type == "oauth2":
            return OAuth2Credentials(
                client_id=config.client_id, client_secret=config.client_secret, tenant_id=config.tenant_id
            )
        return Credentials(username=config.username, password=config.password)

    def account(self, mailbox: str) -> Account:
        key = mailbox.lower()
        if key not in self._accounts:
            if not self.config.ews_url:
                raise base.PermanentMailboxError(
                    "No EWS URL is configured (autodiscover is not used by this product)."
                )
            configuration = self._configuration
            if self.config.auth_type == "oauth2":
                # OAuth with impersonation names the mailbox in the token request's identity.
                configuration = Configuration(
                    service_endpoint=self.config.ews_url,
                    credentials=OAuth2Credentials(
                        client_id=self.config.client_id,
                        client_secret=self.config.client_secret,
                        tenant_id=self.config.tenant_id,
                        identity=Identity(primary_smtp_address=mailbox),
                    ),
                    auth_type=OAUTH2,
                    version=Version(build=SERVER_BUILD),
                    retry_policy=SyncRetryPolicy(max_wait=self.config.max_wait_s),
                    max_connections=self.config.max_connections,
                )
            account = Account(
                primary_smtp_address=mailbox,
                config=configuration,
                autodiscover=False,
                access_type=IMPERSONATION if self.config.impersonation else DELEGATE,
                default_timezone=None,
            )
            if self._own_pool:
                account.protocol = self._own_protocol(configuration)
            self._accounts[key] = account
        return self._accounts[key]

    def _own_protocol(self, configuration: Configuration) -> Protocol:
        found = self._own_protocols.get(id(configuration))
        if found is None:
            # Calling the class through `type` skips exchangelib's process-wide protocol cache
            # (its metaclass); the protocol and its session pool belong to this backend alone.
            found = type.__call__(Protocol, config=configuration)
            self._own_protocols[id(configuration)] = found
        return found

    def call(self, fn, *args, **kwargs):
        """Run an exchangelib call; whatever it raises comes out in the ``MailboxError`` family."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # translated into the one error family
            raise translate(exc) from exc

    # Folders -------------------------------------------------------------------------------

    def root(self, account: Account) -> Root:
        # A root object without a GetFolder round trip: only its account is used.
        return Root(
            account=account,
            _distinguished_id=DistinguishedFolderId(
                id=Root.DISTINGUISHED_FOLDER_ID, mailbox=Mailbox(email_address=account.primary_smtp_address)
            ),
        )

    def folder(self, account: Account, folder_id: str) -> Folder:
        return Folder(root=self.root(account), id=folder_id)

    def check(self, mailbox: str) -> list[str]:
        account = self.account(mailbox)
        tried = [
            f"EWS {self.config.ews_url} as {self.config.username or self.config.client_id} ({self.config.auth_type})"
        ]
        self.call(Contacts.get_distinguished, self.root(account))
        tried.append(f"opened the contacts folder of {mailbox}")
        return tried

    def ensure_contact_folder(self, mailbox: str, name: str) -> str:
        account = self.account(mailbox)
        contacts = self.call(Contacts.get_distinguished, self.root(account))
        if not name:
            return contacts.id
        found = self.call(self._find_child, contacts, name)
        if found:
            return found[0].id
        new = Folder(parent=contacts, name=name, folder_class="IPF.Contact")
        created = self.call(
            lambda: list(CreateFolder(account=account).call(parent_folder=contacts, folders=[new]))
        )
        result = created[0]
        if isinstance(result, Exception):
            raise translate(result)
        return result.id

    @staticmethod
    def _find_child(parent: Folder, name: str) -> list[Folder]:
        # FindFolder on the one parent: `parent / name` would walk the whole folder tree.
        collection = FolderCollection(account=parent.account, folders=[parent])
        return [
            f
            for f in collection.find_folders(q=Q(name=name), depth=SHALLOW)
            if not isinstance(f, Exception) and (f.name or "").lower() == name.lower()
        ]

    # Reading -------------------------------------------------------------------------------

    def contact_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        account = self.account(mailbox)
        changes, state = self.call(sync_item_ids, account, self.folder(account, folder_id), token or None, SYNC_PAGE)
        page = ChangePage(token=state)
        for change_type, item_id, change_key in changes:
            if change_type == "delete":
                page.deleted.append(item_id)
            elif change_type in ("create", "update"):
                page.changed.append(RemoteRef(item_id, change_key or "", folder_id))
        return page

    def list_synced_items(self, mailbox: str, folder_id: str) -> dict[str, RemoteRef]:
        folder = self.folder(self.account(mailbox), folder_id)
        query = folder.all().only("id", "changekey", SYNC_ID_FIELD)
        query.page_size = FIND_PAGE
        found: dict[str, RemoteRef] = {}

        def consume() -> None:
            for item in query:
                if isinstance(item, Exception):
                    raise item
                sync_id = getattr(item, SYNC_ID_FIELD, None)
                if sync_id:
                    found.setdefault(sync_id, RemoteRef(item.id, item.changekey or "", folder_id))

        self.call(consume)
        return found

    def find_by_sync_ids(
        self, mailbox: str, folder_ids: Sequence[str], sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        account = self.account(mailbox)
        found: dict[str, RemoteRef] = {}
        wanted = list(dict.fromkeys(sync_ids))
        for folder_id in dict.fromkeys(folder_ids):
            folder = self.folder(account, folder_id)
            for start in range(0, len(wanted), 50):
                chunk = [s for s in wanted[start : start + 50] if s not in found]
                if not chunk:
                    continue
                query = folder.filter(**{f"{SYNC_ID_FIELD}__in": chunk}).only(
                    "id", "changekey", SYNC_ID_FIELD
                )

                def consume(query=query, folder_id=folder_id) -> None:
                    for item in query:
                        if isinstance(item, Exception):
                            raise item
                        found.setdefault(
                            getattr(item, SYNC_ID_FIELD), RemoteRef(item.id, item.changekey or "", folder_id)
                        )

                self.call(consume)
        return found

    # Writing -------------------------------------------------------------------------------

    def create_contacts(self, mailbox: str, folder_id: str, cards: Sequence[ContactCard]) -> list[ItemResult]:
        if not cards:
            return []
        account = self.account(mailbox)
        folder = self.folder(account, folder_id)

        def build(card: ContactCard) -> Contact | Serialized:
            # Built straight from the card where fastxml covers it; else by exchangelib.
            element = contact_xml(card, account.version)
            return to_contact(card, account, folder) if element is None else Serialized(element, account)

        return bulk_create(
            self.call,
            account,
            folder,
            cards,
            build,
            folder_id=folder_id,
            chunk_size=self.config.batch_size,
        )

    def update_contacts(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, ContactCard, Iterable[str]]]
    ) -> list[ItemResult]:
        if not updates:
            return []
        account = self.account(mailbox)

        def build(card: ContactCard, names: Iterable[str]) -> tuple[Contact, list[str]]:
            fieldnames = ews_fields(names)
            if card.sync_id:
                fieldnames.append(SYNC_ID_FIELD)
            return to_contact(card, account), fieldnames

        # AlwaysOverwrite: the CRM is the source for contacts (C6), whatever Outlook did since.
        return bulk_update(self.call, account, updates, build, chunk_size=self.config.batch_size)

    def move_items(
        self, mailbox: str, refs: Sequence[RemoteRef], folder_id: str, properties: Sequence[str] = ()
    ) -> list[ItemResult]:
        # A real move: every property goes with the item.
        if not refs:
            return []
        account = self.account(mailbox)
        folder = self.folder(account, folder_id)
        results = self.call(
            account.bulk_move,
            ids=[(r.item_id, r.change_key or None) for r in refs],
            to_folder=folder,
            chunk_size=self.config.batch_size,
        )
        return [item_result(r, folder_id) for r in results]

    def delete_items(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        return self.delete_events(mailbox, refs, send_cancellations=False)

    def close(self) -> None:
        for account in self._accounts.values():
            try:
                account.protocol.close()
            except Exception:  # closing is best effort
                log.debug("closing an EWS protocol failed", exc_info=True)
        self._accounts.clear()
        self._own_protocols.clear()
