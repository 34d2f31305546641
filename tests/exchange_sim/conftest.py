"""Helpers for driving the simulator with the real exchangelib client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from exchangelib import BASIC, DELEGATE, IMPERSONATION, Account, Build, Configuration, Credentials, Version
from exchangelib.protocol import BaseProtocol

from exchange_sim import Simulator

EXCHANGE_2016 = Version(build=Build(15, 1, 2507, 6))
SYNC_ID_SET = "c11ff724-aa03-4555-9952-8fa248a11c3e"


def connect(
    sim: Simulator,
    address: str = "alice@contoso.example",
    *,
    credentials: tuple[str, str] | None = None,
    impersonation: bool = True,
    auth_type: str = BASIC,
    max_connections: int = 2,
) -> Account:
    username, password = credentials or sim.credentials
    config = Configuration(
        service_endpoint=sim.url,
        credentials=Credentials(username, password),
        version=EXCHANGE_2016,
        auth_type=auth_type,
        max_connections=max_connections,
    )
    return Account(
        primary_smtp_address=address,
        config=config,
        autodiscover=False,
        access_type=IMPERSONATION if impersonation else DELEGATE,
    )


@pytest.fixture
def account(exchange_sim: Simulator) -> Account:
    """Alice's mailbox, reached by impersonation through the service account."""
    return connect(exchange_sim)


@pytest.fixture
def connect_to() -> Callable[..., Account]:
    return connect


@pytest.fixture(autouse=True)
def _fresh_exchangelib_sessions() -> None:
    # (exchangelib's protocol cache is cleared when each test's simulators stop: tests/fixtures/exchange_sim.py)
    BaseProtocol.USERAGENT = "exchange_sim-tests"
