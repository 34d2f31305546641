"""EWS translation for task specifics: the values Exchange computes for a ``t:Task`` (see `exchange_sim.tasks`)."""

from __future__ import annotations

from typing import Any

from exchange_sim import tasks
from exchange_sim.ews import operations


def install(simulator: Any) -> None:
    operations.COMPUTED["Task"] = tasks.computed_task
