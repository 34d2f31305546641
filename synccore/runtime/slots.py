"""Connection slots: at most N passes at once per EWS service account, over every worker thread,
process and machine (Exchange's EWSMaxConcurrency allows 27 connections per account).

A pass over EWS sends one request at a time, so bounding passes bounds connections. A slot is a row taken,
renewed and released by conditional UPDATEs, as the mailbox lease is (atomic on PostgreSQL and
SQLite, no row locks); the slot of a worker that died expires with the pass's lease time.

Graph needs no slot: its limit (4 requests at once per app and mailbox) already holds because a
mailbox is synchronized by one pass at a time (its lease) and the Graph backend sends at most 4
requests of a mailbox at once.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from urllib.parse import urlsplit

from django.db.models import Q
from django.utils import timezone

from synccore.models import AuthType, Backend, ConnectionSlot, SyncUser


def account_key(user: SyncUser) -> str:
    """The service account a user's passes connect as, or "" when no slot is needed."""
    if user.effective_backend != Backend.EWS:
        return ""
    s = user.environment.settings
    who = s.oauth_client_id if s.auth_type == AuthType.OAUTH2 else s.service_account
    server = urlsplit(s.ews_url).netloc if s.ews_url else s.autodiscover_email.rpartition("@")[2]
    return f"ews {who} {server}".lower()[:300]


def _free(now) -> Q:
    return Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now)


def acquire(account: str, holder: str, limit: int, ttl_s: float) -> bool:
    """Take one free (or expired) slot of the first `limit`; True when this holder has one."""
    now = timezone.now()
    slots = ConnectionSlot.objects.filter(account=account, index__lt=limit)
    free = list(slots.filter(_free(now)).values_list("index", flat=True)[:limit])
    if not free and slots.count() < limit:
        ConnectionSlot.objects.bulk_create(
            [ConnectionSlot(account=account, index=i) for i in range(limit)], ignore_conflicts=True
        )
        free = list(slots.filter(_free(now)).values_list("index", flat=True)[:limit])
    random.shuffle(free)  # threads racing for slots try different rows first
    for index in free:
        # Conditional: another holder taking the same row in between leaves it to them.
        if slots.filter(index=index).filter(_free(now)).update(
            holder=holder, expires_at=now + timedelta(seconds=ttl_s)
        ):
            return True
    return False


def wait_for(account: str, holder: str, limit: int, ttl_s: float, wait_s: float) -> bool:
    """`acquire`, retried until `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    while not acquire(account, holder, limit, ttl_s):
        if time.monotonic() >= deadline:
            return False
        time.sleep(random.uniform(0.1, 0.5))
    return True


def renew(account: str, holder: str, ttl_s: float) -> None:
    ConnectionSlot.objects.filter(account=account, holder=holder).update(
        expires_at=timezone.now() + timedelta(seconds=ttl_s)
    )


def release(account: str, holder: str) -> None:
    ConnectionSlot.objects.filter(account=account, holder=holder).update(holder="", expires_at=None)


def held(account: str) -> int:
    """Slots of `account` held now (status, tests)."""
    return ConnectionSlot.objects.filter(account=account).exclude(_free(timezone.now())).count()
