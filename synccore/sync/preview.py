"""Preview a pass before it runs (P1): what it would do, per item, and nothing written anywhere.

A preview runs the real pass — the same reads, the same decisions in the same order, the same
follow-ups — against a mailbox that records its writes (``preview_backend``) and inside a
database transaction that is rolled back at the end of each pass. So a decision that reads what an
earlier write of the pass made (an imported meeting's UID, a stub, a link) sees it as the real pass
would, and afterwards nothing is left: no link, token, run record, conflict or health change, no
mailbox write. A preview leaves no run record of its own: it is an answer, not a pass that ran.

A preview of a configuration change (``proposed``: a function that writes the unsaved filter,
mapping or settings) applies it inside each pass's transaction, before the pass reads anything,
and inside the one that chooses the passes (which kinds are on): the pass decides under the
proposed configuration exactly as the real pass after the save would, and the rollback takes the
change away with everything else. Per pass, not around the whole preview, so the database is held
no longer than by a plain preview (SQLite's write lock is taken when a transaction begins).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from synccore.models import Outcome, SyncKind, SyncUser
from synccore.sync import actions, limits
from synccore.sync.actions import Action
from synccore.sync.connection import open_user_backend
from synccore.sync.preview_backend import CANCELLATION, INVITATION, UPDATE, Message, PreviewBackend
from synccore.sync.runs import PassContext
from synccore.sync.service import ALL_KINDS, kind_enabled, pass_runner, target_users

HOLD = "hold"  # a decision the safety limit would hold back (DESIGN §5)

CREATES = {actions.CREATE, actions.IMPORT, actions.STUB}
UPDATES = {actions.UPDATE, actions.PULL, actions.MOVE, actions.RESTORE, actions.SPLIT, actions.END_SERIES}
DELETES = {actions.DELETE, actions.CANCEL}
# Nothing changes for a person: only the agreement moves. Left out of what a preview lists.
QUIET = {actions.AGREE}


@dataclass
class PlannedAction:
    """One decision of a preview, with whose pass took it."""

    user: str
    pass_kind: str
    action: Action

    def as_dict(self) -> dict[str, Any]:
        action = self.action
        return {
            "user": self.user,
            "pass": self.pass_kind,
            "action": action.kind,
            "side": action.side,
            "item": {
                "record_id": action.item.record_id,
                "remote_id": action.item.remote_id,
                "subject": action.item.subject,
            },
            "fields": {
                name: {"before": _plain(before), "after": _plain(after)}
                for name, (before, after) in sorted(action.fields.items())
            },
            "reason": action.reason,
            "rule": action.rule,
            "line": action.describe().replace("would hold", "would hold back", 1),
        }


@dataclass
class Preview:
    environment: str
    actions: list[PlannedAction] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    passes: int = 0
    requests: int = 0

    def summary(self) -> dict[str, Any]:
        """The pinned keys of ``sync_now --dry-run`` and of the API's dry run."""
        kinds = [planned.action.kind for planned in self.actions]
        return {
            "dry_run": True,
            "environment": self.environment,
            "passes": self.passes,
            "would_create": sum(kind in CREATES for kind in kinds),
            "would_update": sum(kind in UPDATES for kind in kinds),
            "would_delete": sum(kind in DELETES for kind in kinds),
            # Messages count once per recipient: each is a mail someone receives.
            "invitations": self._recipients(INVITATION),
            "meeting_updates": self._recipients(UPDATE),
            "cancellations": self._recipients(CANCELLATION),
            "conflicts": kinds.count(actions.CONFLICT),
            "held": kinds.count(HOLD),
            "skipped": kinds.count(actions.SKIP),
            "failed": len(self.errors),
            "requests": self.requests,
        }

    def mailboxes_affected(self) -> int:
        """Mailboxes in which the passes would write (an Exchange-side action)."""
        writes = set(VERBS) - {HOLD, actions.CONFLICT}
        return len({p.user for p in self.actions if p.action.side == actions.EXCHANGE and p.action.kind in writes})

    def in_words(self) -> str:
        """The preview as a sentence: "would remove 3 contacts from 2 mailboxes and cancel 1 meeting
        (2 cancellations)"; per kind of item, what it does and in how many mailboxes."""
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        mailboxes: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for planned in self.actions:
            verb = _verb(planned.action)
            if verb is None:
                continue
            key = (verb, _noun(planned), planned.action.side)
            counts[key] += 1
            mailboxes[key].add(planned.user)
        parts = [_phrase(*key, counts[key], len(mailboxes[key])) for key in sorted(counts, key=_order)]
        messages = [
            _count(number, label)
            for number, label in (
                (self._recipients(INVITATION), "invitation"),
                (self._recipients(UPDATE), "meeting update"),
                (self._recipients(CANCELLATION), "cancellation"),
            )
            if number
        ]
        if messages:
            parts.append("send " + _joined(messages))
        if not parts:
            return "would change nothing, in any mailbox or in the CRM"
        return "would " + _joined(parts)

    def _recipients(self, kind: str) -> int:
        return sum(len(message.recipients) for message in self.messages if message.kind == kind)

    def lines(self) -> list[str]:
        """The readable form: one line per action, then the meeting messages."""
        out = [f"{p.user} {p.pass_kind}: {p.as_dict()['line']}" for p in self.actions]
        out += [
            f"would send {len(m.recipients)} meeting {m.kind}(s) for “{m.subject}” "
            f"from {m.organizer} to {', '.join(m.recipients)}"
            for m in self.messages
        ]
        return out


# What a sentence says an action does, per side (None: left out of the sentence).
VERBS = {
    actions.CREATE: "add",
    actions.IMPORT: "add",
    actions.STUB: "add",
    actions.RESTORE: "add",
    actions.UPDATE: "update",
    actions.PULL: "update",
    actions.MOVE: "move",
    actions.SPLIT: "update",
    actions.END_SERIES: "update",
    actions.DELETE: "remove",
    actions.CANCEL: "cancel",
    actions.CONFLICT: "resolve",
    HOLD: "hold back",
}
CRM_PLACES = {"add": "into the CRM", "remove": "from the CRM"}
VERB_ORDER = ["remove", "cancel", "add", "update", "move", "resolve", "hold back"]
NOUNS = {SyncKind.CONTACTS: "contact", SyncKind.CALENDAR: "event", SyncKind.TASKS: "task"}


def _verb(action: Action) -> str | None:
    return VERBS.get(action.kind)


def _noun(planned: PlannedAction) -> str:
    action = planned.action
    if action.kind == actions.CONFLICT:
        return "conflict"
    if action.kind == actions.CANCEL and action.side == actions.EXCHANGE:
        return "meeting"
    if action.item.entity == "company":
        return "company card"
    return NOUNS.get(planned.pass_kind, "item")


def _order(key: tuple[str, str, str]) -> tuple[int, str, str]:
    verb, noun, side = key
    return (VERB_ORDER.index(verb), side != actions.EXCHANGE, noun)


def _count(number: int, noun: str) -> str:
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun}" + ("es" if noun.endswith(("x", "s")) else "s")


def _phrase(verb: str, noun: str, side: str, number: int, mailboxes: int) -> str:
    what = _count(number, noun)
    if noun == "conflict":
        return f"{verb} {what}"
    if side == actions.CRM:
        return f"{verb} {what} {CRM_PLACES.get(verb, 'in the CRM')}"
    preposition = {"add": "to", "remove": "from"}.get(verb, "in")
    return f"{verb} {what} {preposition} {_count(mailboxes, 'mailbox')}"


def _joined(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _plain(value: Any) -> Any:
    """A value as JSON carries it (dates as ISO text)."""
    return json.loads(json.dumps(value, default=str))


def preview_passes(
    environment_name: str,
    *,
    user_email: str | None = None,
    kind: str = "all",
    full: bool = False,
    proposed: Callable[[], object] | None = None,
) -> Preview:
    """Run the passes ``sync_now`` would run, as a preview; with ``proposed``, under the proposed
    configuration it writes (rolled back). Raises UnknownTarget for bad arguments."""
    chosen = _chosen_passes(environment_name, user_email, kind, proposed)
    preview = Preview(environment_name)
    for user, one_kind in chosen:
        _preview_one(preview, user, one_kind, full, proposed)
    return preview


def _chosen_passes(
    environment_name: str, user_email: str | None, kind: str, proposed: Callable[[], object] | None
) -> list[tuple[SyncUser, str]]:
    """(user, kind) of every pass to preview: a kind switched on by the change is previewed, one
    switched off is not (as the real passes after the save)."""

    def choose() -> list[tuple[SyncUser, str]]:
        _environment, users = target_users(environment_name, user_email)
        kinds = list(ALL_KINDS) if kind == "all" else [SyncKind(kind)]
        return [(user, one) for user in users for one in kinds if kind_enabled(user, one)]

    if proposed is None:
        return choose()
    with transaction.atomic():
        proposed()
        chosen = choose()
        transaction.set_rollback(True)
    return chosen


def _preview_one(
    preview: Preview, user: SyncUser, kind: str, full: bool, proposed: Callable[[], object] | None = None
) -> None:
    decided: list[Action] = []
    ctx = PassContext(trigger="manual", full=full, on_action=decided.append, record=False)
    backend = PreviewBackend(open_user_backend(user))
    try:
        with transaction.atomic():
            if proposed is not None:
                proposed()
            run = pass_runner(kind)(user.pk, ctx, backend)
            transaction.set_rollback(True)
    finally:
        backend.close()
    preview.passes += 1
    preview.requests += run.requests
    if run.outcome in (Outcome.FAILED, Outcome.ABORTED):
        preview.errors.append(f"{user.mailbox_email} {kind}: {run.error}")
    # Only what the safety limit held shows as held by it: a pass held by the meeting message
    # limit alone (P4) still deletes what it decided to.
    held_sides = ctx.held_deletions
    # Held back by the meeting message limit (P4): the hold stands in for the create or cancel.
    limited = {a.item.record_id for a in decided if a.kind == HOLD and a.rule == limits.RULE}
    for action in decided:
        if action.kind in QUIET or (action.kind in CREATES | DELETES and action.item.record_id in limited):
            continue
        if action.kind in DELETES and action.side in held_sides:
            action = Action(HOLD, action.item, action.side, action.fields, run.error, "safety limit")
        preview.actions.append(PlannedAction(user.mailbox_email, str(kind), action))
    preview.messages += [
        message
        for message in backend.messages
        if not (actions.EXCHANGE in held_sides and message.kind == CANCELLATION)
    ]
