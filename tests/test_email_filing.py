"""E-mail filing (issue 19, DESIGN §4 E1–E6) over both backends against exchange_sim: the mailbox's
message operations (changes of the Inbox and Sent Items, bodies and attachment names, categories) and
their request budgets."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from syncadmin.models import AuditEntry
from synccore.mailbox.base import InvalidItem, MailMessage
from synccore.models import Activity, ActivityType, Decision, FolderState, Outcome
from synccore.runtime import service
from synccore.sync import email as email_sync
from synccore.sync.connection import backend_for, connection_config, open_user_backend
from synccore.sync.email import EmailFilingDisabled, run_email_pass
from synccore.sync.preview import preview_passes
from synccore.sync.runs import PassContext
from tests.fixtures import factories as f
from tests.fixtures.api import client_for, user_with_role

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


def test_message_subfolders_lists_the_folders_below_the_inbox_at_any_depth(crm, mailbox):
    address = crm.alice.mailbox_email
    crm.mailbox().create_folder("Projects", "inbox")
    crm.mailbox().create_folder("Fabrikam", "inbox/Projects")
    crm.mailbox().create_folder("Archive 2026", "sentitems")
    assert sorted(name for _, name in mailbox.message_subfolders(address, "inbox")) == ["Fabrikam", "Projects"]
    ((folder_id, _),) = mailbox.message_subfolders(address, "sentitems")
    crm.mailbox().receive_message("Moved by a rule", OUTSIDER, folder="sentitems/Archive 2026")
    (message,) = mailbox.message_changes(address, "sentitems", "", folder_id).messages
    assert (message.subject, message.folder, message.ref.folder_id) == ("Moved by a rule", "sentitems", folder_id)


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


# --- The filing pass (E1–E6) ----------------------------------------------------------------------

ANN = "ann@fabrikam.example"


@pytest.fixture
def filing(crm):
    """E-mail filing on, a CRM contact Ann at Fabrikam."""
    crm.configure(file_emails=True)
    fabrikam = f.company(crm.env, "Fabrikam", email="info@fabrikam.example")
    crm.ann = f.contact(crm.env, first_name="Ann", last_name="Lee", email1=ANN, company=fabrikam)
    crm.fabrikam = fabrikam
    return crm


def email_pass(crm, user=None, **ctx):
    run = run_email_pass((user or crm.alice).pk, PassContext(**ctx) if ctx else None)
    assert run.outcome in (Outcome.SUCCESS, Outcome.PARTIAL), run.error
    return run


def filed() -> list[Activity]:
    return list(Activity.objects.filter(type=ActivityType.EMAIL).order_by("pk"))


def test_e1_nothing_is_filed_while_filing_is_off_for_the_environment_or_the_user(filing):
    filing.mailbox().receive_message("Offer", ANN, categories=["CRM"])
    filing.configure(file_emails=False)
    with pytest.raises(EmailFilingDisabled):
        run_email_pass(filing.alice.pk)
    filing.configure(file_emails=True)
    filing.alice.email_enabled = False
    filing.alice.save()
    with pytest.raises(EmailFilingDisabled):
        run_email_pass(filing.alice.pk)
    filing.alice.email_enabled = True
    filing.alice.save()
    email_pass(filing)
    assert [a.subject for a in filed()] == ["Offer"]


def test_e1_messages_before_the_start_day_and_drafts_are_never_filed(filing):
    now = filing.sim.clock.now()
    filing.configure(file_emails_from=(now - timedelta(days=1)).date())
    user = filing.mailbox()
    user.receive_message("Old", ANN, categories=["CRM"], received=now - timedelta(days=3))
    user.receive_message("New", ANN, categories=["CRM"])
    user.create_item("Message", "drafts", Subject="Draft", ToRecipients=[{"EmailAddress": ANN}], Categories=["CRM"])
    email_pass(filing)
    assert [a.subject for a in filed()] == ["New"]


def test_e2_only_marked_messages_are_filed_and_track_all_files_those_with_a_crm_address(filing):
    user = filing.mailbox()
    user.receive_message("Marked", ANN, categories=["CRM"])
    user.receive_message("Unmarked", ANN)
    user.receive_message("Stranger", "who@elsewhere.example")
    email_pass(filing)
    assert [a.subject for a in filed()] == ["Marked"]
    filing.configure(track_all_emails=True)
    user.receive_message("Tracked", "who@elsewhere.example", cc=[ANN])
    user.receive_message("Stranger again", "who@elsewhere.example")
    email_pass(filing)
    assert [a.subject for a in filed()] == ["Marked", "Tracked"]


def test_e1_messages_in_sub_folders_of_the_inbox_and_sent_items_are_filed_too(filing, clock):
    user = filing.mailbox()
    user.create_folder("Customers", "inbox")
    user.receive_message("Filed by a rule", ANN, categories=["CRM"], folder="inbox/Customers")
    email_pass(filing)
    assert [a.subject for a in filed()] == ["Filed by a rule"]
    assert user.messages("inbox/Customers")[0].props["Categories"] == ["CRM", "Filed in CRM"]
    before = filing.mailbox_requests()
    email_pass(filing)
    assert filing.mailbox_requests() - before <= 3  # one request per folder: Inbox, Customers, Sent Items
    user.create_folder("Later", "sentitems")
    user.receive_message("In a new folder", ANN, categories=["CRM"], folder="sentitems/Later")
    user.delete_folder("inbox/Customers")
    email_pass(filing)  # a deleted sub-folder is let go at once
    assert FolderState.objects.filter(sync_user=filing.alice, kind="email").count() == 2
    clock.advance(timedelta(days=1))  # new sub-folders are found when the folders are listed again, daily
    email_pass(filing)
    assert [a.subject for a in filed()] == ["Filed by a rule", "In a new folder"]


def test_e3_an_activity_carries_the_messages_fields_a_capped_body_and_attachment_names_only(filing):
    filing.configure(email_body_limit=10)
    filing.mailbox().receive_message(
        "Offer",
        ANN,
        to=[filing.alice.mailbox_email],
        cc=["carol@contoso.example"],
        body="0123456789 and more",
        categories=["CRM"],
        attachments=[{"name": "offer.pdf", "content": "secret"}],
    )
    email_pass(filing)
    (activity,) = filed()
    assert (activity.direction, activity.subject, activity.body) == ("in", "Offer", "0123456789")
    assert activity.message_id.startswith("<") and activity.sent_at is not None
    assert activity.sender == {"address": ANN, "name": ANN}
    assert [(r["address"], r["type"]) for r in activity.recipients] == [
        (filing.alice.mailbox_email, "to"),
        ("carol@contoso.example", "cc"),
    ]
    assert activity.attachment_names == ["offer.pdf"] and "secret" not in str(activity.__dict__)
    assert (activity.contact, activity.company) == (filing.ann, filing.fabrikam)


def test_e4_outbound_by_the_first_to_inbound_by_the_sender_contact_before_company(filing):
    user = filing.mailbox()
    user.send_message("Quote", ["someone@fabrikam.example", ANN], categories=["CRM"])
    user.receive_message("Question", ANN, categories=["CRM"])
    email_pass(filing)
    by_subject = {a.subject: a for a in filed()}
    quote, question = by_subject["Quote"], by_subject["Question"]
    # Outbound: the first To is no contact, so the company by its domain.
    assert (quote.direction, quote.contact, quote.company) == ("out", None, filing.fabrikam)
    assert quote.organizer == filing.alice.employee
    assert (question.direction, question.contact) == ("in", filing.ann)


def test_e4_several_candidates_of_the_same_rank_file_without_a_link_and_list_them(filing):
    f.contact(filing.env, first_name="Ann", last_name="Other", email2=ANN)
    filing.mailbox().receive_message("Who?", ANN, categories=["CRM"])
    email_pass(filing)
    (activity,) = filed()
    assert (activity.contact, activity.company) == (None, None)
    assert sorted(c["name"] for c in activity.filing_candidates) == ["Ann Lee", "Ann Other"]


def test_e5_a_message_between_two_sync_users_files_once_and_rerunning_files_nothing(filing):
    filing.configure(track_all_emails=True)
    filing.mailbox().send_message("Both", [filing.bob.mailbox_email, ANN], categories=["CRM"])
    email_pass(filing)
    email_pass(filing, filing.bob)
    (activity,) = filed()
    assert activity.direction == "out"
    before = filing.mailbox_requests()
    again = email_pass(filing)
    assert again.created == 0 and filed() == [activity]
    assert filing.mailbox_requests() - before <= 2  # an idle pass: one request per folder
    # Bob's copy was marked too: it gets the filed category without a second activity.
    (bobs,) = filing.mailbox(filing.bob).messages()
    assert "Filed in CRM" in bobs.props["Categories"]


def test_e6_the_filed_category_appears_unmarking_does_not_unfile_and_deleting_the_activity_leaves_the_mailbox(
    filing,
):
    user = filing.mailbox()
    item = user.receive_message("Offer", ANN, categories=["CRM"])
    email_pass(filing)
    assert user.get(item).props["Categories"] == ["CRM", "Filed in CRM"]
    user.categorize(user.get(item), "Filed in CRM")  # the user removes the first category
    email_pass(filing)
    (activity,) = filed()
    activity.delete()  # a filed e-mail leaves a tombstone
    assert filed() == [] and Activity.all_objects.filter(pk=activity.pk).exists()
    user.categorize(user.get(item), "CRM")  # marked again: still filed once
    email_pass(filing)
    assert filed() == [] and user.get(item).subject == "Offer"


def test_e6_filing_500_marked_messages_stays_within_the_request_budget(filing):
    user = filing.mailbox()
    for n in range(500):
        user.receive_message(f"Offer {n}", ANN, categories=["CRM"])
    before = filing.mailbox_requests()
    run = email_pass(filing)
    assert run.created == 500
    used = filing.mailbox_requests() - before
    if not filing.is_graph:
        assert used <= math.ceil(500 / 100) * 2 + 5
    else:
        # A $batch carries 20; delta pages carry 200; the sub-folders are listed once a day.
        assert used <= math.ceil(500 / 20) * 2 + 10
    before = filing.mailbox_requests()
    email_pass(filing)
    assert filing.mailbox_requests() - before <= 2


# --- Kind email in the runtime ---------------------------------------------------------------------


def test_sync_now_kind_email_files_and_a_preview_writes_nothing(filing):
    filing.mailbox().receive_message("Offer", ANN, categories=["CRM"])
    preview = preview_passes(filing.env.name, kind="email")
    assert any("would create “Offer”" in line for line in preview.lines()), preview.lines()
    assert filed() == [] and filing.mailbox().messages()[0].props["Categories"] == ["CRM"]
    out = StringIO()
    call_command("sync_now", environment=filing.env.name, kind="email", stdout=out)
    summary = json.loads(out.getvalue().splitlines()[-1])
    assert summary["created"] == 1 and summary["users"] == 2
    assert [a.subject for a in filed()] == ["Offer"]
    filing.alice.refresh_from_db()
    assert filing.alice.last_email_pass_at is not None
    assert filing.alice.kind_health["email"]["state"] == "healthy"


def test_o1_the_status_shows_the_email_kind_per_user(filing):
    from synccore.runtime import service

    filing.alice.email_enabled = False
    filing.alice.save()
    rows = {row["email"]: row for row in service.status(filing.env.pk)["users"]}
    alice, bob = rows[filing.alice.mailbox_email], rows[filing.bob.mailbox_email]
    assert alice["email"] == filing.alice.mailbox_email  # the address keeps its key
    assert (alice["kinds"]["email"]["enabled"], alice["kinds"]["email"]["state"]) == (False, "inactive")
    assert bob["kinds"]["email"]["state"] == "never_tested"
    assert bob["kinds"]["contacts"] == bob["contacts"]


# --- Reading filed e-mails (API) and ambiguous filings (Needs attention) ----------------------------


def test_e3_filed_emails_are_read_through_the_crm_api_with_updated_since(filing):
    admin_api = client_for(user_with_role("administrator"))
    filing.mailbox().receive_message("Offer", ANN, categories=["CRM"], attachments=["offer.pdf"])
    email_pass(filing)
    url = f"/api/v1/environments/{filing.env.pk}/crm/activities/"
    (body,) = admin_api.get(url, {"type": "email"}).json()["results"]
    assert (body["type"], body["direction"], body["subject"], body["contact_external_id"]) == (
        "email",
        "in",
        "Offer",
        filing.ann.external_id,
    )
    assert body["company_external_id"] == filing.fabrikam.external_id
    assert body["sender"]["address"] == ANN and body["attachment_names"] == ["offer.pdf"]
    assert body["message_id"].startswith("<") and body["recipients"][0]["type"] == "to"
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert admin_api.get(url, {"type": "email", "updated_since": later}).json()["results"] == []


def test_e4_an_ambiguous_filing_is_listed_in_needs_attention_with_its_candidates(filing, client):
    from synccore.runtime import service

    f.contact(filing.env, first_name="Ann", last_name="Other", email1=ANN)
    filing.mailbox().receive_message("Who?", ANN, categories=["CRM"])
    email_pass(filing)
    (waiting,) = service.ambiguous_filings(filing.env.pk)
    assert waiting.subject == "Who?"
    client.force_login(user_with_role("administrator"))
    page = client.get(f"/environments/{filing.env.pk}/?tab=attention").content.decode()
    assert "E-mails filed without a link" in page and "Ann Other" in page
    waiting.contact = filing.ann  # linked in the CRM: the list forgets it
    waiting.save()
    assert service.ambiguous_filings(filing.env.pk) == []


# --- Push (Graph webhooks on the mailbox's messages) --------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.backends("graph")
def test_k14_graph_subscribes_to_the_messages_and_a_marked_message_enqueues_an_email_pass(filing, live_server, settings):
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from synccore.models import GraphSubscription, PushSubscriptionState, SynchronizerState
    from synccore.runtime.push import graph as graph_push

    settings.PUBLIC_BASE_URL = live_server.url
    filing.configure(push_enabled=True, synchronize_activities=False)
    filing.sim.graph.subscriptions.retry_delays = [0.1]
    filing.bob.email_enabled = False
    filing.bob.save()
    filing.env.set_state(SynchronizerState.RUNNING)
    assert graph_push.maintain(filing.env.pk)["created"] == 1
    row = GraphSubscription.objects.get()
    assert (row.sync_user, row.kind, row.state) == (filing.alice, "email", PushSubscriptionState.ACTIVE)
    assert row.resource.endswith("/messages")
    OrmQ.objects.all().delete()
    filing.mailbox().receive_message("Pushed", ANN, categories=["CRM"])
    assert filing.sim.graph.subscriptions.wait_idle()
    pushed = set()
    for queued in OrmQ.objects.all():
        task = SignedPackage.loads(queued.payload)
        if task["func"] == "synccore.tasks.run_pass":
            pushed.add(tuple(task["args"][:3]))
    assert (filing.alice.pk, "email", "push") in pushed
    assert graph_push.maintain(filing.env.pk) == {"created": 0, "renewed": 0, "removed": 0, "failed": 0}


def test_e1_an_environment_that_only_files_emails_can_start(filing):
    filing.configure(synchronize_contacts=False, synchronize_activities=False, file_emails=True)
    assert not any("Turn on" in p for p in filing.settings.connection_problems())
    filing.configure(file_emails=False)
    assert any("e-mail filing" in p for p in filing.settings.connection_problems())


def test_the_console_offers_the_email_filing_settings_and_the_users_switch(filing, client):
    client.force_login(user_with_role("administrator"))
    page = client.get(f"/environments/{filing.env.pk}/?tab=settings").content.decode()
    assert "E-mail filing" in page
    for name in ("file_emails", "file_emails_from", "email_filing_category", "email_filed_category", "track_all_emails",
                 "email_body_limit"):  # fmt: skip
        assert f'name="{name}"' in page, name
    edit = client.get(f"/environments/{filing.env.pk}/users/{filing.alice.pk}/edit/").content.decode()
    assert 'name="email_enabled"' in edit


def test_e3_a_message_that_cannot_be_read_is_an_item_error_never_a_failed_pass(filing, mailbox):
    user = filing.mailbox()
    gone = user.receive_message("Gone meanwhile", ANN, categories=["CRM"])
    user.receive_message("Kept", ANN, categories=["CRM"])
    read = mailbox.get_messages

    def get_messages(address, refs):
        user.delete(gone, hard=True)  # deleted in Outlook between the two reads
        return read(address, refs)

    mailbox.get_messages = get_messages
    run = run_email_pass(filing.alice.pk, None, mailbox)
    assert (run.outcome, run.created, run.skipped) == (Outcome.PARTIAL, 1, 1)
    assert "Gone meanwhile" in run.error
    assert [a.subject for a in filed()] == ["Kept"]
    assert service.unfiled_messages(filing.env.pk) == []  # deleted: nothing left for a person to file
    filing.alice.refresh_from_db()
    assert filing.alice.kind_health["email"]["state"] == "healthy"


# --- Messages that could not be filed, in "Needs attention" (issue 19) --------------------------------

TOO_LARGE = "The message exceeds the maximum supported size."


def refusing(mailbox, subject: str):
    """The mailbox would not give the message of that subject (as Exchange does for a too-large one)."""
    read = mailbox.get_messages

    def get_messages(address, refs):
        results = read(address, refs)
        return [
            InvalidItem(TOO_LARGE, code="ErrorMessageSizeExceeded")
            if isinstance(r, MailMessage) and r.subject == subject
            else r
            for r in results
        ]

    mailbox.get_messages = get_messages
    return mailbox


def attention_page(crm, client) -> str:
    client.force_login(user_with_role("administrator"))
    return client.get(f"/environments/{crm.env.pk}/?tab=attention").content.decode()


def test_a_message_the_mailbox_will_not_give_is_listed_in_needs_attention_with_a_link_and_dismissed(
    filing, mailbox, client
):
    user = filing.mailbox()
    user.receive_message("Huge offer", ANN, categories=["CRM"])
    user.receive_message("Kept", ANN, categories=["CRM"])
    user.receive_message("Not marked", ANN)  # the rules do not file it: normal, never listed
    user.create_item("Message", "drafts", Subject="Draft", ToRecipients=[{"EmailAddress": ANN}], Categories=["CRM"])
    run = run_email_pass(filing.alice.pk, None, refusing(mailbox, "Huge offer"))
    assert (run.outcome, run.created, run.skipped) == (Outcome.PARTIAL, 1, 1)
    assert "Huge offer" in run.error  # still counted in the run, as before

    (unfiled,) = service.unfiled_messages(filing.env.pk)
    assert (unfiled.subject, unfiled.sender, unfiled.folder) == ("Huge offer", ANN, "inbox")
    assert TOO_LARGE in unfiled.reason and "enter it in the CRM by hand" in unfiled.reason
    assert "ItemID=" in unfiled.web_link and "viewmodel=ReadMessageItem" in unfiled.web_link

    page = attention_page(filing, client)
    assert "E-mails that could not be filed" in page
    row = page.split(f'data-unfiled="{unfiled.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "“Huge offer” in alice@contoso.example was not filed." in row
    assert 'data-action="open-message"' in row and 'data-action="dismiss-unfiled"' in row

    api = client_for(user_with_role("administrator"))
    url = f"/api/v1/environments/{filing.env.pk}/attention/"
    (item,) = api.get(url).json()["results"]
    assert (item["kind"], item["state"], item["item"], item["user"]) == (
        "email",
        "unfiled",
        "Huge offer",
        filing.alice.mailbox_email,
    )
    assert TOO_LARGE in item["last_error"] and item["message"]["web_link"] == unfiled.web_link
    assert item["message"]["message_id"].startswith("<")
    assert api.get(url, {"state": "unfiled"}).json()["count"] == 1
    assert api.get(url, {"state": "failed"}).json()["count"] == 0

    response = api.post(f"{url}unfiled/{unfiled.pk}/dismiss/")
    assert response.status_code == 200 and response.json()["subject"] == "Huge offer"
    assert api.get(url).json()["count"] == 0
    assert service.unfiled_messages(filing.env.pk) == []
    assert "E-mails that could not be filed" not in attention_page(filing, client)
    assert AuditEntry.objects.filter(action="item_dismissed", via="api").count() == 1
    assert api.post(f"{url}unfiled/{unfiled.pk}/dismiss/").status_code == 404


def test_an_unfiled_message_leaves_the_list_once_filed_or_deleted_and_returns_when_it_fails_anew(
    filing, mailbox, client
):
    user = filing.mailbox()
    huge = user.receive_message("Huge offer", ANN, categories=["CRM"])
    gone = user.receive_message("Huge invoice", ANN, categories=["CRM"])
    run_email_pass(filing.alice.pk, None, refusing(refusing(mailbox, "Huge offer"), "Huge invoice"))
    assert sorted(m.subject for m in service.unfiled_messages(filing.env.pk)) == ["Huge invoice", "Huge offer"]

    # Dismissed from the console; the person takes the category off and sets it again: it fails anew.
    (offer,) = [m for m in service.unfiled_messages(filing.env.pk) if m.subject == "Huge offer"]
    attention_page(filing, client)
    assert client.post(f"/environments/{filing.env.pk}/unfiled/{offer.pk}/dismiss/").status_code == 302
    assert [m.subject for m in service.unfiled_messages(filing.env.pk)] == ["Huge invoice"]
    user.categorize(huge)
    user.categorize(huge, "CRM")
    run_email_pass(filing.alice.pk, None, mailbox)
    assert sorted(m.subject for m in service.unfiled_messages(filing.env.pk)) == ["Huge invoice", "Huge offer"]

    # Deleted in Outlook: nothing left to file. Marked again once the mailbox gives it: filed.
    user.delete(gone, hard=True)
    user.categorize(huge)
    user.categorize(huge, "CRM")
    email_pass(filing)
    assert [a.subject for a in filed()] == ["Huge offer"]
    assert service.unfiled_messages(filing.env.pk) == []


def test_an_activity_the_crm_refuses_is_listed_with_the_reason(filing, monkeypatch):
    make = email_sync.activity_for

    def activity_for(filing_, message, user, sync_settings):
        if message.subject == "Odd":
            raise ValueError("the start is out of range")
        return make(filing_, message, user, sync_settings)

    monkeypatch.setattr(email_sync, "activity_for", activity_for)
    filing.mailbox().receive_message("Odd", ANN, categories=["CRM"])
    run = email_pass(filing)
    assert (run.created, run.skipped) == (0, 1)
    (unfiled,) = service.unfiled_messages(filing.env.pk)
    assert unfiled.subject == "Odd" and unfiled.reason.startswith("The CRM refused the activity made of it")
    assert "the start is out of range" in unfiled.reason


class FailingCategories:
    """The real backend, except that writing the filed category fails the pass (P2)."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name: str):
        if name == "set_message_categories":
            raise RuntimeError("injected failure before the categories were written")
        return getattr(self._backend, name)


def test_p2_a_failed_pass_records_what_it_wrote_before_the_failure_as_done(filing):
    filing.mailbox().receive_message("Offer", ANN, categories=["CRM"])
    backend = FailingCategories(open_user_backend(filing.alice))
    try:
        run = run_email_pass(filing.alice.pk, backend=backend)
    finally:
        backend._backend.close()
    assert run.outcome == Outcome.FAILED
    assert [a.subject for a in filed()] == ["Offer"]
    recorded = {d.action: d.outcome for d in Decision.objects.filter(run=run)}
    assert recorded == {"create": "done", "update": "failed"}  # filed, but not marked as filed
