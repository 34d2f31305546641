"""Calendar passes at once (issue 17, `run_pass_batch` on threads) send no more requests than
the same passes one after the other.

A pass that reads back its own writes while other passes' invitations land in its calendar moves
its token past them all and leaves those invitations to the next pass (`FolderState.
pending_changes`), which reads them without paging through its own writes again. Counted per
mailbox by the simulator."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from synccore.mailbox.ews import backend as ews_backend
from synccore.mailbox.graph import calendar as graph_calendar
from synccore.models import Attendee, FolderState, SyncKind, SyncUser, Trigger
from synccore.runtime import service as runtime
from synccore.sync.calendar_write import CalendarWriter
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.backends("ews", "graph")]

EVENTS = 4  # per user, every other one a meeting with the two others of its circle
SYNC_PAGES = {"ews": "SyncFolderItems", "graph": "graph.calendarView.delta"}


@pytest.fixture
def start():
    return timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)


def circle(crm, names: str, start) -> list[SyncUser]:
    """Three sync users, each with appointments and meetings inviting the other two."""
    users = []
    for name in names.split():
        crm.sim.add_mailbox(f"{name}@contoso.example")
        users.append(f.sync_user(crm.env, f"{name}@contoso.example"))
    for n, user in enumerate(users):
        for i in range(EVENTS):
            activity = f.activity(
                crm.env, subject=f"{n}-{i}", start=start + timedelta(days=n, hours=i), organizer=user.employee
            )
            if i % 2:
                continue
            Attendee.objects.create(
                activity=activity, email=user.mailbox_email, type="employee", meeting_organizer=True
            )
            for other in users:
                if other != user:
                    Attendee.objects.create(
                        activity=activity, email=other.mailbox_email, employee=other.employee, type="employee", invite=True
                    )
    return users


def passes(users: list[SyncUser], threads: int) -> None:
    ids = [user.pk for user in users]
    assert runtime.run_pass_batch(ids, SyncKind.CALENDAR, Trigger.MANUAL, threads=threads) == ["success"] * len(ids)


def first_passes_at_once(users: list[SyncUser], monkeypatch) -> None:
    """Every pass has read its calendar before any writes, and every pass has written (and sent
    its invitations) before any reads its writes back: the order passes at once may run in, made
    certain (a thread that started late would otherwise read the others' invitations first)."""
    read, wrote = threading.Barrier(len(users), timeout=60), threading.Barrier(len(users), timeout=60)
    create, absorb = CalendarWriter.write_creates, CalendarWriter.absorb_own_writes

    def create_after_the_others_read(writer, *args, **kwargs):
        read.wait()
        return create(writer, *args, **kwargs)

    def absorb_after_the_others_wrote(writer, state):
        wrote.wait()
        absorb(writer, state)

    with monkeypatch.context() as m:
        m.setattr(CalendarWriter, "write_creates", create_after_the_others_read)
        m.setattr(CalendarWriter, "absorb_own_writes", absorb_after_the_others_wrote)
        passes(users, threads=len(users))


def requests_of(crm, users: list[SyncUser], operation: str | None = None) -> int:
    return sum(crm.sim.counters.for_mailbox(user.mailbox_email, operation) for user in users)


def holds_its_events_and_the_invitations(crm, users: list[SyncUser]) -> bool:
    return all(len(crm.mailbox(user).events()) == EVENTS + EVENTS // 2 * (len(users) - 1) for user in users)


def every_invitation_was_read(users: list[SyncUser]) -> bool:
    """K4: an invitee's copy, read and ignored, marks its attendee row synchronized."""
    invited = Attendee.objects.filter(activity__organizer__sync_users__in=users, invite=True)
    return invited.exists() and not invited.filter(synchronized=False).exists()


def test_the_initial_sync_at_once_needs_no_more_requests_than_one_pass_after_the_other(crm, start, monkeypatch):
    crm.configure(meeting_message_limit=0)
    serial, at_once = circle(crm, "ann ben cat", start), circle(crm, "dan eve fay", start)
    crm.sim.counters.reset()
    passes(serial, threads=1)
    passes(serial, threads=1)  # the invitations later passes sent
    first_passes_at_once(at_once, monkeypatch)
    passes(at_once, threads=3)

    assert requests_of(crm, at_once) <= requests_of(crm, serial)
    if not crm.is_graph:
        # A folder is looked up only when a pass first finds its calendar, never to read items.
        assert requests_of(crm, [*serial, *at_once], "GetFolder") == 6
    for users in (serial, at_once):
        assert every_invitation_was_read(users)
        assert holds_its_events_and_the_invitations(crm, users)
    crm.sim.counters.reset()
    passes([*serial, *at_once], threads=3)
    assert requests_of(crm, [*serial, *at_once]) == 6  # quiet: one sync page each


def test_the_pass_after_passes_at_once_reads_the_invitations_without_its_own_writes(crm, start, monkeypatch):
    crm.configure(meeting_message_limit=0)
    # Pages of two items: paging through a pass's own writes again would show.
    monkeypatch.setattr(ews_backend, "SYNC_PAGE", 2)
    monkeypatch.setattr(graph_calendar, "DELTA_PAGE_SIZE", 2)
    users = circle(crm, "dan eve fay", start)
    first_passes_at_once(users, monkeypatch)
    # The invitations the read-back saw wait for the next pass; the token is past them.
    states = FolderState.objects.filter(sync_user__in=users, kind=SyncKind.CALENDAR)
    assert [len(state.pending_changes) for state in states] == [EVENTS // 2 * 2] * 3
    assert not every_invitation_was_read(users)

    crm.sim.counters.reset()
    passes(users, threads=3)
    assert requests_of(crm, users, SYNC_PAGES[crm.backend]) == 3  # one page each, nothing to page through
    assert not FolderState.objects.filter(sync_user__in=users).exclude(pending_changes=[]).exists()
    assert every_invitation_was_read(users)
    assert holds_its_events_and_the_invitations(crm, users)
