"""Preview a pass before it runs (P1): what it would do, per item, and nothing written anywhere.

A preview runs the real pass — the same reads, the same decisions in the same order, the same
follow-ups — against a mailbox that records its writes (``preview_backend``) and inside a
database transaction that is rolled back at the end of each pass. So a decision that reads what an
earlier write of the pass made (an imported meeting's UID, a stub, a link) sees it as the real pass
would, and afterwards nothing is left: no link, token, run record, conflict or health change, no
mailbox write. A preview leaves no run record of its own: it is an answer, not a pass that ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from synccore.models import Outcome, SyncKind
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


def _plain(value: Any) -> Any:
    """A value as JSON carries it (dates as ISO text)."""
    return json.loads(json.dumps(value, default=str))


def preview_passes(
    environment_name: str, *, user_email: str | None = None, kind: str = "all", full: bool = False
) -> Preview:
    """Run the passes ``sync_now`` would run, as a preview. Raises UnknownTarget for bad arguments."""
    environment, users = target_users(environment_name, user_email)
    kinds = list(ALL_KINDS) if kind == "all" else [SyncKind(kind)]
    preview = Preview(environment.name)
    for user in users:
        for one_kind in kinds:
            if kind_enabled(user, one_kind):
                _preview_one(preview, user, one_kind, full)
    return preview


def _preview_one(preview: Preview, user, kind: str, full: bool) -> None:
    decided: list[Action] = []
    ctx = PassContext(trigger="manual", full=full, on_action=decided.append, record=False)
    backend = PreviewBackend(open_user_backend(user))
    try:
        with transaction.atomic():
            run = pass_runner(kind)(user.pk, ctx, backend)
            transaction.set_rollback(True)
    finally:
        backend.close()
    preview.passes += 1
    preview.requests += run.requests
    if run.outcome in (Outcome.FAILED, Outcome.ABORTED):
        preview.errors.append(f"{user.mailbox_email} {kind}: {run.error}")
    held = run.outcome == Outcome.HELD
    # Held back by the meeting message limit (P4): the hold stands in for the create or cancel.
    limited = {a.item.record_id for a in decided if a.kind == HOLD and a.rule == limits.RULE}
    for action in decided:
        if action.kind in QUIET or (action.kind in CREATES | DELETES and action.item.record_id in limited):
            continue
        if held and action.kind in DELETES and action.side == actions.EXCHANGE:
            action = Action(HOLD, action.item, action.side, action.fields, run.error, "safety limit")
        preview.actions.append(PlannedAction(user.mailbox_email, str(kind), action))
    preview.messages += [message for message in backend.messages if not (held and message.kind == CANCELLATION)]
