"""Meeting-message limits (P4): like the safety limit on deletions (DESIGN §5), a calendar pass that
would send more invitations, or more cancellations, than ``meeting_message_limit`` holds them back
until an administrator confirms (the calendar's confirmation, as for its deletions:
``SyncUser.calendar_limit_confirmed``).

Invitations go out with the creates of the organizer's meetings and cancellations with the deletes
of them; the calendar writer queues both to the end of the pass, so they are counted (once per
recipient: each is a mail someone receives) before any of them is written. Held meetings keep their
pending links and are decided again by the next pass; the rest of the pass is written as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from synccore.sync import actions
from synccore.sync.actions import Action, ItemKey
from synccore.sync.readable import Readable

if TYPE_CHECKING:
    from synccore.sync.calendar_write import CalendarWriter

RULE = "P4 meeting message limit"


def hold_meeting_messages(writer: CalendarWriter) -> bool:
    """Hold the queued invitations or cancellations beyond the limit; True when some were held."""
    limit = writer.settings.meeting_message_limit
    user, ctx = writer.user, writer.ctx
    if not limit:
        return False
    invitations = [entry for entry in writer.creates if entry[1].invitations and entry[1].attendees]
    invited = sum(len(target.attendees) for _, target, _ in invitations)
    cancellations = [entry for entry in writer.deletes if entry[1] and _recipients(entry[0])]
    cancelled = sum(len(_recipients(link)) for link, _ in cancellations)
    over = [
        (what, count, entries)
        for what, count, entries in (("invitations", invited, invitations), ("cancellations", cancelled, cancellations))
        if count > limit
    ]
    if not over:
        return False
    if user.limit_confirmed("calendar"):
        writer.confirmation_used = True  # consumed once the pass is over (see ``consume_confirmation``)
        return False
    told = "; ".join(f"{count} {what}" for what, count, _ in over)
    reason = (
        f"Held: this pass would send {told}, more than the meeting message limit of {limit}. "
        "Preview the pass to see them; an administrator must confirm."
    )
    held_creates = {id(entry) for what, _, entries in over if what == "invitations" for entry in entries}
    held_deletes = {id(entry) for what, _, entries in over if what == "cancellations" for entry in entries}
    for activity, target, link in [e for e in writer.creates if id(e) in held_creates]:
        emails = sorted(a.email for a in target.attendees)
        item = ItemKey(activity.pk, link.remote_id, activity.subject)
        _held(ctx, Action(actions.HOLD, item, actions.EXCHANGE, {"invitations": (None, emails)}, reason, RULE), actions.CREATE)
    for link, _ in [e for e in writer.deletes if id(e) in held_deletes]:
        activity = link.activity
        item = ItemKey(link.activity_id, link.remote_id, activity.subject if activity is not None else "")
        emails = _recipients(link)
        _held(ctx, Action(actions.HOLD, item, actions.EXCHANGE, {"cancellations": (None, emails)}, reason, RULE), actions.CANCEL)
    writer.creates = [e for e in writer.creates if id(e) not in held_creates]
    writer.deletes = [e for e in writer.deletes if id(e) not in held_deletes]
    writer.run.error = f"{writer.run.error}\n{reason}".strip()
    ctx.held_reason = Readable(
        "held",
        f"The meeting message limit held back {told} (limit {limit}). Preview the pass to see them, "
        "then confirm if they are intended.",
    )
    return True


def consume_confirmation(writer: CalendarWriter) -> None:
    """An administrator's confirmation counts for one pass: cleared once it was used."""
    if getattr(writer, "confirmation_used", False):
        writer.user.use_confirmation("calendar")


def _recipients(link) -> list[str]:
    """Who a cancellation of the linked meeting reaches: its attendees as last agreed."""
    return sorted((link.snapshot or {}).get("attendees") or [])


def _held(ctx, action: Action, replaces: str) -> None:
    """The hold replaces the create or cancel decided earlier in the pass (which is not written)."""
    if ctx.recorder is not None:
        ctx.recorder.supersede(replaces, action.item.record_id)
    ctx.decided(action)
