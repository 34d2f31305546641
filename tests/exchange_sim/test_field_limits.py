"""Length limits of string properties: Exchange cuts a subject at 255 characters and refuses a longer name part.

Sent as raw SOAP: exchangelib checks the same limits before sending."""

from __future__ import annotations

from lxml import etree

from exchange_sim import Simulator

from .test_schema import post

M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"
T = "{http://schemas.microsoft.com/exchange/services/2006/types}"


def create(sim: Simulator, item_xml: str, folder: str) -> str:
    status, answer = post(
        sim,
        f'<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId><t:DistinguishedFolderId Id="{folder}"/>'
        f"</m:SavedItemFolderId><m:Items>{item_xml}</m:Items></m:CreateItem>",
    )
    assert status == 200
    return etree.fromstring(answer).find(f".//{T}ItemId").get("Id")


def update(sim: Simulator, item_id: str, kind: str, field: str, value: str) -> str:
    status, answer = post(
        sim,
        '<m:UpdateItem ConflictResolution="AlwaysOverwrite" MessageDisposition="SaveOnly"><m:ItemChanges><t:ItemChange>'
        f'<t:ItemId Id="{item_id}"/><t:Updates><t:SetItemField><t:FieldURI FieldURI="{field}"/>'
        f"<t:{kind}><t:{field.split(':')[1]}>{value}</t:{field.split(':')[1]}></t:{kind}></t:SetItemField></t:Updates>"
        "</t:ItemChange></m:ItemChanges></m:UpdateItem>",
    )
    assert status == 200
    return etree.fromstring(answer).findtext(f".//{M}ResponseCode")


def test_a_subject_longer_than_255_characters_is_cut(exchange_sim: Simulator):
    item_id = create(exchange_sim, f"<t:Message><t:Subject>{'s' * 300}</t:Subject></t:Message>", "drafts")
    alice = exchange_sim.user("alice@contoso.example")
    assert alice.get(item_id).subject == "s" * 255
    assert update(exchange_sim, item_id, "Message", "item:Subject", "t" * 4000) == "NoError"
    assert alice.get(item_id).subject == "t" * 255


def test_a_contact_name_part_longer_than_255_characters_is_refused_on_update(exchange_sim: Simulator):
    item_id = create(exchange_sim, "<t:Contact><t:GivenName>Ann</t:GivenName><t:Surname>Lee</t:Surname></t:Contact>", "contacts")
    assert update(exchange_sim, item_id, "Contact", "contacts:Surname", "x" * 256) == "ErrorPropertyUpdate"
    assert update(exchange_sim, item_id, "Contact", "contacts:Surname", "y" * 255) == "NoError"
    assert exchange_sim.user("alice@contoso.example").get(item_id).props["Surname"] == "y" * 255
