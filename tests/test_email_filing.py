"""E-mail filing (issue 19, DESIGN §4 E1–E6) over both backends against exchange_sim: the mailbox's
message operations (changes of the Inbox and Sent Items, bodies and attachment names, categories) and
their request budgets."""

from __future__ import annotations

import math

import pytest

from synccore.mailbox.base import MailMessage
from synccore.sync.connection import backend_for, connection_config

pytestmark = [pytest.mark.django_db, pytest.mark.backends("ews", "graph")]

OUTSIDER = "ann@fabrikam.example"


@pytest.fixture
def mailbox(crm):
    backend = backend_for(connection_config(crm.settings))
    yield backend
    backend.close()


# --- The mailbox interface ------------------------------------------------------------------------


def test_message_changes_read_headers_of_the_inbox_and_sent_items_and_an_idle_folder_costs_one_request(
    crm, mailbox
):
    address = crm.alice.mailbox_email
    crm.mailbox().receive_message("Offer", OUTSIDER, cc=["carol@contoso.example"], categories=["CRM"])
    crm.mailbox().send_message("Quote", [OUTSIDER], categories=["CRM"])
    inbox = mailbox.message_changes(address, "inbox", "")
    (received,) = inbox.messages
    assert (received.subject, received.folder, received.categories) == ("Offer", "inbox", ["CRM"])
    assert received.sender.address == OUTSIDER and [a.address for a in received.cc] == ["carol@contoso.example"]
    assert received.message_id.startswith("<") and not received.is_draft and received.received_at
    sent = mailbox.message_changes(address, "sentitems", "")
    (out,) = sent.messages
    assert (out.subject, out.folder, [a.address for a in out.to], out.sender.address) == (
        "Quote",
        "sentitems",
        [OUTSIDER],
        address,
    )
    before = mailbox.requests
    assert mailbox.message_changes(address, "inbox", inbox.token).messages == []
    assert mailbox.requests - before == 1


def test_e3_get_messages_reads_the_body_as_text_and_attachment_names_only(crm, mailbox):
    address = crm.alice.mailbox_email
    crm.mailbox().receive_message(
        "Offer", OUTSIDER, body={"type": "HTML", "content": "<p>Dear Alice,</p><p>our offer</p>"}, attachments=["offer.pdf"]
    )
    (header,) = mailbox.message_changes(address, "inbox", "").messages
    (message,) = mailbox.get_messages(address, [header.ref])
    assert isinstance(message, MailMessage)
    assert "our offer" in message.body and message.attachment_names == ["offer.pdf"]


def test_e6_set_message_categories_writes_the_whole_list_in_batches(crm, mailbox):
    address = crm.alice.mailbox_email
    for n in range(30):
        crm.mailbox().receive_message(f"M{n}", OUTSIDER, categories=["CRM"])
    page = mailbox.message_changes(address, "inbox", "")
    before = mailbox.requests
    results = mailbox.set_message_categories(address, [(m.ref, [*m.categories, "Filed in CRM"]) for m in page.messages])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    per_request = crm.writes_per_request(crm.settings.batch_size)
    assert mailbox.requests - before <= math.ceil(30 / per_request)
    assert {tuple(m.props["Categories"]) for m in crm.mailbox().messages()} == {("CRM", "Filed in CRM")}
