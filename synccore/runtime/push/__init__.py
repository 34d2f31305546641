"""Push (K14): a pass as soon as a mailbox changes, one module per backend's push style.

- `ews`: a listener process (`run_push_listener`) holds streaming subscriptions; it finds the
  running environments itself at every poll, so start, stop and saved settings need nothing here.
- `graph`: webhook subscriptions, created, renewed and removed by a task on the workers.

The rest of the runtime calls only the functions below; a third backend's push goes in a module
of its own, called from each of them. Graph's are called whatever the environment's backend is
now: an environment switched away from Graph still has subscriptions to remove.
"""

from __future__ import annotations

from typing import Any

from synccore.models import Environment, SyncUser
from synccore.runtime.push import ews, graph


def status_by_user(env: Environment) -> dict[tuple[int, str], dict[str, Any]]:
    """(user id, kind) → {"state", "expires_at", "error"} of what pushes its changes, where
    anything does (the Graph subscription, or the EWS listener's stream)."""
    return {**graph.subscription_status(env), **ews.stream_status(env)}


def schedule(env: Environment) -> None:
    """A start: Graph subscriptions made now, and maintained while the environment runs."""
    graph.schedule_maintenance(env)


def unschedule(env: Environment) -> None:
    """Nothing maintained any more (a failed start)."""
    graph.unschedule_maintenance(env)


def stopped(env: Environment) -> None:
    """A stop: a worker removes the Graph subscriptions (no Graph call here)."""
    graph.stopped(env)


def follow(environment_id: int) -> None:
    """Settings or sync users saved: Graph subscriptions maintained at once where they no longer
    match what is wanted."""
    graph.follow(environment_id)


def release(user: SyncUser) -> None:
    """A sync user is being deleted: its Graph subscriptions are deleted once that commits."""
    graph.release(user)
