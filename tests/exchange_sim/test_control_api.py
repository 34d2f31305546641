"""The /_sim/ HTTP control API: user-side actions, faults, clock, counters, log."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import UTC, datetime

import pytest
from exchangelib.errors import ErrorServerBusy

from exchange_sim import Simulator


def call(sim: Simulator, path: str, data: dict | None = None) -> object:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(f"{sim.base_url}/_sim/{path}", data=body, method="POST" if body else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_it_creates_edits_and_deletes_a_contact_like_a_user(exchange_sim: Simulator, account):
    made = call(exchange_sim, "mailboxes/alice@contoso.example/contacts", {"props": {"GivenName": "Via", "Surname": "Http"}})
    assert account.contacts.get(id=made["id"]).display_name == "Via Http"
    item_path = "items/" + urllib.parse.quote(made["id"], safe="")  # ids are base64: '/' must be escaped
    edited = call(exchange_sim, f"{item_path}/edit", {"props": {"JobTitle": "CTO"}})
    assert edited["changekey"] != made["changekey"]
    listed = call(exchange_sim, "mailboxes/alice@contoso.example/items?folder=contacts")
    assert [i["props"]["JobTitle"] for i in listed] == ["CTO"]
    call(exchange_sim, f"{item_path}/delete", {"hard": True})
    assert account.contacts.all().count() == 0


def test_it_creates_completes_and_deletes_a_task_like_a_user(exchange_sim: Simulator, account):
    made = call(
        exchange_sim,
        "mailboxes/alice@contoso.example/tasks",
        {"subject": "Call Ann", "props": {"DueDate": "2027-03-10", "Importance": "High", "Status": "InProgress"}},
    )
    task = account.tasks.get(id=made["id"])
    assert (task.subject, task.importance, task.status, str(task.due_date)) == ("Call Ann", "High", "InProgress", "2027-03-10")
    item_path = "items/" + urllib.parse.quote(made["id"], safe="")
    done = call(exchange_sim, f"{item_path}/edit", {"props": {"Status": "Completed"}})
    assert done["props"]["PercentComplete"] == 100.0 and done["props"]["CompleteDate"]
    assert account.tasks.get(id=made["id"]).is_complete
    call(exchange_sim, f"{item_path}/delete", {})
    assert account.tasks.all().count() == 0


def test_it_arms_and_clears_faults(exchange_sim: Simulator, account):
    account.contacts  # noqa: B018
    call(exchange_sim, "faults", {"kind": "server_busy", "times": 1, "back_off_ms": 10})
    with pytest.raises(ErrorServerBusy):
        account.contacts.all().count()
    call(exchange_sim, "faults", {"kind": "server_busy", "times": None})
    assert len(call(exchange_sim, "faults")["armed"]) == 1
    call(exchange_sim, "faults/clear", {})
    assert call(exchange_sim, "faults")["armed"] == []


def test_it_sets_and_moves_the_clock(exchange_sim: Simulator):
    call(exchange_sim, "clock", {"set": "2027-03-28T00:30:00+00:00", "frozen": True})
    assert exchange_sim.clock.now() == datetime(2027, 3, 28, 0, 30, tzinfo=UTC)
    state = call(exchange_sim, "clock", {"advance_seconds": 3600})
    assert state["now"] == "2027-03-28T01:30:00+00:00"
    call(exchange_sim, "clock", {"reset": True})
    assert abs((exchange_sim.clock.now() - datetime.now(UTC)).total_seconds()) < 5


def test_it_reports_counters_and_the_request_log(exchange_sim: Simulator, account):
    call(exchange_sim, "log", {"enabled": True})
    account.contacts.all().count()
    counters = call(exchange_sim, "counters")
    assert counters["FindItem"] == 1
    log = call(exchange_sim, "log")
    assert [e["operation"] for e in log][-1] == "FindItem"
    assert call(exchange_sim, "counters/reset", {}) == {}


def test_it_adds_a_mailbox_that_can_log_in(exchange_sim: Simulator, connect_to):
    call(exchange_sim, "mailboxes", {"address": "zoe@contoso.example", "password": "zoe-pw", "time_zone": "Europe/Berlin"})
    own = connect_to(exchange_sim, "zoe@contoso.example", credentials=("zoe@contoso.example", "zoe-pw"), impersonation=False)
    assert own.contacts.all().count() == 0


def test_times_0_means_until_cleared_in_the_control_api_as_in_the_cli(exchange_sim: Simulator, account):
    from exchange_sim.__main__ import build, parse_args

    cli = build(parse_args(["--mailbox", "x@fabrikam.example", "--fault", "server_busy:0"]))
    assert [f["times"] for f in cli.faults.describe()["armed"]] == [None]
    account.contacts  # noqa: B018
    call(exchange_sim, "faults", {"kind": "server_busy", "times": 0, "back_off_ms": 10})
    for _ in range(3):
        with pytest.raises(ErrorServerBusy):
            account.contacts.all().count()
    assert [f["times"] for f in call(exchange_sim, "faults")["armed"]] == [None]
    call(exchange_sim, "faults/clear", {})
    assert account.contacts.all().count() == 0
