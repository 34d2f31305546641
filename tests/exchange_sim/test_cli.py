"""`python -m exchange_sim` as its own process: endpoint line, demo organisation, state file."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from exchangelib import NTLM, Contact
from exchangelib.errors import ErrorServerBusy

from tests.conftest import PROJECT_DIR

from .conftest import connect


@contextmanager
def running(*args: str) -> Iterator[SimpleNamespace]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange_sim", "--port", "0", *args],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("EWS endpoint: http://127.0.0.1:"), line
        url = line.removeprefix("EWS endpoint: ")
        yield SimpleNamespace(url=url, credentials=("svc@contoso.example", "demo-password"), line=line)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def control(url: str, path: str) -> object:
    base = url.removesuffix("/EWS/Exchange.asmx")
    with urllib.request.urlopen(f"{base}/_sim/{path}", timeout=10) as response:
        return json.load(response)


def test_it_prints_the_endpoint_and_serves_the_demo_organisation():
    with running() as sim:
        assert sim.line.endswith("/EWS/Exchange.asmx")
        account = connect(sim, "erin@contoso.example")
        assert account.contacts.all().count() == 2
        assert account.calendar.all().count() >= 2
        assert control(sim.url, "mailboxes") == [f"{n}@contoso.example" for n in ("alice", "bob", "carol", "dave", "erin")]
        assert control(sim.url, "violations") == []


def test_it_serves_only_the_given_mailboxes_with_the_given_service_account():
    with running("--mailbox", "x@fabrikam.example", "--service-account", "ops@fabrikam.example:s3cret") as sim:
        sim.credentials = ("ops@fabrikam.example", "s3cret")
        assert connect(sim, "x@fabrikam.example").contacts.all().count() == 0
        assert control(sim.url, "mailboxes") == ["x@fabrikam.example"]


def test_a_state_file_keeps_the_store_between_runs(tmp_path):
    state = tmp_path / "state.json"
    with running("--mailbox", "x@fabrikam.example", "--state", str(state)) as sim:
        account = connect(sim, "x@fabrikam.example")
        Contact(folder=account.contacts, account=account, given_name="Kept", display_name="Kept").save()
    assert state.exists()
    with running("--state", str(state)) as sim:
        assert [c.given_name for c in connect(sim, "x@fabrikam.example").contacts.all()] == ["Kept"]


def test_faults_can_be_armed_at_start():
    with running("--mailbox", "x@fabrikam.example", "--fault", "server_busy:1") as sim:
        account = connect(sim, "x@fabrikam.example")
        with pytest.raises(ErrorServerBusy):
            account.contacts.all().count()
        assert account.contacts.all().count() == 0


def test_a_users_file_adds_accounts(tmp_path):
    users = tmp_path / "users.json"
    users.write_text(json.dumps([{"name": "ops@fabrikam.example", "password": "pw", "service_account": True}]))
    with running("--mailbox", "x@fabrikam.example", "--users", str(users)) as sim:
        sim.credentials = ("ops@fabrikam.example", "pw")
        assert connect(sim, "x@fabrikam.example").contacts.all().count() == 0


def test_it_serves_ntlm_when_asked():
    with running("--auth", "ntlm") as sim:
        assert connect(sim, "bob@contoso.example", auth_type=NTLM).contacts.all().count() == 2
