"""What a pass decided to do, as plain data (DESIGN §4's decision table, one row per action).

Every engine decides before it writes; its decisions can be given in this one form, so that a
preview can print them ("would update subject: 'A' → 'B'") and a log can record them without
knowing the engine's own objects (links, activities, cards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The kinds of action. A pass may decide more than one for one item (e.g. a conflict recorded,
# then a pull into the CRM and an update in Exchange).
CREATE = "create"  # create the item on `side`
UPDATE = "update"  # write the changed fields into Exchange (push)
PULL = "pull"  # write the changed fields into the CRM
DELETE = "delete"  # delete the item on `side`
CANCEL = "cancel"  # delete the organizer's meeting in Exchange, sending cancellations
IMPORT = "import"  # an Exchange item unknown to the CRM becomes a CRM record (K6)
IGNORE = "ignore"  # an invitee's copy of a meeting another sync user organizes (K7)
STUB = "stub"  # an outside organizer's meeting: the CRM keeps a stub of it (K7, K16)
CONFLICT = "conflict"  # a field changed on both sides; the policy chose (K8)
ADOPT = "adopt"  # an item our create left before a crash, found by its sync id
DROP_LINK = "drop_link"  # only the link goes: nothing is left to write on either side
KEEP = "keep"  # deleted in Exchange, kept in the CRM under the deletion policy (K9)
RESTORE = "restore"  # a CRM deletion undone: an edit in Exchange beats it
SPLIT = "split"  # a series that began in the past is ended and a new one started (K15)
END_SERIES = "end_series"  # the series a split left behind is ended at its past (K15)
AGREE = "agree"  # both sides hold the same: only the agreement (snapshot, change key) moves
MOVE = "move"  # move the item into another folder (C5)
SKIP = "skip"  # bad input: the item is left out and the reason shown
HOLD = "hold"  # held back instead of written: the loop detector (P3) or a limit (P4, DESIGN §5)

EXCHANGE = "exchange"
CRM = "crm"


@dataclass(frozen=True)
class ItemKey:
    """Which item an action is about, as a person would name it."""

    record_id: int | None = None  # the CRM record (activity, contact, company), when there is one
    remote_id: str = ""  # the Exchange item, when there is one
    subject: str = ""
    # The CRM record's kind (contact, company, activity) when the pass alone cannot tell it.
    entity: str = ""

    def __str__(self) -> str:
        name = f"“{self.subject}”" if self.subject else "(no subject)"
        if self.record_id is not None:
            return f"{name} (#{self.record_id})"
        return name


@dataclass(frozen=True)
class Action:
    """One decision in plain data. ``fields`` maps a field to (before, after) on ``side``."""

    kind: str
    item: ItemKey
    side: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict, hash=False)
    reason: str = ""
    rule: str = ""

    def describe(self) -> str:
        """One line for a preview: ``would update “A” (#3) in exchange: subject 'A' → 'B'``."""
        where = "the CRM" if self.side == CRM else "Exchange"
        line = f"would {self.kind.replace('_', ' ')} {self.item} in {where}"
        changes = [
            f"{name}: {before!r} → {after!r}" for name, (before, after) in sorted(self.fields.items())
        ]
        if changes:
            line += ": " + "; ".join(changes)
        if self.rule:
            line += f" ({self.rule})"
        return line


def field_changes(
    names: set[str] | list[str], before: dict[str, Any], after: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """{name: (before, after)} for the named fields."""
    return {name: (before.get(name), after.get(name)) for name in sorted(names)}
