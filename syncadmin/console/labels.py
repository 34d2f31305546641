"""One vocabulary for the console's badges: the words the server renders are the words the status
script writes when it refreshes them (both read this table; the page carries it as JSON)."""

from __future__ import annotations

from synccore.models import Health, Outcome, PushSubscriptionState, SynchronizerState

LABELS: dict[str, dict[str, str]] = {
    "state": dict(SynchronizerState.choices),
    "health": dict(Health.choices),
    "outcome": dict(Outcome.choices),
    "push": dict(PushSubscriptionState.choices),
    # A user's and each of its kinds' state (synccore.sync.runs), as the status reports them.
    "user_state": {
        "healthy": "Healthy",
        "never_tested": "Never tested",
        "backing_off": "Backing off",
        "held": "Held by the safety limit",
        "failing": "Failing",
        "inactive": "Inactive",
    },
}


def label(vocabulary: str, value: str) -> str:
    """The words for a value; an unknown value (a newer server) shows as it is."""
    return LABELS.get(vocabulary, {}).get(value, value)
