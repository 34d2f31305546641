"""Graph front end: TLS, the token endpoint (client credentials), msal, bearer tokens, app access policy."""

from __future__ import annotations

from datetime import timedelta

import httpx
import msal
import pytest

from tests.fixtures.exchange_sim import graph_client, graph_token, tls

ALICE = "alice@contoso.example"
SCOPE = "https://graph.microsoft.com/.default"


def token_request(sim, **form):
    data = {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret", "scope": SCOPE}
    data.update(form)
    return httpx.post(sim.token_url, data={k: v for k, v in data.items() if v is not None}, verify=tls(sim))


@pytest.mark.parametrize("authority_check", [{"instance_discovery": False}, {"validate_authority": False}])
def test_msal_accepts_the_simulator_as_authority_and_caches_the_token(exchange_sim, monkeypatch, authority_check):
    # requests (under msal) lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's verify=...;
    # a client that wants its own CA bundle must not leave those set (or pass its own http_client)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    app = msal.ConfidentialClientApplication(
        "demo-client", client_credential="demo-secret", authority=exchange_sim.authority, verify=exchange_sim.ca_bundle, **authority_check
    )
    first = app.acquire_token_for_client([SCOPE])
    assert first["token_type"] == "Bearer" and first["token_source"] == "identity_provider", first
    again = app.acquire_token_for_client([SCOPE])
    assert again["token_source"] == "cache"
    answer = httpx.get(
        f"{exchange_sim.graph_url}/users/{ALICE}/contactFolders",
        headers={"Authorization": f"Bearer {first['access_token']}"},
        verify=tls(exchange_sim),
    )
    assert answer.status_code == 200
    assert exchange_sim.counters["graph.openid"] == 1 and exchange_sim.counters["graph.token"] == 1


def test_the_openid_configuration_names_the_token_endpoint(exchange_sim):
    url = f"{exchange_sim.authority}/v2.0/.well-known/openid-configuration"
    config = httpx.get(url, verify=tls(exchange_sim)).json()
    assert config["token_endpoint"].endswith(f"/{exchange_sim.graph.tenant_id}/oauth2/v2.0/token")
    assert config["authorization_endpoint"].startswith("https://127.0.0.1:")
    assert config["issuer"] == f"https://127.0.0.1:{exchange_sim.graph.port}/{exchange_sim.graph.tenant_id}/v2.0"


def test_a_token_is_a_bearer_token_valid_for_an_hour(exchange_sim):
    answer = token_request(exchange_sim)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599 and body["access_token"].count(".") == 2


def test_the_tenant_is_reachable_by_name_guid_and_domain(exchange_sim):
    for tenant in ("contoso", exchange_sim.graph.tenant_id, "contoso.onmicrosoft.com"):
        url = exchange_sim.token_url.replace("/contoso/", f"/{tenant}/")
        answer = httpx.post(url, data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret", "scope": SCOPE}, verify=tls(exchange_sim))
        assert answer.status_code == 200, tenant


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_secret": None}, 401, "invalid_client", 7000218),
        ({"client_id": "nobody"}, 400, "unauthorized_client", 700016),
        ({"scope": "Contacts.ReadWrite"}, 400, "invalid_scope", 1002012),
        ({"scope": "https://outlook.office365.com/.default"}, 400, "invalid_resource", 500011),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ],
)
def test_bad_token_requests_get_entra_id_errors(exchange_sim, form, status, error, code):
    answer = token_request(exchange_sim, **form)
    assert answer.status_code == status
    body = answer.json()
    assert body["error"] == error and body["error_codes"] == [code] and body["error_description"].startswith(f"AADSTS{code}:")


def test_an_unknown_tenant_is_refused_at_discovery_and_token(exchange_sim):
    discovery = httpx.get(exchange_sim.authority.replace("contoso", "fabrikam") + "/v2.0/.well-known/openid-configuration", verify=tls(exchange_sim))
    assert discovery.status_code == 400 and discovery.json()["error_codes"] == [90002]
    answer = httpx.post(exchange_sim.token_url.replace("contoso", "fabrikam"), data={"grant_type": "client_credentials"}, verify=tls(exchange_sim))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


def graph_error(answer: httpx.Response) -> tuple[int, str, str]:
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "innerError"}
    return answer.status_code, error["code"], error["message"]


def test_graph_without_a_token_or_with_a_forged_one_is_401(exchange_sim):
    url = f"{exchange_sim.graph_url}/users/{ALICE}/contactFolders"
    answer = httpx.get(url, verify=tls(exchange_sim))
    assert graph_error(answer) == (401, "InvalidAuthenticationToken", "Access token is empty.")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer ")
    forged = graph_token(exchange_sim)[:-4] + "AAAA"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {forged}"}, verify=tls(exchange_sim))
    assert graph_error(answer)[:2] == (401, "InvalidAuthenticationToken")


def test_tokens_expire_on_the_simulator_clock(exchange_sim, graph):
    assert graph.get(f"/users/{ALICE}/contactFolders").status_code == 200
    exchange_sim.clock.advance(timedelta(minutes=61))
    answer = graph.get(f"/users/{ALICE}/contactFolders")
    assert graph_error(answer) == (401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
    with graph_client(exchange_sim) as fresh:
        assert fresh.get(f"/users/{ALICE}/contactFolders").status_code == 200


def test_expire_tokens_makes_every_issued_token_fail_at_once(exchange_sim, graph):
    exchange_sim.graph.expire_tokens()
    assert graph.get(f"/users/{ALICE}/contactFolders").status_code == 401
    with graph_client(exchange_sim) as fresh:
        assert fresh.get(f"/users/{ALICE}/contactFolders").status_code == 200


def test_an_app_restricted_to_some_mailboxes_is_denied_the_others(exchange_sim_factory):
    sim = exchange_sim_factory(apps=[("crm-sync", "s3cret", [ALICE])])
    assert sim.graph_app == ("crm-sync", "s3cret")
    with graph_client(sim) as client:
        assert client.get(f"/users/{ALICE}/contactFolders").status_code == 200
        answer = client.get("/users/bob@contoso.example/contactFolders")
    assert graph_error(answer) == (
        403,
        "ErrorAccessDenied",
        "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
    )
    assert token_request(sim).json()["error"] == "unauthorized_client"  # no demo app when apps are given


def test_users_need_a_directory_permission_and_are_found_by_address_or_id(exchange_sim, graph):
    assert graph_error(graph.get(f"/users/{ALICE}"))[:2] == (403, "Authorization_RequestDenied")
    exchange_sim.graph.add_app("reader", "pw", roles=("User.Read.All", "Contacts.ReadWrite"))
    with graph_client(exchange_sim, ("reader", "pw")) as client:
        user = client.get(f"/users/{ALICE}").json()
        assert user["mail"] == ALICE and user["userPrincipalName"] == ALICE
        assert client.get(f"/users/{user['id']}").json()["mail"] == ALICE
        assert graph_error(client.get("/users/nobody@contoso.example")) == (
            404,
            "ErrorInvalidUser",
            "The requested user 'nobody@contoso.example' is invalid.",
        )


def test_me_needs_a_delegated_token(graph):
    assert graph_error(graph.get("/me/contacts"))[:2] == (400, "BadRequest")


def test_unknown_paths_and_methods(graph):
    assert graph_error(graph.get(f"/users/{ALICE}/nonsense"))[:2] == (400, "BadRequest")
    assert graph_error(graph.put(f"/users/{ALICE}/contactFolders", json={}))[:2] == (405, "Request_BadRequest")


def test_graph_requests_are_counted_per_mailbox_and_logged(exchange_sim, graph):
    exchange_sim.counters.reset()
    exchange_sim.request_log.enabled = True
    graph.get(f"/users/{ALICE}/contactFolders")
    graph.get(f"/users/{ALICE}/contactFolders")
    graph.get("/users/bob@contoso.example/contactFolders")
    assert exchange_sim.counters.for_mailbox(ALICE, protocol="graph") == 2
    assert exchange_sim.counters.for_mailbox(ALICE, protocol="ews") == 0
    assert exchange_sim.counters.total(protocol="graph") == 3
    assert exchange_sim.counters["graph.contactFolders.list"] == 3
    entries = exchange_sim.request_log.entries()
    first = entries[0]
    assert (first.protocol, first.operation, first.mailbox, first.status) == ("graph", "graph.contactFolders.list", ALICE, 200)


def test_ews_faults_reach_graph_requests(exchange_sim, graph):
    exchange_sim.faults.http_503(times=1, retry_after=7)
    answer = graph.get(f"/users/{ALICE}/contactFolders")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "7"
    exchange_sim.faults.drop_connection(times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        graph.get(f"/users/{ALICE}/contactFolders")
    assert graph.get(f"/users/{ALICE}/contactFolders").status_code == 200
