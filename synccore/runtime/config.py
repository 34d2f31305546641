"""The runtime's settings.

Read from Django settings first, then from the process environment, so a test can hand them to a
qcluster subprocess without a settings module of its own.
"""

from __future__ import annotations

import os
from datetime import timedelta

from django.conf import settings as django_settings

from synccore.models import Environment
from synccore.runtime import leases


def _conf(name: str, default: float) -> float:
    value = getattr(django_settings, name, None)
    if value in (None, ""):
        value = os.environ.get(name, "")
    return float(value) if value not in (None, "") else default


def lease_ttl_s() -> float:
    """How long a lease lives without renewal: how soon a dead worker's mailbox is taken over."""
    return _conf("SYNC_LEASE_SECONDS", leases.DEFAULT_TTL_S)


def foreground_wait_s() -> float:
    """How long ``manage.py sync_now`` waits for a pass that holds a mailbox before giving up."""
    return _conf("SYNC_NOW_WAIT_SECONDS", 60)


def pass_threads() -> int:
    """Passes one worker process runs at once (threads); the tick's batches are this big."""
    return max(1, int(_conf("PASS_THREADS", 8)))


def ews_concurrent_passes() -> int:
    """Passes at once per EWS service account, over every worker (EWSMaxConcurrency: 27)."""
    return max(1, int(_conf("SYNC_EWS_CONCURRENT_PASSES", 27)))


def slot_wait_s() -> float:
    """How long a pass waits for a free connection of its service account before it is queued
    again."""
    return _conf("SYNC_SLOT_WAIT_SECONDS", 120)


def drift_audit_hours() -> float:
    """How often each mailbox's drift audit runs (issue 16, finding 9); 0 turns it off."""
    return _conf("SYNC_DRIFT_AUDIT_HOURS", 24)


def retention_days() -> float:
    return _conf("SYNC_RETENTION_DAYS", 30)


def tick_seconds_in_tests() -> float:
    """Test only: tick every this many seconds (a self-renewing task) instead of once a minute."""
    return _conf("SYNC_TEST_TICK_SECONDS", 0)


def pull_interval(env: Environment) -> timedelta:
    """The environment's pull interval; in tests each interval unit may count as N seconds."""
    per_unit = _conf("SYNC_TEST_SECONDS_PER_UNIT", 0)
    if per_unit:
        return timedelta(seconds=env.settings.pull_interval * per_unit)
    return env.settings.pull_interval_delta
