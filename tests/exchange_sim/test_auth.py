"""Basic and no auth, impersonation rights, delegate access and unknown mailboxes."""

from __future__ import annotations

import pytest
from exchangelib import NTLM
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorImpersonateUserDenied,
    ErrorNonExistentMailbox,
    UnauthorizedError,
)

from .conftest import connect


def test_the_service_account_impersonates_every_mailbox(exchange_sim):
    for address in ["alice@contoso.example", "erin@contoso.example"]:
        assert connect(exchange_sim, address).contacts.name == "Contacts"


def test_a_wrong_password_is_a_401(exchange_sim):
    with pytest.raises(UnauthorizedError):
        connect(exchange_sim, credentials=("svc@contoso.example", "wrong")).contacts.all().count()


def test_an_ordinary_user_may_not_impersonate(exchange_sim):
    account = connect(exchange_sim, "bob@contoso.example", credentials=("alice@contoso.example", "alice-password"))
    with pytest.raises(ErrorImpersonateUserDenied):
        account.contacts.all().count()


def test_an_ordinary_user_reaches_their_own_mailbox_as_delegate(exchange_sim):
    exchange_sim.user("alice@contoso.example").create_contact(GivenName="Mine")
    account = connect(exchange_sim, credentials=("alice@contoso.example", "alice-password"), impersonation=False)
    assert [c.given_name for c in account.contacts.all()] == ["Mine"]


def test_an_ordinary_user_is_denied_another_mailbox_as_delegate(exchange_sim):
    account = connect(
        exchange_sim, "bob@contoso.example", credentials=("alice@contoso.example", "alice-password"), impersonation=False
    )
    with pytest.raises(ErrorAccessDenied):
        account.contacts.all().count()


def test_an_unknown_address_is_error_non_existent_mailbox(exchange_sim):
    with pytest.raises(ErrorNonExistentMailbox):
        connect(exchange_sim, "nobody@contoso.example").contacts.all().count()


def test_the_service_account_may_also_act_as_delegate(exchange_sim):
    assert connect(exchange_sim, "carol@contoso.example", impersonation=False).contacts.all().count() == 0


def test_no_auth_mode_accepts_anonymous_requests(exchange_sim_factory):
    sim = exchange_sim_factory(auth="none")
    assert connect(sim, credentials=("anyone", "anything")).contacts.all().count() == 0


def test_ntlm_authenticates_once_per_connection(exchange_sim_factory):
    sim = exchange_sim_factory(auth="ntlm")
    account = connect(sim, auth_type=NTLM, max_connections=1)
    assert account.contacts.all().count() == 0
    assert account.contacts.all().count() == 0


def test_ntlm_accepts_the_domain_form_of_the_user(exchange_sim_factory):
    sim = exchange_sim_factory(auth="ntlm")
    account = connect(sim, credentials=("CONTOSO\\svc", "demo-password"), auth_type=NTLM)
    assert account.contacts.name == "Contacts"


def test_ntlm_refuses_a_wrong_password(exchange_sim_factory):
    sim = exchange_sim_factory(auth="ntlm")
    with pytest.raises(UnauthorizedError):
        connect(sim, credentials=("svc@contoso.example", "wrong"), auth_type=NTLM).contacts.all().count()


def test_requests_share_one_keep_alive_connection(exchange_sim):
    account = connect(exchange_sim, max_connections=1)
    for _ in range(5):
        account.contacts.all().count()
    assert exchange_sim.counters["FindItem"] == 5
    assert exchange_sim.counters.connections == 1


def test_ntlm_handshakes_once_for_many_requests_on_a_connection(exchange_sim_factory):
    sim = exchange_sim_factory(auth="ntlm")
    account = connect(sim, auth_type=NTLM, max_connections=1)
    for _ in range(3):
        account.contacts.all().count()
    assert sim.counters.connections == 1
    assert sim.counters["FindItem"] == 3  # handshake legs are not counted as requests


def test_a_client_without_a_configured_version_learns_it_from_the_server(exchange_sim):
    from exchangelib import BASIC, IMPERSONATION, Account, Configuration, Credentials

    config = Configuration(service_endpoint=exchange_sim.url, credentials=Credentials(*exchange_sim.credentials), auth_type=BASIC)
    account = Account("alice@contoso.example", config=config, autodiscover=False, access_type=IMPERSONATION)
    assert (account.version.build.major_version, account.version.build.minor_version) == (15, 1)
    assert account.version.api_version == "Exchange2016"


def test_a_stopped_simulator_hangs_up_its_keep_alive_connections(exchange_sim_factory):
    sim = exchange_sim_factory()
    account = connect(sim, max_connections=1)
    assert account.contacts.all().count() == 0
    sim.stop()
    with pytest.raises(Exception):  # noqa: B017 - any transport error will do; what matters is no answer
        account.contacts.all().count()
