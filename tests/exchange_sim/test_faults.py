"""Each switchable fault produces the exchangelib exception a real server's answer produces."""

from __future__ import annotations

import datetime

import pytest
from exchangelib.errors import (
    ErrorExceededConnectionCount,
    ErrorInvalidSyncStateData,
    ErrorMailboxMoveInProgress,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    UnauthorizedError,
)

from .conftest import connect


def count(account) -> int:
    return account.contacts.all().count()


def test_server_busy_carries_the_back_off(exchange_sim, account):
    exchange_sim.faults.server_busy(times=1, back_off_ms=1500, operation="FindItem")
    with pytest.raises(ErrorServerBusy) as raised:
        count(account)
    assert raised.value.back_off == 1.5
    assert count(account) == 0


def test_server_busy_applies_only_to_the_named_mailbox(exchange_sim):
    exchange_sim.faults.server_busy(times=None, mailbox="bob@contoso.example")
    assert count(connect(exchange_sim, "alice@contoso.example")) == 0
    with pytest.raises(ErrorServerBusy):
        count(connect(exchange_sim, "bob@contoso.example"))
    exchange_sim.faults.clear()
    assert count(connect(exchange_sim, "bob@contoso.example")) == 0


def test_http_503_becomes_server_busy(exchange_sim, account):
    account.contacts  # noqa: B018 - resolve the folder before arming the fault
    exchange_sim.faults.http_503(times=1)
    with pytest.raises(ErrorServerBusy):
        count(account)


def test_a_401_burst_is_unauthorized(exchange_sim, account):
    account.contacts  # noqa: B018
    exchange_sim.faults.unauthorized(times=1)
    with pytest.raises(UnauthorizedError):
        count(account)
    assert count(account) == 0


def test_a_dropped_connection_is_a_timeout_for_a_single_connection_client(exchange_sim):
    account = connect(exchange_sim, max_connections=1)
    account.contacts  # noqa: B018
    exchange_sim.faults.drop_connection(times=1)
    with pytest.raises((ErrorTimeoutExpired, ErrorServerBusy)):
        count(account)
    assert count(account) == 0


def test_a_mailbox_move_is_error_mailbox_move_in_progress(exchange_sim, account):
    exchange_sim.faults.mailbox_move("alice@contoso.example")
    with pytest.raises(ErrorMailboxMoveInProgress):
        count(account)


def test_the_invalid_sync_state_switch(exchange_sim, account):
    exchange_sim.faults.invalid_sync_state()
    with pytest.raises(ErrorInvalidSyncStateData):
        list(account.contacts.sync_items())


def test_beyond_the_connection_limit_is_error_exceeded_connection_count(exchange_sim):
    account = connect(exchange_sim, max_connections=1)
    account.contacts  # noqa: B018
    exchange_sim.faults.max_connections_per_account = 0
    with pytest.raises(ErrorExceededConnectionCount):
        count(account)


def test_latency_is_added_to_each_request(exchange_sim, account):
    exchange_sim.faults.latency_ms = 5
    assert count(account) == 0
    assert exchange_sim.faults.describe()["latency_ms"] == 5


def test_counters_count_per_operation_and_mailbox(exchange_sim, account):
    count(account)
    assert exchange_sim.counters["FindItem"] == 1
    assert exchange_sim.counters.for_mailbox("alice@contoso.example", "FindItem") == 1
    assert exchange_sim.counters.total() >= 2
    exchange_sim.counters.reset()
    assert exchange_sim.counters.snapshot() == {}


def test_a_throttling_budget_answers_server_busy_until_the_window_moves(exchange_sim, account):
    exchange_sim.clock.set(datetime.datetime(2027, 1, 4, 9, tzinfo=datetime.UTC), frozen=True)
    account.contacts  # noqa: B018
    exchange_sim.faults.budget(requests=2, per_seconds=60)
    count(account)
    count(account)
    with pytest.raises(ErrorServerBusy) as raised:
        count(account)
    assert 0 < raised.value.back_off <= 60
    exchange_sim.clock.advance(datetime.timedelta(seconds=61))
    assert count(account) == 0
