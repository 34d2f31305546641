"""The Microsoft Graph backend's own behaviour (issue 5), against exchange_sim's Graph front end
with real msal and httpx over loopback TLS: tokens, throttling, delta tokens, change keys,
$batch. The rules themselves run over both backends in the contact and calendar suites."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from synccore.mailbox import base, graph
from synccore.mailbox.graph import client
from synccore.models import Activity, Attendee, Contact, Health, Outcome
from synccore.sync import contacts as contact_sync
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.connection import check_connection, connection_config
from tests.fixtures import factories as f

pytestmark = pytest.mark.django_db

ALICE = "alice@contoso.example"


def backend_for(crm) -> graph.GraphBackend:
    return graph.GraphBackend(connection_config(crm.settings))


class TestConnection:
    def test_test_connection_gets_a_token_and_opens_the_mailbox(self, crm_graph):
        report = check_connection(crm_graph.env)
        assert report.ok, report.error
        tried = "\n".join(report.tried)
        assert f"Microsoft Graph {crm_graph.sim.graph_url}" in tried
        assert f"got an application token from {crm_graph.sim.authority}" in tried
        assert f"opened the contacts folder of {ALICE}" in tried

    def test_a_wrong_secret_is_a_readable_credentials_error(self, crm_graph):
        crm_graph.configure(oauth_client_secret="not-the-secret")
        report = check_connection(crm_graph.env)
        assert not report.ok
        assert "refused the application's credentials" in report.error

    def test_a_mailbox_outside_the_application_access_policy_is_access_denied(self, crm_graph):
        crm_graph.sim.graph.add_app("crm-sync", "s3cret", mailboxes=["bob@contoso.example"])
        crm_graph.configure(oauth_client_id="crm-sync", oauth_client_secret="s3cret")
        backend = backend_for(crm_graph)
        with pytest.raises(base.AccessDenied, match="application access policy"):
            backend.check(ALICE)
        assert backend.check("bob@contoso.example")

    def test_an_untrusted_certificate_is_a_permanent_error_that_names_the_ca_bundle(self, crm_graph):
        crm_graph.configure(ca_bundle="")  # the system's trust store does not know the test CA
        with pytest.raises(base.PermanentMailboxError, match="CA bundle"):
            backend_for(crm_graph).check(ALICE)


class TestTokens:
    def test_one_token_serves_every_pass_of_the_process(self, crm_graph):
        first, second = backend_for(crm_graph), backend_for(crm_graph)
        first.check(ALICE)
        second.check(ALICE)
        counters = crm_graph.sim.counters
        assert (counters["graph.openid"], counters["graph.token"]) == (1, 1)
        # Every request on the wire is counted, the token and discovery requests included.
        assert first.requests + second.requests == counters.total()

    def test_an_expired_token_is_refreshed_and_the_call_completes(self, crm_graph):
        backend = backend_for(crm_graph)
        backend.check(ALICE)
        crm_graph.sim.graph.expire_tokens()
        assert backend_for(crm_graph).check(ALICE)
        assert crm_graph.sim.counters["graph.token"] == 2


def make_contacts(crm, count: int, **fields):
    return [f.contact(crm.env, first_name="Ann", last_name=f"Lee {i:04d}", **fields) for i in range(count)]


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The backend's waits for the server, recorded and skipped: its clock jumps instead (the
    simulator's faults are counted, not timed)."""
    recorded: list[float] = []
    skipped = [0.0]

    def sleep(seconds: float) -> None:
        recorded.append(round(seconds, 1))
        skipped[0] += seconds

    monkeypatch.setattr(client, "sleep", sleep)
    monkeypatch.setattr(client, "monotonic", lambda: time.monotonic() + skipped[0])
    return recorded


class TestTokensInPasses:
    def test_a_token_that_expired_between_passes_is_refreshed_and_the_pass_completes(self, crm_graph):
        make_contacts(crm_graph, 2)
        assert crm_graph.contacts_pass().outcome == Outcome.SUCCESS
        crm_graph.sim.graph.expire_tokens()  # msal still holds it; Graph answers 401
        f.contact(crm_graph.env, last_name="After expiry")
        run = crm_graph.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.created == 1
        assert crm_graph.sim.counters["graph.token"] == 2


    def test_a_token_that_expires_under_concurrent_batches_is_fetched_again_once(self, crm_graph, monkeypatch):
        # The refused token is dropped once for all the batches sent with it: neither a token
        # request per batch nor a burst of 401s read as bad credentials.
        crm_graph.configure(batch_size=100)
        f.contact(crm_graph.env, last_name="First")
        assert crm_graph.contacts_pass().outcome == Outcome.SUCCESS  # the token is fetched
        make_contacts(crm_graph, 100)
        create = graph.GraphBackend.create_contacts

        def expiring(self, *args, **kwargs):
            crm_graph.sim.graph.expire_tokens()
            return create(self, *args, **kwargs)

        monkeypatch.setattr(graph.GraphBackend, "create_contacts", expiring)
        crm_graph.sim.counters.reset()
        run = crm_graph.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.created == 100
        assert crm_graph.sim.counters["graph.token"] == 1
        assert len(crm_graph.mailbox().contacts()) == 101


class TestThrottling:
    def test_429_with_retry_after_is_waited_out_and_the_pass_completes(self, crm_graph, waits):
        make_contacts(crm_graph, 5)
        crm_graph.sim.faults.throttled(times=2, retry_after=3, operation="graph.contacts.create")
        run = crm_graph.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.created == 5
        assert waits == [3.0]  # the two throttled creates of the $batch wait once, together
        assert crm_graph.sim.counters.sub_requests("graph.contacts.create") == 5 + 2
        assert len(crm_graph.mailbox().contacts()) == 5

    def test_a_retry_after_beyond_the_longest_wait_backs_the_user_off_for_that_long(self, crm_graph, waits):
        make_contacts(crm_graph, 2)
        crm_graph.sim.faults.throttled(times=1, retry_after=900, operation="graph.contacts.create")
        run = crm_graph.contacts_pass()
        assert run.outcome == Outcome.FAILED and "throttling" in run.error
        assert waits == []
        crm_graph.alice.refresh_from_db()
        assert crm_graph.alice.health == Health.BACKING_OFF
        assert crm_graph.alice.backoff_until >= run.finished_at + timedelta(seconds=899)

    def test_retry_after_is_honoured_per_mailbox_by_the_next_pass_too(self, crm_graph, waits):
        make_contacts(crm_graph, 1)
        crm_graph.sim.faults.throttled(times=1, retry_after=900, operation="graph.contacts.create")
        crm_graph.contacts_pass()  # alice is told to wait 900 s
        crm_graph.sim.counters.reset()
        again = crm_graph.contacts_pass()
        assert again.outcome == Outcome.FAILED and again.requests == 0  # not asked before its time
        assert crm_graph.sim.counters.for_mailbox(ALICE) == 0
        assert crm_graph.contacts_pass(crm_graph.bob).outcome == Outcome.SUCCESS  # bob was not throttled


    def test_writes_go_4_batches_at_once_within_the_mailbox_concurrency(self, crm_graph, monkeypatch):
        # Graph answers 429 beyond 4 requests at once per app and mailbox: the backend sends up
        # to 4 $batch requests together and never a fifth.
        crm_graph.sim.graph.throttling.concurrency = 4
        crm_graph.configure(batch_size=200)
        make_contacts(crm_graph, 200)
        together = threading.Barrier(4, timeout=30)  # passed only if 4 are in flight at once
        in_flight, most, arrived = [0], [0], [0]
        lock = threading.Lock()
        send = client.GraphClient.send

        def counted_send(self, mailbox, method, url, **kwargs):
            if url != "/$batch":
                return send(self, mailbox, method, url, **kwargs)
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
                arrived[0] += 1
                first = arrived[0] <= together.parties
            try:
                if first:
                    with contextlib.suppress(threading.BrokenBarrierError):
                        together.wait()
                return send(self, mailbox, method, url, **kwargs)
            finally:
                with lock:
                    in_flight[0] -= 1

        monkeypatch.setattr(client.GraphClient, "send", counted_send)
        crm_graph.sim.request_log.enabled = True
        run = crm_graph.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.created == 200
        assert not together.broken and most[0] == 4
        assert crm_graph.sim.counters["graph.$batch"] == 10
        assert '"status": 429' not in batch_statuses(crm_graph)
        assert len(crm_graph.mailbox().contacts()) == 200

    def test_a_stricter_concurrency_limit_is_waited_out_and_the_pass_completes(self, crm_graph, waits):
        crm_graph.sim.graph.throttling.concurrency = 1
        crm_graph.sim.faults.latency_ms = 20  # the batches overlap in the simulator
        crm_graph.configure(batch_size=100)
        make_contacts(crm_graph, 100)
        run = crm_graph.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.created == 100
        assert crm_graph.sim.counters.sub_requests("graph.contacts.create") >= 100
        surnames = sorted(i.props["Surname"] for i in crm_graph.mailbox().contacts())
        assert surnames == [f"Lee {i:04d}" for i in range(100)]  # each once
        assert crm_graph.contacts_pass().requests <= 2


    def test_a_batch_lost_among_concurrent_ones_fails_the_pass_and_the_next_makes_nothing_twice(self, crm_graph):
        # The other batches of the round were written: the next pass adopts those by their sync
        # ids and creates only what the lost one carried.
        crm_graph.configure(batch_size=100)
        make_contacts(crm_graph, 100)
        crm_graph.sim.faults.drop_connection(times=1, operation="graph.$batch")
        first = crm_graph.contacts_pass()
        assert first.outcome != Outcome.SUCCESS
        # The batches already under way were written (a queued one is not sent after the error).
        assert 0 < len(crm_graph.mailbox().contacts()) < 100
        again = crm_graph.contacts_pass()
        assert again.outcome == Outcome.SUCCESS
        surnames = sorted(i.props["Surname"] for i in crm_graph.mailbox().contacts())
        assert surnames == [f"Lee {i:04d}" for i in range(100)]


class TestSyncTokens:
    def test_410_gone_leads_to_a_full_reconcile_with_no_duplicates(self, crm_graph):
        make_contacts(crm_graph, 4, job_title="Buyer")
        crm_graph.contacts_pass()
        first, *_ = crm_graph.mailbox().contacts()
        crm_graph.mailbox().edit(first, JobTitle="Edited in Outlook")
        crm_graph.sim.graph.invalidate_delta_tokens()
        run = crm_graph.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and (run.created, run.deleted) == (0, 0)
        assert len(crm_graph.mailbox().contacts()) == 4
        assert crm_graph.mailbox().get(first.id).props["JobTitle"] == "Buyer"  # the edit was seen
        assert crm_graph.contacts_pass().updated == 0  # and the new token holds


class TestChangeKeys:
    def test_a_412_on_a_partial_update_re_writes_the_contact_onto_the_current_version(
        self, crm_graph, monkeypatch
    ):
        (contact,) = make_contacts(crm_graph, 1, job_title="Buyer")
        crm_graph.contacts_pass()
        (item,) = crm_graph.mailbox().contacts()
        contact.job_title = "CFO"
        contact.save()
        original = contact_sync.ContactPass.write_updates

        def outlook_edits_first(self, updates):
            # An Outlook edit after the pass read the folder's changes, before it writes.
            crm_graph.mailbox().edit(item, GivenName="Changed in Outlook")
            return original(self, updates)

        monkeypatch.setattr(contact_sync.ContactPass, "write_updates", outlook_edits_first)
        crm_graph.sim.request_log.enabled = True
        run = crm_graph.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and run.updated == 1
        batches = [e for e in crm_graph.sim.request_log.entries() if e.operation == "graph.$batch"]
        assert any('"status": 412' in e.response for e in batches)  # the stale If-Match was refused
        props = crm_graph.mailbox().get(item.id).props
        assert (props["JobTitle"], props["GivenName"]) == ("CFO", "Ann")  # C6: the CRM wins whole


class TestBatches:
    def test_a_batch_with_an_item_gone_meanwhile_updates_the_others_and_re_creates_it(
        self, crm_graph, monkeypatch
    ):
        contacts = make_contacts(crm_graph, 3, job_title="Buyer")
        crm_graph.contacts_pass()
        Contact.objects.filter(pk__in=[c.pk for c in contacts]).update(job_title="CEO")
        gone = next(i for i in crm_graph.mailbox().contacts() if i.props["Surname"] == "Lee 0001")
        original = contact_sync.ContactPass.write_updates

        def outlook_deletes_first(self, updates):
            crm_graph.mailbox().delete(gone, hard=True)
            return original(self, updates)

        monkeypatch.setattr(contact_sync.ContactPass, "write_updates", outlook_deletes_first)
        run = crm_graph.contacts_pass()
        assert run.outcome == Outcome.SUCCESS and (run.updated, run.created) == (2, 1)
        items = crm_graph.mailbox().contacts()
        assert sorted(i.props["Surname"] for i in items) == ["Lee 0000", "Lee 0001", "Lee 0002"]
        assert {i.props["JobTitle"] for i in items} == {"CEO"}

    def test_writes_go_20_to_a_batch_whatever_the_batch_size(self, crm_graph):
        crm_graph.configure(batch_size=50)
        make_contacts(crm_graph, 45)
        run = crm_graph.contacts_pass()
        assert run.created == 45
        assert crm_graph.sim.counters["graph.$batch"] == 3  # 20 + 20 + 5


@pytest.fixture
def start():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)


def appointment(crm, start, **fields):
    return f.activity(crm.env, start=start, organizer=crm.alice.employee, **fields)


def calendar_pass(crm, user=None):
    return run_calendar_pass((user or crm.alice).pk)


def batch_statuses(crm) -> str:
    return "".join(e.response for e in crm.sim.request_log.entries() if e.operation == "graph.$batch")


class TestCalendar:
    def test_a_412_on_an_event_update_re_reads_it_and_merges_field_by_field(self, crm_graph, start):
        activity = appointment(crm_graph, start, subject="Review", location="Room 1")
        calendar_pass(crm_graph)
        (event,) = crm_graph.mailbox().events()
        crm_graph.mailbox().edit(event, Location="Outlook room")  # Outlook: the location
        activity.subject = "CRM subject"  # the CRM: the subject
        activity.save()
        crm_graph.sim.request_log.enabled = True
        run = calendar_pass(crm_graph)
        # The pass pushes the subject against the version it agreed on last: 412, re-read, again.
        assert '"status": 412' in batch_statuses(crm_graph)
        assert run.outcome == Outcome.SUCCESS and run.conflicts == 0
        remote = crm_graph.mailbox().events()[0].props
        activity.refresh_from_db()
        assert (remote["Subject"], remote["Location"]) == ("CRM subject", "Outlook room")
        assert (activity.subject, activity.location) == ("CRM subject", "Outlook room")
        quiet = calendar_pass(crm_graph)
        assert (quiet.updated, quiet.created) == (0, 0) and quiet.requests <= 2

    def test_410_on_the_calendar_token_reconciles_without_re_creating(self, crm_graph, start):
        appointment(crm_graph, start, subject="Kept")
        f.activity(crm_graph.env, subject="Weekly", start=start, organizer=crm_graph.alice.employee,
                   recurrence="FREQ=WEEKLY;COUNT=4")  # fmt: skip
        crm_graph.mailbox().create_event("Own", start, start + timedelta(hours=1))
        calendar_pass(crm_graph)
        crm_graph.sim.graph.invalidate_delta_tokens()
        run = calendar_pass(crm_graph)
        assert run.outcome == Outcome.SUCCESS and (run.created, run.deleted) == (0, 0)
        assert sorted(e.props["Subject"] for e in crm_graph.mailbox().events()) == ["Kept", "Own", "Weekly"]
        assert Activity.objects.count() == 3
        assert calendar_pass(crm_graph).requests <= 2

    def test_a_series_deleted_whole_in_outlook_is_noticed_though_graph_reports_only_its_occurrences(
        self, crm_graph, start
    ):
        series = f.activity(crm_graph.env, subject="Jour fixe", start=start, organizer=crm_graph.alice.employee,
                            recurrence="FREQ=WEEKLY;COUNT=4")  # fmt: skip
        Attendee.objects.create(activity=series, email=ALICE, type="employee", meeting_organizer=True)
        Attendee.objects.create(activity=series, email="bob@contoso.example", type="employee", invite=True)
        calendar_pass(crm_graph)
        (master,) = crm_graph.mailbox().events()
        crm_graph.mailbox().delete(master, hard=True)
        run = calendar_pass(crm_graph)
        assert run.deleted == 1  # K9: a meeting deleted in Exchange deletes the activity
        assert not Activity.objects.filter(pk=series.pk).exists()

    def test_the_first_pass_writes_20_events_to_a_batch_and_reads_no_event_it_wrote(self, crm_graph, start):
        # The calendar bench's initial pass in small: N events cost ceil(N/20) write requests and
        # a few reads, whatever the batch size; no event is read back one by one.
        crm_graph.configure(batch_size=100)
        for i in range(45):
            appointment(crm_graph, start + timedelta(days=i % 9, hours=i % 7), subject=f"Visit {i}")
        for i in range(15):
            weekly = "FREQ=WEEKLY;COUNT=8"
            appointment(crm_graph, start + timedelta(hours=i % 7), subject=f"Weekly {i}", recurrence=weekly)
        crm_graph.sim.counters.reset()
        run = calendar_pass(crm_graph)
        assert run.outcome == Outcome.SUCCESS and run.created == 60
        counters = crm_graph.sim.counters
        assert counters.sub_requests("graph.events.create") == 60
        # The writes only: the series masters' change keys come from the create answers (the
        # round after the writes lists their occurrences at those keys), none is read again.
        assert counters["graph.$batch"] == 3
        assert counters.sub_requests("graph.events.get") == 0
        # Reads: the calendar, and one delta page before and one after the writes (165 instances).
        assert crm_graph.mailbox_requests() == 3 + 3
        assert calendar_pass(crm_graph).requests <= 2

    def test_events_written_without_invitations_carry_no_attendees_and_send_nothing(self, crm_graph, start):
        # K3 with an organizer who is not a sync user: each invited sync user gets a copy, no mail.
        outsider = f.employee(crm_graph.env, "frank@contoso.example")
        activity = f.activity(crm_graph.env, subject="Fair", start=start, organizer=outsider)
        Attendee.objects.create(activity=activity, email=outsider.email, type="employee", meeting_organizer=True)
        for email in (ALICE, "bob@contoso.example"):
            Attendee.objects.create(activity=activity, email=email, type="employee", invite=True)
        crm_graph.sim.request_log.enabled = True
        calendar_pass(crm_graph)
        calendar_pass(crm_graph, crm_graph.bob)
        for user in (crm_graph.alice, crm_graph.bob):
            (copy,) = crm_graph.mailbox(user).events()
            assert not copy.props.get("RequiredAttendees") and not copy.props.get("IsMeeting")
        creates = [e.request for e in crm_graph.sim.request_log.entries() if '"POST"' in e.request]
        assert creates and all('"attendees"' not in request for request in creates)
        assert '"transactionId"' in creates[0]  # a repeated create is dropped by Graph
