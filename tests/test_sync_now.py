"""sync_now: the pinned command-line interface."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.fixtures import factories as f

pytestmark = pytest.mark.django_db

KEYS = {"environment", "users", "created", "updated", "deleted", "skipped", "failed", "conflicts", "requests"}


def sync_now(*args: str) -> dict:
    out = StringIO()
    call_command("sync_now", *args, stdout=out, stderr=StringIO())
    last = out.getvalue().strip().splitlines()[-1]
    return json.loads(last)


def test_it_ends_with_one_line_of_json_with_the_summed_counts(crm):
    f.contact(crm.env, last_name="One")
    f.contact(crm.env, last_name="Two", email1="broken")
    result = sync_now("--environment", crm.env.name, "--kind", "contacts")
    assert result.keys() >= KEYS
    assert result["environment"] == crm.env.name
    assert (result["users"], result["created"], result["skipped"]) == (2, 2, 2)
    assert result["requests"] > 0


def test_it_syncs_one_user_when_asked(crm):
    f.contact(crm.env, last_name="One")
    result = sync_now("--environment", crm.env.name, "--user", "ALICE@contoso.example", "--kind", "contacts")
    assert result["users"] == 1
    assert crm.mailbox(crm.bob).contacts() == []


def test_full_rewrites_every_item(crm):
    f.contact(crm.env, last_name="One")
    sync_now("--environment", crm.env.name, "--kind", "contacts")
    result = sync_now("--environment", crm.env.name, "--kind", "contacts", "--full")
    assert result["updated"] == 2


@pytest.mark.parametrize("args", [["--environment", "Nowhere"], ["--user", "zoe@contoso.example"]])
def test_bad_arguments_exit_with_status_2(crm, args):
    if args[0] == "--user":
        args = ["--environment", crm.env.name, *args]
    with pytest.raises(CommandError) as exc:
        call_command("sync_now", *args, stdout=StringIO())
    assert exc.value.returncode == 2


def test_an_aborted_user_pass_exits_with_status_1(crm):
    crm.sim.faults.unauthorized(times=None)
    with pytest.raises(SystemExit) as exc:
        call_command(
            "sync_now",
            "--environment",
            crm.env.name,
            "--kind",
            "contacts",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert exc.value.code == 1


def test_a_pass_failed_on_a_missing_mailbox_counts_as_failed_not_aborted(crm):
    f.sync_user(crm.env, "aaron@contoso.example")  # no such mailbox in Exchange
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exc:
        call_command(
            "sync_now",
            "--environment",
            crm.env.name,
            "--kind",
            "contacts",
            "--user",
            "aaron@contoso.example",
            stdout=out,
            stderr=err,
        )
    assert exc.value.code == 1
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert result.keys() >= KEYS | {"aborted"}
    assert (result["users"], result["failed"], result["aborted"]) == (1, 1, 0)
    assert "aaron@contoso.example contacts: Failed" in err.getvalue()
