"""django-q2 task entry points: take ids, call one runtime function, return (thin edges)."""

from __future__ import annotations

from synccore import runtime


def tick(environment_id: int, chain_schedule_id: int | None = None) -> int:
    return runtime.tick(environment_id, chain_schedule_id)


def run_pass(user_id: int, kind: str, trigger: str = "schedule", full: bool = False) -> str:
    return runtime.run_pass(user_id, kind, trigger, full)


def prune() -> dict[str, int]:
    return runtime.prune()


def maintain_graph_subscriptions(environment_id: int) -> dict[str, int]:
    from synccore import graph_push

    return graph_push.maintain(environment_id)


def renew_graph_subscription(subscription_pk: int) -> bool:
    from synccore import graph_push

    return graph_push.renew(subscription_pk)


def resubscribe_graph_subscription(subscription_pk: int) -> bool:
    from synccore import graph_push

    return graph_push.resubscribe(subscription_pk)


def delete_graph_subscription(environment_id: int, mailbox: str, subscription_id: str) -> None:
    from synccore import graph_push

    graph_push.delete_subscription(environment_id, mailbox, subscription_id)
