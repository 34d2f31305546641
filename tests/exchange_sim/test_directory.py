"""ConvertId, ResolveNames, and ErrorInvalidOperation for what the simulator does not implement."""

from __future__ import annotations

import pytest
from exchangelib.errors import ErrorInvalidOperation, ErrorNameResolutionNoResults
from exchangelib.properties import AlternateId, Mailbox

from exchange_sim import Simulator


@pytest.mark.parametrize("fmt", ["EwsLegacyId", "EntryId", "HexEntryId", "StoreId", "OwaId"])
def test_convert_id_round_trips_every_format(account, exchange_sim: Simulator, fmt):
    made = exchange_sim.user("alice@contoso.example").create_contact(GivenName="Id")
    [converted] = account.protocol.convert_ids([AlternateId(id=made.id, format="EwsId", mailbox="alice@contoso.example")], fmt)
    assert converted.format == fmt
    [back] = account.protocol.convert_ids([converted], "EwsId")
    assert back.id == made.id
    assert account.contacts.get(id=back.id).given_name == "Id"


def test_resolve_names_finds_mailboxes(account):
    [bob] = account.protocol.resolve_names(["bob@contoso.example"])
    assert bob == Mailbox(name="Bob", email_address="bob@contoso.example", routing_type="SMTP", mailbox_type="Mailbox")
    [nothing] = account.protocol.resolve_names(["nobody-at-all"])
    assert isinstance(nothing, ErrorNameResolutionNoResults)


def test_resolve_names_searches_the_callers_contacts(exchange_sim: Simulator, connect_to):
    exchange_sim.user("alice@contoso.example").create_contact(
        GivenName="Zed", Surname="Zulu", EmailAddresses={"EmailAddress1": "zed@fabrikam.example"}
    )
    own = connect_to(exchange_sim, credentials=("alice@contoso.example", "alice-password"), impersonation=False)
    [(mailbox, contact)] = own.protocol.resolve_names(["zed"], return_full_contact_data=True)
    assert (mailbox.email_address, mailbox.mailbox_type) == ("zed@fabrikam.example", "Contact")
    assert contact.surname == "Zulu"


def test_resolve_names_returns_every_candidate(account):
    names = account.protocol.resolve_names(["a"])
    assert "alice@contoso.example" in {m.email_address for m in names}


def test_an_unimplemented_operation_is_error_invalid_operation(account):
    with pytest.raises(ErrorInvalidOperation):
        list(account.protocol.get_roomlists())
    with pytest.raises(ErrorInvalidOperation):
        account.oof_settings  # noqa: B018
