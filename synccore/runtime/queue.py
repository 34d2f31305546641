"""django-q2: the broker, tasks enqueued by their dotted path, and named schedules.

Tasks take ids; any cluster on any machine may run them. Their entry points are in
`synccore.tasks`, whose dotted paths the schedule rows store.

django_q is imported inside the functions: its modules import its models, which need Django's app
registry ready, and the runtime's modules are imported by the admin and by system checks while
Django sets up.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone

from synccore.models import Environment

log = logging.getLogger(__name__)

# The scheduler's own resolution: one tick per running environment every minute.
HEARTBEAT_MINUTES = 1
PRUNE_SCHEDULE = "synchronizer:prune"


def current_broker() -> Any:
    from django_q.brokers import get_broker

    return get_broker()


def enqueue(func: str, *args: Any, broker: Any = None) -> None:
    """Enqueue the task `func` (a dotted path in `synccore.tasks`) with `args`."""
    from django_q.tasks import async_task

    async_task(func, *args, broker=broker or current_broker())


def tick_schedule_name(env: Environment | int) -> str:
    """The name of an environment's tick schedule (other schedules of it extend this name)."""
    return f"synchronizer:{env if isinstance(env, int) else env.pk}"


def every_minutes(name: str, func: str, env: Environment, minutes: int) -> Any:
    """A django-q2 schedule named `name` running the task `func(env.pk)` every `minutes`, the
    first time `minutes` from now."""
    from django_q.models import Schedule

    return Schedule.objects.create(
        name=name,
        func=func,
        args=repr((env.pk,)),
        schedule_type=Schedule.MINUTES,
        minutes=minutes,
        repeats=-1,
        next_run=timezone.now() + timedelta(minutes=minutes),
    )


def daily_once(name: str, func: str) -> None:
    """A daily schedule named `name` running `func()`, unless one of that name exists; the first
    run an hour from now."""
    from django_q.models import Schedule

    if not Schedule.objects.filter(name=name).exists():
        Schedule.objects.create(
            name=name,
            func=func,
            schedule_type=Schedule.DAILY,
            repeats=-1,
            next_run=timezone.now() + timedelta(hours=1),
        )


def delete_schedule(name: str) -> None:
    from django_q.models import Schedule

    Schedule.objects.filter(name=name).delete()


def schedule_exists(schedule_id: int) -> bool:
    from django_q.models import Schedule

    return Schedule.objects.filter(pk=schedule_id).exists()


def delete_task_results(before) -> int:
    """Task results (django-q2's rows) of tasks that stopped before `before`; how many."""
    from django_q.models import Task

    return Task.objects.filter(stopped__lt=before).delete()[0]


def queue_depth() -> int:
    """Tasks waiting in the broker; -1 when the broker cannot be read."""
    try:
        return int(current_broker().queue_size() or 0)
    except Exception:  # the status page must render even when the broker is down
        log.warning("could not read the queue depth", exc_info=True)
        return -1


def live_clusters() -> list[dict[str, Any]]:
    """Clusters seen alive in the last minute, from django-q2's statistics in the shared cache."""
    from django_q.status import Stat

    try:
        stats = Stat.get_all()
    except Exception:
        log.warning("could not read the cluster statistics", exc_info=True)
        return []
    alive_since = timezone.now() - timedelta(minutes=1)
    return [
        {
            "cluster": str(stat.cluster_id),
            "host": stat.host,
            "pid": stat.sentinel,
            "status": str(stat.status),
            "workers": len(stat.workers),
            "seen_at": stat.timestamp.isoformat() if stat.timestamp else None,
        }
        for stat in sorted(stats, key=lambda s: (s.host, str(s.cluster_id)))
        if stat.timestamp and stat.timestamp >= alive_since
    ]
