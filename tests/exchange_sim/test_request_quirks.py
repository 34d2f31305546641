"""Requests Exchange takes although they break its XSD, as exchangelib sends them."""

from __future__ import annotations

from exchange_sim import Simulator


def test_a_pull_subscription_with_a_watermark_in_the_messages_namespace_is_taken(account, exchange_sim: Simulator):
    exchange_sim.request_log.enabled = True
    with account.contacts.pull_subscription() as (_, watermark):
        pass
    with account.contacts.pull_subscription(watermark=watermark) as (subscription_id, _):
        assert subscription_id
    subscribe = [e for e in exchange_sim.request_log.entries() if e.operation == "Subscribe"][-1]
    assert "<m:Watermark>" in subscribe.request and subscribe.status == 200
    assert exchange_sim.schema_violations == []
