"""Per-mailbox leases: one mailbox is never synced by two workers at once (issue 7).

Every operation is a single conditional UPDATE, atomic on PostgreSQL and SQLite alike, so it holds
across processes and machines without row locks. A lease carries an expiry: a pass renews it at
each item boundary, and the lease of a worker that died (kill -9, lost machine) simply expires and
is taken over by the next pass.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from synccore.models import Outcome, SyncKind, SyncRun, UserLease

DEFAULT_TTL_S = 300.0


def worker_name() -> str:
    """host:pid of this process, as written on run rows (the crash test finds workers by it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def new_holder() -> str:
    return f"{worker_name()}:{uuid.uuid4().hex[:8]}"


def ensure(user_id: int) -> None:
    if UserLease.objects.filter(sync_user_id=user_id).exists():
        return
    try:
        with transaction.atomic():
            UserLease.objects.create(sync_user_id=user_id)
    except IntegrityError:  # another process created it first: fine, it exists now
        pass


def acquire(user_id: int, holder: str, ttl_s: float = DEFAULT_TTL_S) -> bool:
    """Take the lease if it is free or expired; True when this holder has it now."""
    ensure(user_id)
    now = timezone.now()
    taken = (
        UserLease.objects.filter(sync_user_id=user_id)
        .filter(Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now) | Q(holder=holder))
        .update(holder=holder, expires_at=now + timedelta(seconds=ttl_s))
    )
    return taken == 1


def renew(user_id: int, holder: str, ttl_s: float = DEFAULT_TTL_S) -> bool:
    """Extend the lease; False when it was lost (expired and taken over by another pass)."""
    now = timezone.now()
    return (
        UserLease.objects.filter(sync_user_id=user_id, holder=holder).update(
            expires_at=now + timedelta(seconds=ttl_s)
        )
        == 1
    )


def release(user_id: int, holder: str) -> None:
    UserLease.objects.filter(sync_user_id=user_id, holder=holder).update(holder="", expires_at=None)


def _rerun_field(kind: str) -> str:
    return f"rerun_{SyncKind(kind).value}"


def request_rerun(user_id: int, kind: str, trigger: str) -> None:
    """A pass that found the lease taken: the holder runs this kind again when it is done."""
    ensure(user_id)
    UserLease.objects.filter(sync_user_id=user_id).update(**{_rerun_field(kind): trigger})


def take_reruns(user_id: int) -> list[tuple[str, str]]:
    """(kind, trigger) re-runs asked for while the lease was held; each is handed out once."""
    found = []
    for kind in (SyncKind.CONTACTS, SyncKind.CALENDAR, SyncKind.TASKS, SyncKind.EMAIL):
        name = _rerun_field(kind)
        trigger = (
            UserLease.objects.filter(sync_user_id=user_id).exclude(**{name: ""}).values_list(name, flat=True)
        ).first()
        # Clear only the value we read: a request arriving in between is kept for the next pass.
        if trigger and UserLease.objects.filter(sync_user_id=user_id, **{name: trigger}).update(**{name: ""}):
            found.append((kind.value, trigger))
    return found


def close_orphaned_runs(user_id: int) -> int:
    """Runs left "running" by a worker that died. Call only while holding the user's lease:
    then no other pass of this mailbox can be running."""
    return SyncRun.objects.filter(sync_user_id=user_id, outcome=Outcome.RUNNING).update(
        outcome=Outcome.FAILED,
        finished_at=timezone.now(),
        error="The worker running this pass stopped before it finished; the next pass takes over.",
    )


def take_reruns_of(user_id: int, kind: str) -> None:
    """Drop this kind's re-run request: the pass that asked for it is about to run itself."""
    UserLease.objects.filter(sync_user_id=user_id).update(**{_rerun_field(kind): ""})
