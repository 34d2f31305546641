"""The calendar operations of the EWS backend: the folder, changes (SyncFolderItems, as for
contacts), reads with the subjects and locations of exceptions, writes, and series with their
occurrences addressed by InstanceIndex (K10)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from exchangelib import Account, CalendarItem, EWSDateTime, Folder
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY, SEND_TO_NONE
from exchangelib.properties import OccurrenceItemId

from synccore.mailbox import base
from synccore.mailbox.base import (
    CalendarEvent,
    ChangePage,
    ConnectionConfig,
    ItemResult,
    MailboxError,
    RemoteRef,
)
from synccore.mailbox.ews.client import (
    FIND_PAGE,
    Serialized,
    create_items,
    item_result,
    read_items,
    serialize_once,
    translate,
)
from synccore.mailbox.ews.fastread import EventReader, ReadEvent, event_fields
from synccore.mailbox.ews.fastxml import calendar_item_xml
from synccore.mailbox.ews.translation import (
    event_fieldnames,
    ews_timezone,
    exception_ids,
    from_calendar_item,
    read_properties,
    to_calendar_item,
)


def checked(item: CalendarItem, account: Account, *, create: bool = False) -> CalendarItem:
    """The item, once exchangelib has serialized it: a value it refuses (it checks only while it
    sends a whole batch) fails this item (InvalidItem), never the batch or the pass (DESIGN §5).
    An item to create is not serialized again for its batch (``serialize_once``)."""
    try:
        if create:
            serialize_once(item, account.version)
        else:
            item.to_xml(version=account.version)
    except (ValueError, TypeError) as exc:
        raise base.InvalidItem(f"Exchange cannot take this event: {exc}") from exc
    return item


class CalendarOperations:
    """The calendar half of ``MailboxBackend`` over EWS, mixed into ``EwsBackend``, whose
    ``account``, ``call``, ``root``, ``folder`` and ``contact_changes`` it uses."""

    config: ConnectionConfig

    def ensure_calendar_folder(self, mailbox: str) -> str:
        account = self.account(mailbox)
        return self.call(Calendar.get_distinguished, self.root(account)).id

    def calendar_changes(
        self, mailbox: str, folder_id: str, token: str, known: Mapping[str, str] | None = None
    ) -> ChangePage:
        return self.contact_changes(mailbox, folder_id, token)

    def calendar_slice(self, mailbox: str, folder_id: str, start: datetime, end: datetime) -> list[RemoteRef]:
        folder = self.folder(self.account(mailbox), folder_id)
        query = folder.filter(
            start__gte=EWSDateTime.from_datetime(start.astimezone(UTC)),
            start__lt=EWSDateTime.from_datetime(end.astimezone(UTC)),
        ).only("id", "changekey")
        query.page_size = FIND_PAGE
        return self.call(
            lambda: [
                RemoteRef(i.id, i.changekey or "", folder_id) for i in query if not isinstance(i, Exception)
            ]
        )

    def calendar_present(self, mailbox: str, folder_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        if not item_ids:
            return {}
        account = self.account(mailbox)
        items = self.call(
            lambda: list(
                account.fetch(
                    ids=[(i, None) for i in item_ids],
                    folder=self.folder(account, folder_id),
                    only_fields=["parent_folder_id", "changekey"],
                    chunk_size=self.config.batch_size,
                )
            )
        )
        present: dict[str, str] = {}
        for item_id, item in zip(item_ids, items, strict=True):
            if isinstance(item, Exception):
                error = translate(item)
                if isinstance(error, base.ItemNotFound):
                    continue
                raise error
            if item.parent_folder_id is not None and item.parent_folder_id.id == folder_id:
                present[item_id] = item.changekey or ""
        return present

    def get_events(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[CalendarEvent | MailboxError]:
        if not refs:
            return []
        account = self.account(mailbox)
        # Read from the answer's XML (fastread.py) where it can; exchangelib builds the rest.
        reader = EventReader(properties)
        items = self.call(
            read_items,
            account,
            [(r.item_id, None) for r in refs],
            event_fields(properties),
            reader,
            chunk_size=self.config.batch_size,
        )
        out: list[CalendarEvent | MailboxError] = []
        exceptions: list[tuple[base.Occurrence, str, CalendarEvent]] = []
        for ref, item in zip(refs, items, strict=True):
            if isinstance(item, Exception):
                out.append(translate(item))
                continue
            if isinstance(item, ReadEvent):
                event, ids = item.event, item.exception_ids
                event.ref = RemoteRef(event.ref.item_id, event.ref.change_key, ref.folder_id)
            else:
                try:
                    event = from_calendar_item(item, ref.folder_id)
                    event.properties = read_properties(item, properties)
                except MailboxError as exc:
                    out.append(exc)
                    continue
                ids = exception_ids(item)
            out.append(event)
            exceptions += [
                (occurrence, occurrence_id, event)
                for occurrence, occurrence_id in zip(event.modified_occurrences, ids, strict=False)
            ]
        if exceptions:
            # The calendar validates the fields: exchangelib's default asks for the root folder first.
            self._read_exceptions(account, exceptions, self.folder(account, refs[0].folder_id))
        return out

    def _read_exceptions(
        self, account: Account, exceptions: list[tuple[base.Occurrence, str, CalendarEvent]], validation: Folder
    ) -> None:
        """Subject and location of modified occurrences, in one more request per batch (a master
        lists only their times)."""
        found = self.call(
            lambda: list(
                account.fetch(
                    ids=[(occurrence_id, None) for _, occurrence_id, _ in exceptions],
                    folder=validation,
                    only_fields=["subject", "location"],
                    chunk_size=self.config.batch_size,
                )
            )
        )
        for (occurrence, _, event), item in zip(exceptions, found, strict=True):
            if isinstance(item, Exception):
                continue
            subject, location = (item.subject or "").strip(), (item.location or "").strip()
            occurrence.subject = subject if subject != event.subject.strip() else None
            occurrence.location = location if location != event.location.strip() else None

    def create_events(
        self, mailbox: str, folder_id: str, events: Sequence[CalendarEvent], *, send_invitations: bool
    ) -> list[ItemResult]:
        if not events:
            return []
        account = self.account(mailbox)
        folder = self.folder(account, folder_id)
        prepared: list[CalendarItem | Serialized | MailboxError] = []
        for event in events:
            try:
                # Built straight from the event where fastxml covers it; else by exchangelib.
                element = calendar_item_xml(event, account.version)
                if element is not None:
                    prepared.append(Serialized(element, account))
                    continue
                prepared.append(checked(to_calendar_item(event, account, folder), account, create=True))
            except MailboxError as exc:
                prepared.append(exc)
        valid = [p for p in prepared if not isinstance(p, MailboxError)]
        send = SEND_TO_ALL_AND_SAVE_COPY if send_invitations else SEND_TO_NONE
        results = iter(
            self.call(
                create_items,
                account,
                folder,
                valid,
                send_meeting_invitations=send,
                chunk_size=self.config.batch_size,
            )
        )
        return [
            ItemResult(error=p) if isinstance(p, MailboxError) else item_result(next(results), folder_id)
            for p in prepared
        ]

    def update_events(
        self,
        mailbox: str,
        updates: Sequence[tuple[RemoteRef, CalendarEvent, Iterable[str]]],
        *,
        send_updates: bool,
    ) -> list[ItemResult]:
        if not updates:
            return []
        account = self.account(mailbox)
        send = SEND_TO_ALL_AND_SAVE_COPY if send_updates else SEND_TO_NONE
        results: list[ItemResult | None] = [None] * len(updates)
        plain: list[tuple[int, RemoteRef, CalendarItem, list[str]]] = []
        for index, (ref, event, names) in enumerate(updates):
            names = set(names)
            try:
                item = checked(to_calendar_item(event, account), account)
                item.id, item.changekey = ref.item_id, ref.change_key or None
            except MailboxError as exc:
                results[index] = ItemResult(error=exc)
                continue
            if names & set(base.OCCURRENCE_FIELDS) and event.recurrence:
                results[index] = self._update_series(account, ref, event, item, names, send)
            else:
                plain.append((index, ref, item, event_fieldnames(names - set(base.OCCURRENCE_FIELDS))))
        if plain:
            written = self.call(
                account.bulk_update,
                items=[(item, fieldnames) for _, _, item, fieldnames in plain],
                conflict_resolution="AlwaysOverwrite",
                send_meeting_invitations_or_cancellations=send,
                chunk_size=self.config.batch_size,
            )
            for (index, ref, _, _), result in zip(plain, written, strict=True):
                results[index] = item_result(result, ref.folder_id)
        return [r if r is not None else ItemResult(error=base.InvalidItem("not written")) for r in results]

    def _update_series(
        self,
        account: Account,
        ref: RemoteRef,
        event: CalendarEvent,
        item: CalendarItem,
        names: set[str],
        send: str,
    ) -> ItemResult:
        """A series with occurrence writes (K10): the series' own fields first (a new pattern
        drops every exception), then the deleted occurrences, then the modified ones — each
        occurrence addressed by its InstanceIndex, which the pattern gives without a request."""
        series = base.Series(event.recurrence, event.start, event.time_zone)
        master_fields = event_fieldnames(names - set(base.OCCURRENCE_FIELDS))
        change_key = ""
        try:
            if master_fields:
                (written,) = self.call(
                    account.bulk_update,
                    items=[(item, master_fields)],
                    conflict_resolution="AlwaysOverwrite",
                    send_meeting_invitations_or_cancellations=send,
                )
                result = item_result(written, ref.folder_id)
                if not result.ok:
                    return result
                change_key = result.ref.change_key
            deletes = event.deleted_occurrences if "deleted_occurrences" in names else []
            if deletes:
                ids = [self._occurrence_id(ref, series, original) for original in deletes]
                for outcome in self.call(
                    account.bulk_delete,
                    ids=ids,
                    delete_type="MoveToDeletedItems",
                    send_meeting_cancellations=send,
                ):
                    if isinstance(outcome, Exception) and not isinstance(
                        outcome, ews_errors.ErrorCalendarOccurrenceIsDeletedFromRecurrence
                    ):
                        return ItemResult(error=translate(outcome))
                change_key = ""
            modified = event.modified_occurrences if "modified_occurrences" in names else []
            if modified:
                changes = [self._occurrence_change(account, ref, series, event, o) for o in modified]
                for outcome in self.call(
                    account.bulk_update,
                    items=changes,
                    conflict_resolution="AlwaysOverwrite",
                    send_meeting_invitations_or_cancellations=send,
                ):
                    if isinstance(outcome, Exception):
                        return ItemResult(error=translate(outcome))
                change_key = ""
        except MailboxError as exc:
            if isinstance(exc, base.ItemError):
                return ItemResult(error=exc)
            raise
        return ItemResult(ref=RemoteRef(ref.item_id, change_key, ref.folder_id))

    @staticmethod
    def _occurrence_id(ref: RemoteRef, series: base.Series, original: datetime) -> OccurrenceItemId:
        index = series.index_of(original)
        if index is None:
            raise base.InvalidItem(f"{original.isoformat()} is not an occurrence of the series")
        return OccurrenceItemId(id=ref.item_id, instance_index=index)

    def _occurrence_change(
        self,
        account: Account,
        ref: RemoteRef,
        series: base.Series,
        event: CalendarEvent,
        occurrence: base.Occurrence,
    ) -> tuple[CalendarItem, list[str]]:
        tz = ews_timezone(event.time_zone)
        item = CalendarItem(account=account, _id=self._occurrence_id(ref, series, occurrence.original_start))
        item.start = EWSDateTime.from_datetime(occurrence.start).astimezone(tz)
        item.end = EWSDateTime.from_datetime(occurrence.end).astimezone(tz)
        item._start_timezone = item._end_timezone = tz
        item.subject = occurrence.subject if occurrence.subject is not None else event.subject or None
        item.location = occurrence.location if occurrence.location is not None else event.location or None
        return item, ["start", "end", "subject", "location"]

    def delete_events(
        self, mailbox: str, refs: Sequence[RemoteRef], *, send_cancellations: bool
    ) -> list[ItemResult]:
        if not refs:
            return []
        account = self.account(mailbox)
        results = self.call(
            account.bulk_delete,
            ids=[(r.item_id, None) for r in refs],
            delete_type="MoveToDeletedItems",
            send_meeting_cancellations=SEND_TO_ALL_AND_SAVE_COPY if send_cancellations else SEND_TO_NONE,
            chunk_size=self.config.batch_size,
        )
        out = []
        for ref, result in zip(refs, results, strict=True):
            error = translate(result) if isinstance(result, Exception) else None
            out.append(
                ItemResult(ref=ref)
                if error is None or isinstance(error, base.ItemNotFound)
                else ItemResult(error=error)
            )
        return out
