"""The Microsoft Graph backend's own behaviour (issue 5), against exchange_sim's Graph front end
with real msal and httpx over loopback TLS: tokens, throttling, delta tokens, change keys,
$batch. The rules themselves run over both backends in the contact and calendar suites."""

from __future__ import annotations

import pytest

from synccore.mailbox import base, graph
from synccore.sync.connection import check_connection, connection_config

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
