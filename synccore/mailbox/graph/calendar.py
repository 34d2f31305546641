"""The calendar operations of the Graph backend: calendarView delta rounds over a sliding
window (K15), removals checked one by one, series and their occurrences (K10), writes through
``$batch``."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from synccore.mailbox import base
from synccore.mailbox.base import (
    CalendarEvent,
    ChangePage,
    ConnectionConfig,
    ItemResult,
    MailboxError,
    RemoteRef,
)
from synccore.mailbox.graph.client import (
    DELTA_PAGE_SIZE,
    IMMUTABLE_IDS,
    PAGE_SIZE,
    Call,
    GraphClient,
    error_parts,
    odata_query,
    segment,
    user_path,
)
from synccore.mailbox.graph.translation import (
    EVENT_SELECT,
    EXPAND_SYNC_ID,
    UTC_TIMES,
    CalendarToken,
    change_key_of,
    deletion_results,
    event_body,
    event_from_graph,
    expand_properties,
    graph_time,
    if_match,
    instance_span,
    iso_z,
    item_results,
    odata_string,
    parse_iso,
    sync_id_filter,
)

TEXT_BODY = 'outlook.body-content-type="text"'

# An occurrence id of a series that no longer has that occurrence (deleted, or the series was
# ended or re-patterned) is answered with these rather than a 404.
_GONE_OCCURRENCE_CODES = frozenset(
    {"ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange", "ErrorCalendarOccurrenceIsDeletedFromRecurrence"}
)


def _now() -> datetime:
    # The product's clock (tests move it together with the simulator's).
    from django.utils import timezone

    return timezone.now()


class CalendarOperations:
    """The calendar half of ``MailboxBackend`` over Graph (mixed into ``GraphBackend``)."""

    client: GraphClient
    config: ConnectionConfig

    def ensure_calendar_folder(self, mailbox: str) -> str:
        return self.client.get(mailbox, f"{user_path(mailbox)}/calendar?{odata_query(select='id')}")["id"]

    def calendar_window(self) -> tuple[datetime, datetime]:
        """The calendarView a delta round covers: from yesterday (events under way) to the
        engine's horizon, which moves by whole days (K15)."""
        today = _now().astimezone(UTC).date()
        start = datetime.combine(today - timedelta(days=1), time.min, UTC)
        end = datetime.combine(today + timedelta(days=self.config.calendar_horizon_days + 1), time.min, UTC)
        return start, end

    def _calendar_round(
        self,
        mailbox: str,
        url: str,
        folder_id: str,
        changed: dict[str, RemoteRef],
        removed: set[str],
        masters: set[str],
        known: Mapping[str, str] | None = None,
        settled: dict[str, str] | None = None,
    ) -> str:
        """One calendarView delta round: singles as refs, occurrences and exceptions as their
        series master's id; removals by id. Returns the deltaLink.

        An occurrence carries its series master's change key until it becomes an exception: one
        listed at the key the engine ``known``s for its master (the engine's own write, read back
        by a round started before it) leaves the master unread, in ``settled`` with that key."""
        # A round reads ids, types and change keys only, and calendarView delta takes no
        # $select: the text body keeps each entry smaller than Exchange's HTML rendering of it.
        headers = {"Prefer": f"{IMMUTABLE_IDS}, {UTC_TIMES}, {TEXT_BODY}, odata.maxpagesize={DELTA_PAGE_SIZE}"}
        page: dict[str, Any] = {}
        for page in self.client.pages(mailbox, url, headers=headers):
            for entry in page.get("value", []):
                item_id = entry["id"]
                if "@removed" in entry:
                    changed.pop(item_id, None)
                    removed.add(item_id)
                elif entry.get("type") in ("occurrence", "exception") and entry.get("seriesMasterId"):
                    master_id, key = entry["seriesMasterId"], change_key_of(entry)
                    if (
                        settled is not None
                        and entry["type"] == "occurrence"
                        and key
                        and (known or {}).get(master_id) == key
                    ):
                        settled[master_id] = key
                    else:
                        masters.add(master_id)
                elif entry.get("type") == "seriesMaster":
                    masters.add(item_id)
                else:
                    removed.discard(item_id)
                    changed[item_id] = RemoteRef(item_id, change_key_of(entry), folder_id)
        link = page.get("@odata.deltaLink", "")
        if not link:
            raise base.TransientMailboxError("Microsoft Graph ended a delta round without a deltaLink.")
        return link

    def _calendar_view_url(self, mailbox: str, start: datetime, end: datetime, *, delta: bool) -> str:
        window = f"startDateTime={iso_z(start)}&endDateTime={iso_z(end)}"
        if delta:
            return f"{user_path(mailbox)}/calendarView/delta?{window}"
        return f"{user_path(mailbox)}/calendarView?{window}&" + odata_query(
            select="id,changeKey,type,seriesMasterId", top=PAGE_SIZE
        )

    def _event_heads(self, mailbox: str, ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """What identifies each event (id, change key, type, series, iCalUId); None for one that
        is gone. Found by id is not yet in the calendar: an event deleted in Outlook lies in
        Deleted Items under the same immutable id."""
        wanted = list(dict.fromkeys(ids))
        select = odata_query(select="id,changeKey,type,seriesMasterId,iCalUId")
        calls = [Call("GET", f"{self._event_url(mailbox, i)}?{select}") for i in wanted]
        out: dict[str, dict[str, Any] | None] = {}
        for item_id, answer in zip(wanted, self.client.batch(mailbox, calls), strict=True):
            if answer.ok:
                out[item_id] = answer.body
            elif answer.status == 404 or error_parts(answer.body)[0] in _GONE_OCCURRENCE_CODES:
                out[item_id] = None
            else:
                raise answer.error()
        return out

    def master_keys(self, mailbox: str, master_ids: Iterable[str]) -> dict[str, str | None]:
        """The current change key of each series master; None for one that is gone."""
        return {
            master_id: change_key_of(head) if head is not None else None
            for master_id, head in self._event_heads(mailbox, master_ids).items()
        }

    def _in_calendar(self, mailbox: str, folder_id: str, heads: dict[str, dict[str, Any]]) -> set[str]:
        """The events among ``heads`` that are in the calendar folder: a folder's event list
        holds only its own items (a lookup by id finds them wherever they lie)."""
        wanted = [(item_id, head) for item_id, head in heads.items() if head.get("iCalUId")]
        folder = f"{user_path(mailbox)}/calendars/{segment(folder_id)}/events"
        calls = [
            Call(
                "GET",
                f"{folder}?{odata_query(filter='iCalUId eq ' + odata_string(head['iCalUId']), select='id')}",
            )
            for _, head in wanted
        ]
        present = {item_id for item_id, head in heads.items() if not head.get("iCalUId")}
        for (item_id, _), answer in zip(wanted, self.client.batch(mailbox, calls), strict=True):
            if not answer.ok:
                raise answer.error()
            if any(entry.get("id") == item_id for entry in (answer.body or {}).get("value", [])):
                present.add(item_id)
        return present

    def calendar_present(self, mailbox: str, folder_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        heads = {i: h for i, h in self._event_heads(mailbox, item_ids).items() if h is not None}
        present = self._in_calendar(mailbox, folder_id, heads) if heads else set()
        return {item_id: change_key_of(heads[item_id]) for item_id in item_ids if item_id in present}

    def find_events(
        self, mailbox: str, folder_id: str, sync_ids: Sequence[str], uids: Sequence[str]
    ) -> tuple[dict[str, RemoteRef], dict[str, RemoteRef]]:
        """By a filter per sync id and per iCalUId on the calendar's events (singles and series
        masters, wherever they lie in time), in ``$batch`` requests."""
        folder = f"{user_path(mailbox)}/calendars/{segment(folder_id)}/events"
        keys = [("sync", s) for s in dict.fromkeys(sync_ids)] + [("uid", u) for u in dict.fromkeys(uids)]
        calls = [
            Call(
                "GET",
                f"{folder}?"
                + odata_query(
                    filter=sync_id_filter(key) if what == "sync" else "iCalUId eq " + odata_string(key),
                    select="id,changeKey",
                ),
                headers={"Prefer": IMMUTABLE_IDS},
            )
            for what, key in keys
        ]
        found: dict[str, dict[str, RemoteRef]] = {"sync": {}, "uid": {}}
        for (what, key), answer in zip(keys, self.client.batch(mailbox, calls) if calls else [], strict=True):
            if not answer.ok:
                raise answer.error()
            for entry in (answer.body or {}).get("value", [])[:1]:
                found[what][key] = RemoteRef(entry["id"], change_key_of(entry), folder_id)
        return found["sync"], found["uid"]

    def calendar_changes(
        self, mailbox: str, folder_id: str, token: str, known: Mapping[str, str] | None = None
    ) -> ChangePage:
        state = CalendarToken.load(token)
        start, end = self.calendar_window()
        changed: dict[str, RemoteRef] = {}
        removed: set[str] = set()
        touched: set[str] = set()
        settled: dict[str, str] = {}  # series masters listed only at the key the engine knows
        linked = known
        known = dict(state.masters) if state else {}
        link, window_end = "", end
        if state is not None:
            try:
                link = self._calendar_round(
                    mailbox, state.link, folder_id, changed, removed, touched, linked, settled
                )
            except (base.ItemNotFound, base.InvalidItem) as exc:
                raise base.InvalidSyncToken(str(exc), code=exc.code) from exc
            window_end = state.window_end
        if state is None or state.window_end < end:
            # The window slid (K15): a new round over the new window; what it lists that the
            # engine already knows at the same change key is not read again.
            link = self._calendar_round(
                mailbox,
                self._calendar_view_url(mailbox, start, end, delta=True),
                folder_id,
                changed,
                removed,
                touched,
                linked,
                settled,
            )
            window_end = end
        if removed:
            touched |= settled.keys()  # every known master is checked then: read as before
        else:
            # Unchanged since the engine's write: watched like any master seen (a series deleted
            # whole shows only as removed occurrences), not read now.
            known.update({m: key for m, key in settled.items() if m not in touched})
        deleted = self._removals(mailbox, folder_id, removed, touched, known, changed)
        return ChangePage(
            changed=list(changed.values()),
            deleted=sorted(deleted - changed.keys()),
            token=CalendarToken(link, window_end, known).dump(),
        )

    def _removals(
        self,
        mailbox: str,
        folder_id: str,
        removed: set[str],
        touched: set[str],
        known: dict[str, str],
        changed: dict[str, RemoteRef],
    ) -> set[str]:
        """What of a round's ``@removed`` entries is deleted. Graph marks alike an event deleted,
        one that left the window (moved beyond the horizon in Outlook) and one changed outside
        it: each is looked up, and only what is no longer in the calendar is deleted; the rest
        is a change (never a deletion of a linked event that merely moved away). Series masters
        whose occurrences changed, or any known one when something was removed (a series
        deleted whole shows only as removed occurrences), get their change keys checked."""
        deleted: set[str] = set()
        doubtful: dict[str, dict[str, Any]] = {}
        masters = set(touched)
        heads = self._event_heads(mailbox, removed)
        for item_id, head in heads.items():
            if head is None:
                deleted.add(item_id)
            elif head.get("type") in ("occurrence", "exception"):
                if head.get("seriesMasterId"):
                    masters.add(head["seriesMasterId"])
            else:
                doubtful[item_id] = head
        if removed:
            masters |= set(known)
        master_heads = self._event_heads(mailbox, masters - heads.keys())
        for master_id, head in master_heads.items():
            if head is None:
                deleted.add(master_id)
            elif master_id not in touched:  # touched: its occurrences are in the calendar's view
                doubtful[master_id] = head
        present = self._in_calendar(mailbox, folder_id, doubtful) if doubtful else set()
        deleted |= doubtful.keys() - present
        for item_id, head in {**heads, **master_heads}.items():
            if head is None or item_id in deleted or head.get("type") in ("occurrence", "exception"):
                known.pop(item_id, None)
                continue
            key = change_key_of(head)
            if head.get("type") != "seriesMaster":
                changed[item_id] = RemoteRef(item_id, key, folder_id)
                continue
            if item_id in touched or item_id in removed or known.get(item_id) != key:
                changed[item_id] = RemoteRef(item_id, key, folder_id)
            known[item_id] = key
        return deleted

    def calendar_slice(self, mailbox: str, folder_id: str, start: datetime, end: datetime) -> list[RemoteRef]:
        refs: dict[str, RemoteRef] = {}
        headers = {"Prefer": f"{IMMUTABLE_IDS}, {UTC_TIMES}"}
        for page in self.client.pages(
            mailbox, self._calendar_view_url(mailbox, start, end, delta=False), headers=headers
        ):
            for entry in page.get("value", []):
                if entry.get("type") in ("occurrence", "exception") and entry.get("seriesMasterId"):
                    refs.setdefault(
                        entry["seriesMasterId"], RemoteRef(entry["seriesMasterId"], "", folder_id)
                    )
                else:
                    refs[entry["id"]] = RemoteRef(entry["id"], change_key_of(entry), folder_id)
        return list(refs.values())

    def _event_url(self, mailbox: str, item_id: str) -> str:
        return f"{user_path(mailbox)}/events/{segment(item_id)}"

    def get_events(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[CalendarEvent | MailboxError]:
        if not refs:
            return []
        query = odata_query(select=EVENT_SELECT, expand=expand_properties(properties) if properties else EXPAND_SYNC_ID)
        headers = {"Prefer": f"{IMMUTABLE_IDS}, {UTC_TIMES}"}
        answers = self.client.batch(
            mailbox,
            [Call("GET", f"{self._event_url(mailbox, r.item_id)}?{query}", None, headers) for r in refs],
        )
        out: list[CalendarEvent | MailboxError] = []
        for ref, answer in zip(refs, answers, strict=True):
            if not answer.ok:
                out.append(answer.error())
                continue
            try:
                out.append(event_from_graph(answer.body, ref.folder_id, properties))
            except MailboxError as exc:
                out.append(exc)
            except (ValueError, KeyError, TypeError) as exc:
                out.append(base.InvalidItem(f"The event cannot be read ({exc})."))
        series = [
            e
            for e in out
            if isinstance(e, CalendarEvent) and e.recurrence and not e.recurrence.startswith("X-")
        ]
        if series:
            self._read_occurrences(mailbox, series)
        return out

    def create_events(
        self, mailbox: str, folder_id: str, events: Sequence[CalendarEvent], *, send_invitations: bool
    ) -> list[ItemResult]:
        if not events:
            return []
        url = f"{user_path(mailbox)}/calendars/{segment(folder_id)}/events"
        prepared: list[Call | MailboxError] = []
        for event in events:
            try:
                body = event_body(event)
            except base.MailboxError as exc:
                prepared.append(exc)
                continue
            if not send_invitations:
                # Graph mails every attendee it is given: an event written without invitations
                # is written without attendees (docs/exchange-online.md).
                body.pop("attendees", None)
            if event.sync_id:
                body["transactionId"] = event.sync_id  # Graph drops a repeated create
            prepared.append(Call("POST", url, body))
        calls = [p for p in prepared if isinstance(p, Call)]
        # Safe to repeat after a lost answer: the transactionId makes a repeated create a no-op.
        answers = iter(item_results(self.client.batch(mailbox, calls, idempotent=True), folder_id))
        return [ItemResult(error=p) if isinstance(p, MailboxError) else next(answers) for p in prepared]

    def update_events(
        self,
        mailbox: str,
        updates: Sequence[tuple[RemoteRef, CalendarEvent, Iterable[str]]],
        *,
        send_updates: bool,
    ) -> list[ItemResult]:
        if not updates:
            return []
        series_results: dict[int, ItemResult] = {}
        prepared: list[Call | MailboxError | None] = []
        for index, (ref, event, names) in enumerate(updates):
            names = set(names)
            if names & set(base.OCCURRENCE_FIELDS) and event.recurrence:
                try:
                    series_results[index] = self._update_series(mailbox, ref, event, names, send_updates)
                except base.ItemError as exc:
                    series_results[index] = ItemResult(error=exc)
                prepared.append(None)
                continue
            try:
                body = event_body(event, list(names - set(base.OCCURRENCE_FIELDS)))
            except base.MailboxError as exc:
                prepared.append(exc)
                continue
            if not send_updates:
                body.pop("attendees", None)  # writing attendees through Graph mails them
            prepared.append(
                Call("PATCH", self._event_url(mailbox, ref.item_id), body, if_match(ref.change_key))
            )
        indexes = [i for i, p in enumerate(prepared) if isinstance(p, Call)]
        calls = [prepared[i] for i in indexes]
        answers = self.client.batch(mailbox, calls)
        stale = [n for n, answer in enumerate(answers) if answer.status == 412]
        if stale:
            # Changed since the engine read it: re-read the version and write the same fields
            # onto it (a field-level merge; the fields not named keep the other side's edits).
            keys = self.master_keys(mailbox, [updates[indexes[n]][0].item_id for n in stale])
            again = []
            for n in stale:
                call = calls[n]
                key = keys.get(updates[indexes[n]][0].item_id)
                again.append(Call(call.method, call.url, call.body, if_match(key or "")))
            for n, answer in zip(stale, self.client.batch(mailbox, again), strict=True):
                answers[n] = answer
        results: list[ItemResult] = []
        answer_of = dict(zip(indexes, answers, strict=True))
        for i, (ref, _, _) in enumerate(updates):
            if i in series_results:
                results.append(series_results[i])
                continue
            if isinstance(prepared[i], MailboxError):
                results.append(ItemResult(error=prepared[i]))
                continue
            answer = answer_of[i]
            results.append(
                ItemResult(ref=RemoteRef(ref.item_id, change_key_of(answer.body or {}), ref.folder_id))
                if answer.ok
                else ItemResult(error=answer.error())
            )
        return results

    # Occurrences of a series (K10) ----------------------------------------------------------

    def _instances_url(self, mailbox: str, master_id: str, start: datetime, end: datetime) -> str:
        return (
            f"{self._event_url(mailbox, master_id)}/instances?startDateTime={iso_z(start)}&endDateTime={iso_z(end)}&"
            + odata_query(select="id,type,originalStart,start,end,isAllDay,subject,location", top=PAGE_SIZE)
        )

    def _instances(
        self, mailbox: str, wanted: Sequence[tuple[str, datetime, datetime]]
    ) -> list[list[dict[str, Any]]]:
        """The instances (occurrences and exceptions) of each (master id, from, to), first pages
        in $batch, further pages one by one."""
        headers = {"Prefer": f"{IMMUTABLE_IDS}, {UTC_TIMES}"}
        calls = [Call("GET", self._instances_url(mailbox, m, s, e), None, headers) for m, s, e in wanted]
        out: list[list[dict[str, Any]]] = []
        for answer in self.client.batch(mailbox, calls):
            if not answer.ok:
                raise answer.error()
            values = list(answer.body.get("value", []))
            next_link = answer.body.get("@odata.nextLink", "")
            if next_link:
                for page in self.client.pages(mailbox, next_link, headers=headers):
                    values += page.get("value", [])
            out.append(values)
        return out

    def _occurrence_span(self, event: CalendarEvent) -> tuple[datetime, list[datetime]] | None:
        """The original starts whose exceptions are read: from the series' first (a pass that
        ends a series begun in the past rewrites its pattern and lists its past exceptions again,
        K15) to its end, at most a year beyond the calendar window. The span's end and the
        pattern's starts up to it (one expansion serves both); None for a pattern that cannot be
        expanded or has no occurrence."""
        _, window_end = self.calendar_window()
        limit = window_end + timedelta(days=366)
        starts: list[datetime] = []
        try:
            for start in base.Series(event.recurrence, event.start, event.time_zone).starts():
                if start > limit:
                    break
                starts.append(start)
            else:
                if not starts:
                    return None
                limit = starts[-1]
        except (ValueError, TypeError, KeyError, zoneinfo.ZoneInfoNotFoundError):
            return None
        # The pattern counts from the start's whole second: a start with a fraction is past it.
        return limit, [start for start in starts if start >= event.start]

    def _read_occurrences(self, mailbox: str, events: Sequence[CalendarEvent]) -> None:
        """Fill each series' modified and deleted occurrences: Graph v1.0 lists them as the
        master's instances (exceptions by type; a deleted occurrence is one the pattern has and
        the instances do not)."""
        spans = {id(e): self._occurrence_span(e) for e in events}
        todo = [e for e in events if spans[id(e)] is not None]
        margin = timedelta(days=7)  # an exception moved a little out of the span still counts
        wanted = [
            (e.ref.item_id, e.start - margin, spans[id(e)][0] + (e.end - e.start) + margin)
            for e in todo
        ]
        for event, instances in zip(todo, self._instances(mailbox, wanted), strict=True):
            first, starts = event.start, spans[id(event)][1]
            present: set[datetime] = set()
            for instance in instances:
                original = parse_iso(instance.get("originalStart"))
                if original is None:
                    continue
                present.add(original)
                if instance.get("type") != "exception" or original < first:
                    continue
                subject = (instance.get("subject") or "").strip()
                location = str((instance.get("location") or {}).get("displayName") or "").strip()
                start, end = instance_span(instance, event)
                event.modified_occurrences.append(
                    base.Occurrence(
                        original_start=original,
                        start=start,
                        end=end,
                        subject=subject if subject != event.subject.strip() else None,
                        location=location if location != event.location.strip() else None,
                    )
                )
            event.deleted_occurrences += [original for original in starts if original not in present]

    def _update_series(
        self, mailbox: str, ref: RemoteRef, event: CalendarEvent, names: set[str], send: bool
    ) -> ItemResult:
        """A series with occurrence writes (K10): the series' own fields first (a new pattern
        drops every exception), then each listed occurrence, found among the master's instances
        by its original start: deleted (cancelled when meeting messages go out) or rewritten."""
        master_names = names - set(base.OCCURRENCE_FIELDS)
        if master_names:
            (result,) = self.update_events(mailbox, [(ref, event, master_names)], send_updates=send)
            if not result.ok:
                return result
        deletes = list(event.deleted_occurrences) if "deleted_occurrences" in names else []
        modified = list(event.modified_occurrences) if "modified_occurrences" in names else []
        originals = [*deletes, *(o.original_start for o in modified)]
        if originals:
            margin = (event.end - event.start) + timedelta(days=7)
            (instances,) = self._instances(
                mailbox, [(ref.item_id, min(originals) - margin, max(originals) + margin)]
            )
            by_original = {
                parse_iso(i.get("originalStart")): i["id"] for i in instances if i.get("originalStart")
            }
            calls: list[Call] = []
            for original in deletes:
                occurrence_id = by_original.get(original)
                if occurrence_id is None:
                    continue  # already deleted
                url = self._event_url(mailbox, occurrence_id)
                calls.append(Call("POST", f"{url}/cancel", {"comment": ""}) if send else Call("DELETE", url))
            zone_name = event.time_zone or "UTC"
            for occurrence in modified:
                occurrence_id = by_original.get(occurrence.original_start)
                if occurrence_id is None:
                    return ItemResult(
                        error=base.InvalidItem(
                            f"{occurrence.original_start.isoformat()} is not an occurrence of the series"
                        )
                    )
                body = {
                    "start": graph_time(occurrence.start, zone_name),
                    "end": graph_time(occurrence.end, zone_name),
                    "subject": occurrence.subject if occurrence.subject is not None else event.subject,
                    "location": {
                        "displayName": occurrence.location
                        if occurrence.location is not None
                        else event.location
                    },
                }
                calls.append(Call("PATCH", self._event_url(mailbox, occurrence_id), body))
            for answer in self.client.batch(mailbox, calls, idempotent=True):
                if not answer.ok and answer.status != 404:
                    return ItemResult(error=answer.error())
        keys = self.master_keys(mailbox, [ref.item_id])
        key = keys.get(ref.item_id)
        if key is None:
            return ItemResult(error=base.ItemNotFound("The series is gone."))
        return ItemResult(ref=RemoteRef(ref.item_id, key, ref.folder_id))

    def delete_events(
        self, mailbox: str, refs: Sequence[RemoteRef], *, send_cancellations: bool
    ) -> list[ItemResult]:
        if not refs:
            return []
        if not send_cancellations:
            return self._delete(mailbox, refs)
        # The organizer's copy: cancel (attendees get the cancellation; the event goes to
        # Deleted Items). Not a meeting of this mailbox's organizing: a plain delete.
        answers = self.client.batch(
            mailbox,
            [Call("POST", f"{self._event_url(mailbox, r.item_id)}/cancel", {"comment": ""}) for r in refs],
            idempotent=True,
        )
        results: list[ItemResult | None] = []
        plain: list[int] = []
        for i, (ref, answer) in enumerate(zip(refs, answers, strict=True)):
            if answer.ok or answer.status == 404:
                results.append(ItemResult(ref=ref))
            elif answer.status == 400:
                results.append(None)
                plain.append(i)
            else:
                results.append(ItemResult(error=answer.error()))
        if plain:
            deleted = self._delete(mailbox, [refs[i] for i in plain])
            for i, outcome in zip(plain, deleted, strict=True):
                results[i] = outcome
        return [r for r in results if r is not None]

    def _delete(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        urls = [self._event_url(mailbox, r.item_id) for r in refs]
        return deletion_results(refs, self.client.batch(mailbox, [Call("DELETE", url) for url in urls]))
