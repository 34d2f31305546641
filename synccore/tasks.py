"""django-q2 task entry points: take ids, call one runtime function, return (thin edges).

Their dotted paths (``synccore.tasks.tick`` …) are stored as strings in django-q2's schedule and
task rows: they stay here, whatever moves beneath them.
"""

from __future__ import annotations

from synccore.runtime import housekeeping, passes, scheduling, service
from synccore.runtime.push import graph as graph_push


def tick(environment_id: int, chain_schedule_id: int | None = None) -> int:
    return scheduling.tick(environment_id, chain_schedule_id)


def run_pass(user_id: int, kind: str, trigger: str = "schedule", full: bool = False) -> str:
    return service.run_pass(user_id, kind, trigger, full)


def run_passes(user_ids: list[int], kind: str, trigger: str = "schedule", full: bool = False) -> list[str]:
    return service.run_pass_batch(user_ids, kind, trigger, full)


def audit_environment(environment_id: int) -> int:
    return scheduling.audit_environment(environment_id)


def audit_mailbox(user_id: int) -> str:
    return passes.audit_mailbox(user_id)


def prune() -> dict[str, int]:
    return housekeeping.prune()


def maintain_graph_subscriptions(environment_id: int) -> dict[str, int]:
    return graph_push.maintain(environment_id)


def renew_graph_subscription(subscription_pk: int) -> bool:
    return graph_push.renew(subscription_pk)


def resubscribe_graph_subscription(subscription_pk: int) -> bool:
    return graph_push.resubscribe(subscription_pk)


def delete_graph_subscription(environment_id: int, mailbox: str, subscription_id: str) -> None:
    graph_push.delete_subscription(environment_id, mailbox, subscription_id)


def test_mailbox(user_id: int) -> dict:
    return service.test_mailbox(user_id).as_dict()


def deliver_alerts(environment_id: int, events: list[dict], channels: list[str], attempt: int = 0) -> dict:
    return service.deliver_alerts(environment_id, events, channels, attempt)
