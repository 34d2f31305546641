"""The overview's figures, from the runtime status dict (the page's JavaScript does the same)."""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime

HEALTHY = {"healthy"}
# Not healthy: what needs a person (never tested and inactive users are neither).
UNHEALTHY = {"backing_off", "held", "failing"}


def summarize(status: dict[str, Any]) -> dict[str, Any]:
    users = [u for u in status["users"] if u.get("active", True)]
    passes = [
        u[kind]["last_pass"]["finished_at"] or u[kind]["last_pass"]["started_at"]
        for u in users
        for kind in ("contacts", "calendar", "tasks")
        if u[kind]["last_pass"]
    ]
    due = [u[kind]["next_due"] for u in users for kind in ("contacts", "calendar", "tasks") if u[kind]["next_due"]]
    return {
        "healthy": sum(1 for u in users if u["state"] in HEALTHY),
        "unhealthy": sum(1 for u in users if u["state"] in UNHEALTHY),
        "never_tested": sum(1 for u in users if u["state"] == "never_tested"),
        "last_pass": parse_datetime(max(passes)) if passes else None,
        "next_pass": parse_datetime(min(due)) if due else None,
    }
