"""Test connection and a failed start, as an administrator reads them: one sentence saying what
failed and what to do, the steps that succeeded, the technical detail one click away (issue 14,
finding 9; O4). Against the simulator over loopback."""

from __future__ import annotations

import pytest

from synccore.models import SyncUser
from synccore.runtime import service as runtime
from tests.fixtures import factories as f
from tests.fixtures.api import client_for, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def missing_mailbox(crm):
    """The environment's only active sync user has no mailbox in Exchange."""
    SyncUser.objects.filter(environment=crm.env).update(active=False)
    f.sync_user(crm.env, "aaron@contoso.example")
    return crm


def test_a_wrong_password_is_one_sentence_with_the_detail_apart(crm):
    crm.sim.faults.unauthorized(times=None)
    report = runtime.test_connection(crm.env.pk)
    assert not report.ok
    assert report.code == "credentials_refused"
    assert report.error.startswith(
        f"Exchange at {crm.settings.ews_url} refused the service account's credentials."
    )
    assert "Check the account and its password in Settings" in report.error
    assert "Error" not in report.error  # no exception class names in the sentence
    assert "UnauthorizedError" in report.detail


def test_a_failed_test_lists_no_connected_step_it_did_not_make(missing_mailbox):
    report = runtime.test_connection(missing_mailbox.env.pk)
    assert not report.ok
    assert report.tried == []
    assert report.code == "mailbox_not_found"
    assert "has no mailbox aaron@contoso.example" in report.error
    assert "ErrorNonExistentMailbox" in report.detail and "ErrorNonExistentMailbox" not in report.error


def test_a_successful_test_lists_what_it_tried(crm):
    report = runtime.test_connection(crm.env.pk)
    assert report.ok and report.tried and not report.error and not report.detail


def test_the_api_answers_the_sentence_the_code_and_the_detail(missing_mailbox):
    api = client_for(user_with_role("operator"))
    body = api.post(f"/api/v1/environments/{missing_mailbox.env.pk}/test-connection/").json()
    assert body["ok"] is False and body["tried"] == []
    assert body["code"] == "mailbox_not_found"
    assert "has no mailbox aaron@contoso.example" in body["error"]
    assert "ErrorNonExistentMailbox" in body["detail"]


def test_the_console_without_javascript_shows_the_sentence_and_hides_the_detail(client, missing_mailbox):
    client.force_login(user_with_role("operator"))
    page = client.post(
        f"/environments/{missing_mailbox.env.pk}/test-connection/", follow=True
    ).content.decode()
    message = page.split('class="message error"', 1)[1].split("</li>", 1)[0]
    assert "Connection failed: Exchange at" in message and "has no mailbox aaron@contoso.example" in message
    assert "Tried:" not in message and "Connected to" not in message
    detail = message.split('<details class="detail">', 1)[1]
    assert "<summary>Details</summary>" in detail and "ErrorNonExistentMailbox" in detail
    assert "ErrorNonExistentMailbox" not in message.split("<details", 1)[0]


def test_a_failed_start_shows_the_sentence_and_only_start(client, missing_mailbox):
    env = missing_mailbox.env
    with pytest.raises(runtime.StartFailed):
        runtime.start(env.pk)
    env.refresh_from_db()
    assert env.state == "failed"
    assert "has no mailbox aaron@contoso.example" in env.state_reason
    assert "ErrorNonExistentMailbox" not in env.state_reason
    client.force_login(user_with_role("operator"))
    page = client.get(f"/environments/{env.pk}/").content.decode()
    head = page.split('class="env-head"', 1)[1].split("</div>", 1)[0]
    start = head.split('data-role="start"', 1)[1].split(">", 1)[0]
    stop = head.split('data-role="stop"', 1)[1].split(">", 1)[0]
    assert "hidden" not in start and "hidden" in stop
