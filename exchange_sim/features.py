"""Wires the optional layers (calendar, meetings, tasks, messages, notifications) into a Simulator."""

from __future__ import annotations

from typing import Any


def install(simulator: Any) -> None:
    from exchange_sim import calendar, meetings, messages, tasks
    from exchange_sim.ews import directory_ops

    directory_ops.install(simulator)
    calendar.install(simulator)
    meetings.install(simulator)
    tasks.install(simulator)
    messages.install(simulator)
    try:
        from exchange_sim import notifications
    except ImportError:  # notifications are optional while being built
        return
    notifications.install(simulator)
