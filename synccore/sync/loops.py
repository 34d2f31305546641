"""The loop detector (P3): an item whose same fields flip between the same values over several
passes is held, with its history, instead of being written again.

It reads the decisions the last passes of the mailbox and kind recorded (``Decision``, P2) and
the ones this pass took so far. A write of a field (an update into Exchange, a pull into the CRM)
is a flip when an earlier write in the window went the other way (after → before). When an item
has flipped ``loop_flips`` times within ``loop_passes`` passes and the pass is about to flip it
once more, the detector opens a ``LoopHold`` and refuses the write; while the hold is open, every
decision about the item is refused. An administrator releases it (``release``) once whatever
wrote it back is fixed; flips before the release no longer count.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from synccore.models import Decision, DecisionOutcome, LoopHold, SyncRun, SyncUser
from synccore.sync import actions
from synccore.sync.actions import Action
from synccore.sync.explain import ENTITY_OF_PASS, MODELS, QUIET, plain

# The writes whose fields can flip.
WRITES = {actions.UPDATE, actions.PULL}
RULE = "P3 loop detector"

Key = tuple[str, int]
Write = tuple[str, Any, Any]  # field, before, after (as JSON carries them)


class LoopDetector:
    """A gate of the pass's ``Recorder``: ``(action, allowed)`` for each decision."""

    def __init__(self, run: SyncRun, user: SyncUser, kind: str) -> None:
        settings = user.environment.settings
        self.run, self.user, self.kind = run, user, str(kind)
        self.limit = settings.loop_flips
        self.window = max(2, settings.loop_passes)
        self._held: set[Key] | None = None
        self._history: dict[Key, list[Write]] | None = None

    def __call__(self, action: Action) -> tuple[Action, bool]:
        if not self.limit or action.item.record_id is None:
            return action, True
        key = (action.item.entity or ENTITY_OF_PASS.get(self.kind, ""), action.item.record_id)
        if key in self.held:
            return self._hold(action, "Held by the loop detector: release it in Needs attention once fixed.")
        if action.kind not in WRITES or not action.fields:
            return action, True
        writes = [(name, plain(before), plain(after)) for name, (before, after) in sorted(action.fields.items())]
        past = self.history.setdefault(key, [])
        flipping = {name for name, before, after in writes if (name, after, before) in past}
        if flipping and any(flips(past, name) >= self.limit for name in flipping):
            self._open(key, action, past + writes)
            reason = (
                f"Held by the loop detector: {', '.join(sorted(flipping))} flipped back and forth "
                f"{max(flips(past, n) for n in flipping)} times in the last {self.window} passes."
            )
            return self._hold(action, reason)
        past.extend(writes)
        return action, True

    @staticmethod
    def _hold(action: Action, reason: str) -> tuple[Action, bool]:
        if action.kind in QUIET:
            return action, False  # an agreement held back is not a decision anyone asks about
        return Action(actions.HOLD, action.item, action.side, action.fields, reason, RULE), False

    @property
    def held(self) -> set[Key]:
        if self._held is None:
            open_holds = LoopHold.objects.filter(sync_user=self.user, pass_kind=self.kind, released_at__isnull=True)
            self._held = set(open_holds.values_list("entity", "record_id"))
        return self._held

    @property
    def history(self) -> dict[Key, list[Write]]:
        """The writes of the last passes (this one apart), oldest first, per item; writes before
        the item's last release are forgotten."""
        if self._history is None:
            runs = list(
                SyncRun.objects.filter(sync_user=self.user, kind=self.kind)
                .exclude(pk=self.run.pk)
                .order_by("-started_at")
                .values_list("pk", flat=True)[: self.window - 1]
            )
            released: dict[Key, Any] = {}
            for entity, record_id, at in LoopHold.objects.filter(
                sync_user=self.user, pass_kind=self.kind, released_at__isnull=False
            ).values_list("entity", "record_id", "released_at"):
                released[(entity, record_id)] = max(at, released.get((entity, record_id), at))
            history: dict[Key, list[Write]] = defaultdict(list)
            rows = (
                Decision.objects.filter(run_id__in=runs, action__in=WRITES, outcome=DecisionOutcome.DONE)
                .exclude(record_id=None)
                .order_by("at", "id")
                .values_list("entity", "record_id", "fields", "at")
            )
            for entity, record_id, fields, at in rows:
                key = (entity, record_id)
                if key in released and at <= released[key]:
                    continue
                history[key] += [(name, pair[0], pair[1]) for name, pair in sorted(fields.items())]
            self._history = dict(history)
        return self._history

    def _open(self, key: Key, action: Action, writes: list[Write]) -> None:
        entity, record_id = key
        model = MODELS.get(entity)
        external_id = ""
        if model is not None:
            external_id = model.all_objects.filter(pk=record_id).values_list("external_id", flat=True).first() or ""
        values: dict[str, list[Any]] = {}
        for name, before, after in writes:
            seen = values.setdefault(name, [])
            seen += [v for v in (before, after) if v not in seen]
        flipped = {name: seen for name, seen in values.items() if flips(writes, name)}
        try:
            with transaction.atomic():
                LoopHold.objects.create(
                    environment_id=self.user.environment_id,
                    sync_user=self.user,
                    pass_kind=self.kind,
                    entity=entity,
                    record_id=record_id,
                    external_id=external_id,
                    subject=(action.item.subject or "")[:255],
                    fields=flipped,
                    history=[{"field": n, "before": b, "after": a} for n, b, a in writes],
                )
        except IntegrityError:  # another pass of the same mailbox held it a moment ago
            pass
        self.held.add(key)


def flips(writes: list[Write], name: str) -> int:
    """How many writes of ``name`` went back the way an earlier one came."""
    seen: set[tuple[Any, Any]] = set()
    count = 0
    for field, before, after in writes:
        if field != name:
            continue
        key = (json_key(before), json_key(after))
        if (key[1], key[0]) in seen:
            count += 1
        seen.add(key)
    return count


def json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --- What the console and the API show, and the release ----------------------------------------


def open_holds(environment_id: int) -> list[LoopHold]:
    return list(
        LoopHold.objects.filter(environment_id=environment_id, released_at__isnull=True).select_related("sync_user")
    )


def release(hold_id: int, released_by: str) -> LoopHold:
    """Release a held item: its next pass decides it afresh (flips before now no longer count)."""
    hold = LoopHold.objects.select_related("sync_user").get(pk=hold_id)
    if hold.released_at is None:
        hold.released_at, hold.released_by = timezone.now(), released_by[:150]
        hold.save(update_fields=["released_at", "released_by"])
    return hold

