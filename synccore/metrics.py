"""Metrics for monitoring systems (O7), in the Prometheus text format.

Read from the database at each scrape (runs, users, push, attention), so every web process
answers the same and nothing is kept in memory between scrapes. The ``…_total`` counters count
the runs still kept (``SYNC_RETENTION_DAYS``): the daily prune makes them fall, which monitoring
systems read as a counter reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from synccore.models import Environment, Health, ItemLink, Outcome, SyncKind, SyncRun
from synccore.runtime import queue, service

CONTENT_TYPE = CONTENT_TYPE_LATEST
KINDS = [kind.value for kind in SyncKind]
INACTIVE = "inactive"
HEALTH_STATES = [*Health.values, INACTIVE]
PUSH_STATES = ["creating", "active", "failed"]
FINISHED = [outcome for outcome in Outcome.values if outcome != Outcome.RUNNING]


def render() -> bytes:
    """The metrics page."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SynchronizerCollector())
    return generate_latest(registry)


class SynchronizerCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        environments = list(Environment.objects.select_related("settings").order_by("name"))
        statuses = [service.status(env.pk) for env in environments]
        yield _passes(environments)
        yield _requests(environments)
        yield _users(statuses)
        yield _push(statuses)
        yield _attention(environments, statuses)
        depth = GaugeMetricFamily(
            "crmsync_queue_depth", "Tasks waiting for a worker (-1: the broker did not answer)."
        )
        depth.add_metric([], statuses[0]["queue_depth"] if statuses else queue.queue_depth())
        yield depth


def _passes(environments: list[Environment]) -> Metric:
    family = CounterMetricFamily(
        "crmsync_passes", "Passes finished, by kind and outcome.", labels=["environment", "kind", "outcome"]
    )
    rows = SyncRun.objects.filter(outcome__in=FINISHED).values("environment_id", "kind", "outcome")
    counts = {(r["environment_id"], r["kind"], r["outcome"]): r["n"] for r in rows.annotate(n=Count("pk"))}
    for env in environments:
        for kind in KINDS:
            for outcome in FINISHED:
                family.add_metric([env.name, kind, outcome], counts.get((env.pk, kind, outcome), 0))
    return family


def _requests(environments: list[Environment]) -> Metric:
    family = CounterMetricFamily(
        "crmsync_requests", "Requests made to Exchange by passes, by backend.", labels=["environment", "backend"]
    )
    rows = SyncRun.objects.values("environment_id").annotate(n=Sum("requests"))
    sums = {r["environment_id"]: r["n"] or 0 for r in rows}
    for env in environments:
        family.add_metric([env.name, env.settings.backend], sums.get(env.pk, 0))
    return family


def _users(statuses: list[dict[str, Any]]) -> Metric:
    family = GaugeMetricFamily(
        "crmsync_users", "Sync users by kind and health.", labels=["environment", "kind", "health"]
    )
    for status in statuses:
        counts = dict.fromkeys(((kind, health) for kind in KINDS for health in HEALTH_STATES), 0)
        for user in status["users"]:
            for kind in KINDS:
                if user["kinds"][kind]["enabled"]:
                    health = user["health"] if user["active"] else INACTIVE
                    counts[(kind, health)] = counts.get((kind, health), 0) + 1
        for (kind, health), n in counts.items():
            family.add_metric([status["environment"], kind, health], n)
    return family


def _push(statuses: list[dict[str, Any]]) -> Metric:
    family = GaugeMetricFamily(
        "crmsync_push_subscriptions", "Push subscriptions (EWS streams, Graph webhooks) by state.",
        labels=["environment", "state"],
    )
    for status in statuses:
        counts = dict.fromkeys(PUSH_STATES, 0)
        for user in status["users"]:
            for kind in KINDS:
                push = user["kinds"][kind]["push"]
                if push:
                    counts[push["state"]] = counts.get(push["state"], 0) + 1
        for state, n in counts.items():
            family.add_metric([status["environment"], state], n)
    return family


def _attention(environments: list[Environment], statuses: list[dict[str, Any]]) -> Metric:
    family = GaugeMetricFamily(
        "crmsync_items_needing_attention",
        "What needs a person: items that failed, were skipped or held, and users held or unhealthy.",
        labels=["environment"],
    )
    rows = (
        ItemLink.objects.filter(state__in=service.ATTENTION_LINK_STATES)
        .values("environment_id")
        .annotate(n=Count("pk"))
    )
    items = {r["environment_id"]: r["n"] for r in rows}
    for env, status in zip(environments, statuses, strict=True):
        users = sum(1 for u in status["users"] if u["active"] and u["health"] in service.ATTENTION_HEALTH)
        family.add_metric([env.name], items.get(env.pk, 0) + users)
    return family
