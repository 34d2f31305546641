"""A client that walks away from a stream loses nothing; an id that is no subscription id is ErrorInvalidSubscription."""

from __future__ import annotations

import pytest
from exchangelib.errors import ErrorInvalidSubscription, ErrorSubscriptionNotFound

from exchange_sim import Simulator

from .conftest import connect


def events_until_first(listener, subscription_id: str) -> list[str]:
    notifications = listener.contacts.get_streaming_events(subscription_id, connection_timeout=1, max_notifications_returned=1)
    return [type(e).__name__ for n in notifications for e in n.events]


def test_an_event_after_an_abandoned_stream_comes_on_the_next_one(exchange_sim: Simulator):
    exchange_sim.streaming.seconds_per_minute = 5  # a stream nobody reads any more would stay open 5 s
    alice = exchange_sim.user("alice@contoso.example")
    subscriber = connect(exchange_sim)
    subscription_id = subscriber.contacts.subscribe_to_streaming()
    listener = connect(exchange_sim, max_connections=1)
    made = alice.create_contact(GivenName="Pat")
    # exchangelib stops reading after the first notification and closes that connection
    assert events_until_first(listener, subscription_id) == ["CreatedEvent"]
    alice.edit(made, Surname="Doe")
    assert events_until_first(listener, subscription_id) == ["ModifiedEvent"]


def test_an_id_that_is_no_subscription_id_is_error_invalid_subscription(account):
    with pytest.raises(ErrorInvalidSubscription):
        list(account.contacts.get_streaming_events("AAA-", connection_timeout=1, max_notifications_returned=1))


def test_a_well_formed_unknown_subscription_is_not_found(account):
    subscription_id = account.contacts.subscribe_to_streaming()
    account.contacts.unsubscribe(subscription_id)
    with pytest.raises(ErrorSubscriptionNotFound):
        list(account.contacts.get_streaming_events(subscription_id, connection_timeout=1, max_notifications_returned=1))
