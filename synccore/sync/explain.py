"""Explain every decision after it ran (P2): what a real pass decided, recorded item by item.

Every engine tells its pass's context each decision before it writes it (``PassContext.decided``,
the same ``sync/actions.Action`` a preview prints). A real pass hands them to a ``Recorder``;
once the pass is over, the recorder stores them as ``Decision`` rows beside the run — each with
its rule and reason, the fields it changed (before → after) and whether it was carried out, held
back or failed — so "Explain" on an item (``explain_item``) shows its links and its history of
decisions, newest first. The rows go with their run after SYNC_RETENTION_DAYS.

Only what changes something is kept: an agreement that only moves a change key is not a decision
a person asks about, so an idle pass records nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Q

from synccore import mapping
from synccore.models import (
    Activity,
    Company,
    Conflict,
    Contact,
    Decision,
    DecisionOutcome,
    ItemLink,
    LinkState,
    LoopHold,
    Outcome,
    SyncKind,
    SyncRun,
    SyncUser,
)
from synccore.models.bulk import insert_rows
from synccore.sync import actions
from synccore.sync.actions import Action, ItemKey

# Nothing changes for a person: only the agreement moves.
QUIET = {actions.AGREE}
# A field's value is kept up to this many characters (bodies): enough to recognise it.
MAX_TEXT = 200
# The CRM record a pass of this kind is about, when its action does not say.
ENTITY_OF_PASS = {SyncKind.CALENDAR: mapping.ACTIVITY, SyncKind.TASKS: mapping.ACTIVITY, SyncKind.EMAIL: mapping.ACTIVITY}
MODELS = {mapping.CONTACT: Contact, mapping.COMPANY: Company, mapping.ACTIVITY: Activity}
# The {kind} of GET …/items/{kind}/{external_id}/explain/: the CRM API's names, and singulars.
KINDS = {
    "contacts": mapping.CONTACT,
    "contact": mapping.CONTACT,
    "companies": mapping.COMPANY,
    "company": mapping.COMPANY,
    "activities": mapping.ACTIVITY,
    "activity": mapping.ACTIVITY,
    "tasks": mapping.ACTIVITY,
    "task": mapping.ACTIVITY,
}
REMOVALS = {actions.DELETE, actions.CANCEL}


class UnknownItem(ObjectDoesNotExist):
    """No CRM record of that kind and external id, and no decision about one (a 404)."""


def plain(value: Any) -> Any:
    """A value as JSON carries it, long texts cut (a body is recognised by its start).

    Every decision is recorded (P2), so the values JSON holds as they are (texts, numbers, lists,
    dicts with text keys) are walked, not serialized and parsed again; anything else takes the
    JSON round trip, which turns it into what JSON makes of it (a moment into its text)."""
    kind = type(value)
    if kind is str:
        return value[:MAX_TEXT] + "…" if len(value) > MAX_TEXT else value
    if value is None or kind is bool or kind is int or kind is float:
        return value
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
    if kind is dict and all(type(k) is str for k in value):
        return {k: plain(v) for k, v in value.items()}
    return _cut(json.loads(json.dumps(value, default=str)))


def _cut(value: Any) -> Any:
    """Long texts of a JSON value cut, at any depth (one JSON round trip for the whole value)."""
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + "…"
    if isinstance(value, list):
        return [_cut(v) for v in value]
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    return value


# Decides whether an action may be written: (the action as taken, allowed). The loop detector
# (P3) hooks in here; without it every decision is allowed.
Gate = Callable[[Action], tuple[Action, bool]]


class Recorder:
    """Collects one real pass's decisions and stores them when the pass is over."""

    def __init__(self, run: SyncRun, user: SyncUser, kind: str, gates: list[Gate] | None = None) -> None:
        self.run = run
        self.user = user
        self.kind = str(kind)
        self.gates = gates or []
        self.taken: list[Action] = []
        # What was written before the pass ended (by ``id`` of the action in ``taken``), and the
        # decisions still waiting for their write, by item: a failed pass's outcomes stay true.
        self.carried: set[int] = set()
        self._waiting: dict[tuple[str, Any], list[Action]] = {}
        self.held_deletions: set[str] | frozenset[str] = frozenset()

    def decide(self, action: Action) -> tuple[Action, bool]:
        """The action as it is taken (a gate may turn it into a hold) and whether it may be written."""
        allowed = True
        for gate in self.gates:
            action, allowed = gate(action)
            if not allowed:
                break
        if action.kind not in QUIET:
            self.taken.append(action)
            if allowed:
                self._waiting.setdefault(_item_key(action.item), []).append(action)
        return action, allowed

    def carried_out(self, item: ItemKey, kinds: Collection[str] | None = None) -> None:
        """The item's waiting decisions (of ``kinds``, or all) were written."""
        key = _item_key(item)
        waiting = self._waiting.get(key)
        if not waiting:
            return
        left = []
        for action in waiting:
            if kinds is None or action.kind in kinds:
                self.carried.add(id(action))
            else:
                left.append(action)
        self._waiting[key] = left

    def supersede(self, kind: str, record_id: int | None) -> None:
        """A decision taken earlier in the pass was not carried out after all (a limit held it)."""
        for index in range(len(self.taken) - 1, -1, -1):
            if self.taken[index].kind == kind and self.taken[index].item.record_id == record_id:
                del self.taken[index]
                return

    def flush(self, held_deletions: set[str] | frozenset[str] = frozenset()) -> int:
        """Store the decisions as ``Decision`` rows; the number stored. ``held_deletions``: the
        sides whose deletions the safety limit held back."""
        if not self.taken:
            return 0
        self.held_deletions = held_deletions
        run, user = self.run, self.user
        resolved = self._records_by_remote_id()
        failed = self._failed_items()
        entries: list[tuple[Action, str, int | None]] = []
        for action in self.taken:
            entity = action.item.entity or ENTITY_OF_PASS.get(self.kind, "")
            record_id = action.item.record_id
            if record_id is None and action.item.remote_id in resolved:
                entity, record_id = resolved[action.item.remote_id]
            entries.append((action, entity, record_id))
        external = self._external_ids({(entity, rid) for _, entity, rid in entries if rid is not None})
        policy = user.environment.settings.get_conflict_policy_display()
        rows = []
        for action, entity, record_id in entries:
            outcome, detail = self._outcome(action, failed.get((entity, record_id)))
            rule = action.rule
            if action.kind == actions.CONFLICT:
                rule = f"{rule}, conflict policy: {policy}".strip(", ")
            rows.append(
                Decision(
                    environment_id=user.environment_id,
                    # Keys, not the rows: nothing related held that the insert would check.
                    sync_user_id=user.pk,
                    run_id=run.pk,
                    pass_kind=self.kind,
                    entity=entity,
                    record_id=record_id,
                    external_id=external.get((entity, record_id), ""),
                    remote_id=action.item.remote_id,
                    subject=(action.item.subject or "")[:255],
                    action=action.kind,
                    side=action.side,
                    fields={name: [plain(b), plain(a)] for name, (b, a) in sorted(action.fields.items())},
                    reason=action.reason,
                    rule=rule[:200],
                    outcome=outcome,
                    detail=detail,
                    at=run.finished_at or run.started_at,
                )
            )
        insert_rows(Decision, rows)
        return len(rows)

    def _outcome(self, action: Action, item_error: str | None) -> tuple[str, str]:
        run = self.run
        if action.kind == actions.HOLD:
            return DecisionOutcome.HELD, action.reason
        if action.kind in REMOVALS and action.side in self.held_deletions:
            return DecisionOutcome.HELD, run.error or "Held by the safety limit."
        if run.outcome in (Outcome.FAILED, Outcome.ABORTED) and id(action) not in self.carried:
            return DecisionOutcome.FAILED, f"The pass stopped before this was confirmed written: {run.error}"
        if item_error is not None and action.kind != actions.SKIP:
            return DecisionOutcome.FAILED, item_error
        return DecisionOutcome.DONE, ""

    def _records_by_remote_id(self) -> dict[str, tuple[str, int]]:
        """Items that had no CRM record when decided (an import, a stub): theirs now, by remote id."""
        wanted = {a.item.remote_id for a in self.taken if a.item.record_id is None and a.item.remote_id}
        if not wanted:
            return {}
        out: dict[str, tuple[str, int]] = {}
        for link in ItemLink.objects.filter(sync_user=self.user, remote_id__in=wanted):
            out[link.remote_id] = _record_of(link)
        return out

    def _failed_items(self) -> dict[tuple[str, int], str]:
        """Items whose write failed or was refused in this pass: their error."""
        links = ItemLink.objects.filter(
            sync_user=self.user,
            state__in=[LinkState.FAILED, LinkState.SKIPPED],
            last_error_at__gte=self.run.started_at,
        )
        return {_record_of(link): link.last_error for link in links}

    @staticmethod
    def _external_ids(keys: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
        out: dict[tuple[str, int], str] = {}
        for entity, model in MODELS.items():
            ids = [rid for kind, rid in keys if kind == entity]
            if ids:
                for pk, external_id in model.all_objects.filter(pk__in=ids).values_list("pk", "external_id"):
                    out[(entity, pk)] = external_id
        return out


def _item_key(item: ItemKey) -> tuple[str, Any]:
    """One item of a pass: its CRM record when it has one (as its engine names it), else its
    Exchange item (an import decided before its record exists)."""
    if item.record_id is not None:
        return (item.entity, item.record_id)
    return ("", item.remote_id)


def _record_of(link: ItemLink) -> tuple[str, int]:
    if link.kind == mapping.CONTACT:
        return mapping.CONTACT, link.contact_id
    if link.kind == mapping.COMPANY:
        return mapping.COMPANY, link.company_id
    return mapping.ACTIVITY, link.activity_id


# --- Explain: an item's links and history of decisions -------------------------------------------

HISTORY_LIMIT = 200


def decision_line(row: Decision) -> str:
    """One readable line: ``pull in the CRM “A” (#3): subject: 'A' → 'B' (K8) — Changed in Exchange.``"""
    where = "the CRM" if row.side == actions.CRM else "Exchange"
    line = f"{row.action.replace('_', ' ')} in {where}"
    changes = [f"{name}: {pair[0]!r} → {pair[1]!r}" for name, pair in sorted(row.fields.items())]
    if changes:
        line += ": " + "; ".join(changes)
    if row.rule:
        line += f" ({row.rule})"
    if row.reason:
        line += f" — {row.reason}"
    if row.outcome != DecisionOutcome.DONE:
        line += f" [{row.get_outcome_display().lower()}: {row.detail}]" if row.detail else f" [{row.outcome}]"
    return line


def decision_dict(row: Decision, user_email: str) -> dict[str, Any]:
    return {
        "at": row.at.isoformat(),
        "run": row.run_id,
        "user": user_email,
        "pass": row.pass_kind,
        "action": row.action,
        "side": row.side,
        "fields": {name: {"before": pair[0], "after": pair[1]} for name, pair in sorted(row.fields.items())},
        "reason": row.reason,
        "rule": row.rule,
        "outcome": row.outcome,
        "detail": row.detail,
        "line": decision_line(row),
    }


def explain_item(environment_id: int, kind: str, external_id: str, *, limit: int = HISTORY_LIMIT) -> dict[str, Any]:
    """What the synchronizer knows of one CRM record: its links and its decisions, newest first.

    Raises ``UnknownItem`` for a kind the API does not name, or an item with neither a record nor
    a decision (a purged record's decisions are still shown while they are kept)."""
    entity = KINDS.get(kind.lower())
    if entity is None:
        raise UnknownItem(f"“{kind}” is not a kind of item (contacts, companies, activities, tasks).")
    record = MODELS[entity].all_objects.filter(environment_id=environment_id, external_id=external_id).first()
    match = Q(external_id=external_id)
    if record is not None:
        match |= Q(record_id=record.pk)
    rows = list(
        Decision.objects.filter(match, environment_id=environment_id, entity=entity).select_related("sync_user")[:limit]
    )
    if record is None and not rows:
        raise UnknownItem(f"No {entity} with the external id “{external_id}” in this environment.")
    links = (
        list(ItemLink.objects.filter(**{entity: record}).select_related("sync_user").order_by("sync_user__mailbox_email"))
        if record is not None
        else []
    )
    hold = (
        LoopHold.objects.filter(match, environment_id=environment_id, entity=entity, released_at__isnull=True)
        .select_related("sync_user")
        .first()
    )
    conflicts = Conflict.objects.filter(link__in=links).order_by("-detected_at")[:50] if links else []
    return {
        "environment": environment_id,
        "kind": kind,
        "external_id": external_id,
        "record": _record_dict(entity, record),
        "links": [_link_dict(link) for link in links],
        "conflicts": [
            {
                "id": c.pk,
                "field": c.field,
                "crm_value": c.crm_value,
                "exchange_value": c.exchange_value,
                "choice": c.choice,
                "detected_at": c.detected_at.isoformat(),
                "resolved": c.resolved_at is not None,
            }
            for c in conflicts
        ],
        "loop_hold": _hold_dict(hold) if hold is not None else None,
        "decisions": [decision_dict(row, row.sync_user.mailbox_email if row.sync_user else "") for row in rows],
    }


def _record_dict(entity: str, record: Any) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "type": entity,
        "id": record.pk,
        "label": str(record),
        "deleted": record.deleted_at is not None,
        "updated_at": record.updated_at.isoformat() if record.updated_at else None,
    }


def _link_dict(link: ItemLink) -> dict[str, Any]:
    return {
        "user": link.sync_user.mailbox_email,
        "kind": link.kind,
        "state": link.state,
        "remote_id": link.remote_id,
        "sync_id": str(link.sync_id),
        "synced_at": link.synced_at.isoformat() if link.synced_at else None,
        "last_error": link.last_error,
    }


def _hold_dict(hold: LoopHold) -> dict[str, Any]:
    return {
        "id": hold.pk,
        "user": hold.sync_user.mailbox_email,
        "pass": hold.pass_kind,
        "held_at": hold.held_at.isoformat(),
        "fields": hold.fields,
        "history": hold.history,
    }


RUN_LIMIT = 1000
URL_KINDS = {mapping.CONTACT: "contacts", mapping.COMPANY: "companies", mapping.ACTIVITY: "activities"}


def run_decisions(environment_id: int, run_id: int, *, limit: int = RUN_LIMIT) -> dict[str, Any]:
    """What one run decided, item by item (the run history's "Explain"); ``SyncRun.DoesNotExist``
    for a run of another environment."""
    run = SyncRun.objects.select_related("sync_user").get(pk=run_id, environment_id=environment_id)
    rows = list(Decision.objects.filter(run=run).order_by("id")[:limit])
    email = run.sync_user.mailbox_email if run.sync_user else ""
    return {
        "run": run.pk,
        "user": email,
        "kind": run.kind,
        "outcome": run.outcome,
        "started_at": run.started_at.isoformat(),
        "error": run.error,
        "decisions": [
            {
                **decision_dict(row, email),
                "subject": row.subject,
                "item_kind": URL_KINDS.get(row.entity, ""),
                "external_id": row.external_id,
            }
            for row in rows
        ],
    }
