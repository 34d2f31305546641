"""The calendar operations of the Domino backend.

Change detection without delta tokens: one listing of the calendar window (``startdate`` /
``enddate``) gives every entry's id and ``updated`` stamp; compared with the stamps of the last
listing (kept in the token) it names what changed, and what vanished is looked up one by one (an
entry moved beyond the window is a change, not a deletion). The listing answers whole entries:
they are kept for this backend's life, so reading what changed costs no further request. An idle
pass is one request per mailbox (and a login per process and token lifetime).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote

from synccore.mailbox import base
from synccore.mailbox.base import (
    CalendarEvent,
    ChangePage,
    ConnectionConfig,
    ItemResult,
    MailboxError,
    RemoteRef,
)
from synccore.mailbox.domino.client import DominoClient
from synccore.mailbox.domino.translation import (
    OVERRIDE_FIELDS,
    CalendarToken,
    entry_body,
    event_from_entry,
    overrides_body,
    ref_of,
    start_day,
)

CALENDAR_ID = "default"
CALENDAR_PATH = f"/pim-v1/calendar/{CALENDAR_ID}"
FIND_DAYS_BACK = 366  # how far back find_events looks for entries by sync id


def _now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def _entry_path(uid: str) -> str:
    return f"{CALENDAR_PATH}/{quote(uid, safe='')}"


class CalendarOperations:
    """The calendar half of ``MailboxBackend`` over the Domino REST API (mixed into ``DominoBackend``)."""

    client: DominoClient
    config: ConnectionConfig
    _entries: dict[tuple[str, str], dict[str, Any]]
    _listed: dict[str, tuple[date, date, list[dict[str, Any]]]]

    def ensure_calendar_folder(self, mailbox: str) -> str:
        calendars = (
            self.client.call("GET", "/pim-v1/calendars", mailbox, not_found=base.MailboxNotFound) or []
        )
        names = {str(c.get("calendarName") or c.get("id") or "") for c in calendars if isinstance(c, dict)}
        if names and CALENDAR_ID not in names:
            raise base.MailboxNotFound(
                f"The mail file of {mailbox} has no default calendar.", code="NoCalendar"
            )
        return CALENDAR_ID

    def calendar_window(self) -> tuple[datetime, datetime]:
        today = _now().astimezone(UTC).date()
        start = datetime.combine(today - timedelta(days=1), time.min, UTC)
        end = datetime.combine(today + timedelta(days=self.config.calendar_horizon_days + 1), time.min, UTC)
        return start, end

    def _list(self, mailbox: str, first: date, last: date) -> list[dict[str, Any]]:
        """Entries of [first, last] (whole days, last inclusive), kept for ``get_events``."""
        params = {"startdate": first.isoformat(), "enddate": last.isoformat()}
        entries = self.client.call(
            "GET", CALENDAR_PATH, mailbox, params=params, not_found=base.MailboxNotFound
        )
        out = [e for e in entries or [] if isinstance(e, dict) and e.get("uid")]
        for entry in out:
            self._entries[(mailbox.lower(), str(entry["uid"]))] = entry
        self._listed[mailbox.lower()] = (first, last, out)
        return out

    def _list_window(self, mailbox: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return self._list(mailbox, start.date(), (end - timedelta(microseconds=1)).date())

    def calendar_changes(
        self, mailbox: str, folder_id: str, token: str, known: Mapping[str, str] | None = None
    ) -> ChangePage:
        """One listing from yesterday to the horizon — or further, to the last entry the token
        knows beyond it (a linked entry moved beyond the horizon stays watched). Entries first
        seen beyond the horizon are left for the day the window reaches them (K15)."""
        state = CalendarToken.load(token)
        # A new pass: what earlier passes listed may have changed since (only this listing counts).
        for key in [k for k in self._entries if k[0] == mailbox.lower()]:
            del self._entries[key]
        start, end = self.calendar_window()
        horizon_day = (end - timedelta(microseconds=1)).date()
        known_last = state.last_day() if state else None
        last = max(horizon_day, known_last + timedelta(days=1)) if known_last else horizon_day
        entries = self._list(mailbox, start.date(), last)
        seen: dict[str, dict[str, Any]] = {}
        for entry in entries:
            uid = str(entry["uid"])
            day = start_day(entry)
            if (day and day <= horizon_day.isoformat()) or (state is not None and uid in state.stamps):
                seen[uid] = entry
        stamps = {uid: str(e.get("updated") or "") for uid, e in seen.items()}
        days = {uid: start_day(e) for uid, e in seen.items()}
        if state is None:
            changed = [ref_of(e, folder_id) for e in seen.values()]
            return ChangePage(changed=changed, token=CalendarToken(stamps, end.isoformat(), days).dump())
        changed = [ref_of(e, folder_id) for uid, e in seen.items() if state.stamps.get(uid) != stamps[uid]]
        vanished = [uid for uid in state.stamps if uid not in seen]
        deleted: list[str] = []
        for uid in vanished:
            entry = self._read(mailbox, uid)
            if entry is None:
                deleted.append(uid)
                continue
            # Moved beyond what was listed: a change, and watched from now on.
            changed.append(ref_of(entry, folder_id))
            stamps[uid], days[uid] = str(entry.get("updated") or ""), start_day(entry)
        return ChangePage(
            changed=changed, deleted=sorted(deleted), token=CalendarToken(stamps, end.isoformat(), days).dump()
        )

    def calendar_slice(self, mailbox: str, folder_id: str, start: datetime, end: datetime) -> list[RemoteRef]:
        """From this pass's listing when it covered the slice (it reaches the horizon): no request."""
        first, last = start.date(), (end - timedelta(microseconds=1)).date()
        listed = self._listed.get(mailbox.lower())
        if listed is not None and listed[0] <= first and last <= listed[1]:
            low, high = first.isoformat(), last.isoformat()
            return [ref_of(e, folder_id) for e in listed[2] if low <= start_day(e) <= high]
        return [ref_of(e, folder_id) for e in self._list_window(mailbox, start, end)]

    def _read(self, mailbox: str, uid: str) -> dict[str, Any] | None:
        """One entry by id; None when it is gone."""
        try:
            entry = self.client.call("GET", _entry_path(uid), mailbox)
        except base.ItemNotFound:
            return None
        if isinstance(entry, dict):
            self._entries[(mailbox.lower(), uid)] = entry
            return entry
        return None

    def calendar_present(self, mailbox: str, folder_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for uid in dict.fromkeys(item_ids):
            entry = self._read(mailbox, uid)
            if entry is not None:
                out[uid] = str(entry.get("updated") or "")
        return out

    def get_events(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[CalendarEvent | MailboxError]:
        out: list[CalendarEvent | MailboxError] = []
        for ref in refs:
            entry = self._entries.get((mailbox.lower(), ref.item_id))
            if entry is None or (ref.change_key and str(entry.get("updated") or "") != ref.change_key):
                try:
                    entry = self._read(mailbox, ref.item_id)
                except MailboxError as exc:
                    out.append(exc)
                    continue
            if entry is None:
                out.append(base.ItemNotFound(f"The entry {ref.item_id} is gone.", code="NotFound"))
                continue
            try:
                out.append(event_from_entry(entry, mailbox, ref.folder_id or CALENDAR_ID))
            except MailboxError as exc:
                out.append(exc)
        return out

    def find_events(
        self, mailbox: str, folder_id: str, sync_ids: Sequence[str], uids: Sequence[str]
    ) -> tuple[dict[str, RemoteRef], dict[str, RemoteRef]]:
        """UIDs are entry ids: read directly. Sync ids: in a listing from a year back to the
        horizon (the PIM API has no query on ``AdditionalFields``)."""
        by_sync: dict[str, RemoteRef] = {}
        if sync_ids:
            wanted = set(sync_ids)
            start, end = self.calendar_window()
            for entry in self._list(mailbox, start.date() - timedelta(days=FIND_DAYS_BACK), end.date()):
                sync_id = str((entry.get("AdditionalFields") or {}).get("CrmSyncId") or "")
                if sync_id in wanted:
                    by_sync.setdefault(sync_id, ref_of(entry, folder_id))
        by_uid = {
            uid: RemoteRef(uid, key, folder_id)
            for uid, key in self.calendar_present(mailbox, folder_id, uids).items()
        }
        return by_sync, by_uid

    def create_events(
        self, mailbox: str, folder_id: str, events: Sequence[CalendarEvent], *, send_invitations: bool
    ) -> list[ItemResult]:
        results: list[ItemResult] = []
        params = {"send": "true" if send_invitations else "false"}
        for event in events:
            try:
                body = entry_body(event, mailbox)
                entry = self.client.call("POST", CALENDAR_PATH, mailbox, params=params, json=body)
            except base.ItemError as exc:
                results.append(ItemResult(error=exc))
                continue
            except base.PermanentMailboxError as exc:
                results.append(ItemResult(error=base.InvalidItem(str(exc), code=exc.code)))
                continue
            ref = ref_of(entry, folder_id)
            self._entries[(mailbox.lower(), ref.item_id)] = entry
            results.append(ItemResult(ref=ref, uid=ref.item_id))
        return results

    def update_events(
        self,
        mailbox: str,
        updates: Sequence[tuple[RemoteRef, CalendarEvent, Iterable[str]]],
        *,
        send_updates: bool,
    ) -> list[ItemResult]:
        results: list[ItemResult] = []
        params = {"send": "true" if send_updates else "false"}
        for ref, event, names in updates:
            names = set(names)
            try:
                body = entry_body(event, mailbox, names - set(base.OCCURRENCE_FIELDS))
                if event.recurrence and names & OVERRIDE_FIELDS:
                    body["recurrenceOverrides"] = self._overrides(mailbox, ref, event, names)
                entry = self.client.call("PUT", _entry_path(ref.item_id), mailbox, params=params, json=body)
            except base.ItemError as exc:
                results.append(ItemResult(error=exc))
                continue
            new_ref = ref_of(entry, ref.folder_id) if isinstance(entry, dict) and entry.get("uid") else ref
            if isinstance(entry, dict) and entry.get("uid"):
                self._entries[(mailbox.lower(), ref.item_id)] = entry
            results.append(ItemResult(ref=new_ref))
        return results

    def _overrides(self, mailbox: str, ref: RemoteRef, event: CalendarEvent, names: set[str]) -> dict[str, Any]:
        """The series' whole ``recurrenceOverrides`` after this update (K10): JSCalendar writes
        them as one property, so occurrences the update does not name keep their current
        override (from this pass's listing, or read). Writing the pattern starts from none."""
        current: dict[str, Any] = {}
        if not names & set(base.PATTERN_FIELDS):
            entry = self._entries.get((mailbox.lower(), ref.item_id))
            if entry is None or (ref.change_key and str(entry.get("updated") or "") != ref.change_key):
                entry = self._read(mailbox, ref.item_id)
            if entry is None:
                raise base.ItemNotFound(f"The entry {ref.item_id} is gone.", code="NotFound")
            current = entry
        return overrides_body(
            event, names, current.get("recurrenceOverrides") or {}, str(current.get("timeZone") or "")
        )

    def delete_events(
        self, mailbox: str, refs: Sequence[RemoteRef], *, send_cancellations: bool
    ) -> list[ItemResult]:
        """The organizer's copy with cancellations: the entry is cancelled with ``send`` (Domino
        mails the invitees and removes it), then deleted if it is still there."""
        results: list[ItemResult] = []
        for ref in refs:
            path = _entry_path(ref.item_id)
            try:
                if send_cancellations:
                    try:
                        self.client.call(
                            "PUT", path, mailbox, params={"send": "true"}, json={"status": "cancelled"}
                        )
                    except base.ItemNotFound:
                        results.append(ItemResult(ref=ref))
                        continue
                self.client.call("DELETE", path, mailbox)
            except base.ItemNotFound:
                pass
            except base.ItemError as exc:
                results.append(ItemResult(error=exc))
                continue
            self._entries.pop((mailbox.lower(), ref.item_id), None)
            results.append(ItemResult(ref=ref))
        return results
