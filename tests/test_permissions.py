"""Roles on every API endpoint: anonymous / no role / viewer / operator / administrator / superuser.

viewer reads everything; operator also starts, stops, syncs now and tests the connection;
administrator (and a superuser) everything. Anonymous requests answer 401, missing rights 403.
"""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from synccore.models import Conflict, FieldMapping, ItemLink, LoopHold, SyncRun, UnfiledMessage
from synccore.runtime import service as runtime
from synccore.sync.connection import ConnectionReport
from tests.fixtures import factories
from tests.fixtures.api import client_for, user_with_role

pytestmark = pytest.mark.django_db

V, OP, A = "viewer", "operator", "administrator"

# (method, path template, least role that may call it, body)
MATRIX = [
    ("get", "/api/v1/environments/", V, None),
    ("get", "/api/v1/environments/{id}/", V, None),
    ("get", "/api/v1/environments/{id}/status/", V, None),
    ("post", "/api/v1/environments/{id}/start/", OP, None),
    ("post", "/api/v1/environments/{id}/stop/", OP, None),
    ("post", "/api/v1/environments/{id}/sync-now/", OP, {}),
    ("post", "/api/v1/environments/{id}/test-connection/", OP, None),
    ("post", "/api/v1/environments/{id}/switch-backend/", A, {"to": "ews", "dry_run": True}),
    ("post", "/api/v1/environments/{id}/test-mailboxes/", OP, None),
    ("post", "/api/v1/environments/{id}/test-alert/", OP, None),
    ("get", "/api/v1/environments/{environment_pk}/settings/", V, None),
    ("put", "/api/v1/environments/{environment_pk}/settings/", A, {"pull_interval": 20}),
    ("patch", "/api/v1/environments/{environment_pk}/settings/", A, {"pull_interval": 20}),
    ("get", "/api/v1/environments/{environment_pk}/users/", V, None),
    ("post", "/api/v1/environments/{environment_pk}/users/", A, {"mailbox_email": "carol@contoso.example"}),
    ("get", "/api/v1/environments/{environment_pk}/users/{id}/", V, None),
    (
        "put",
        "/api/v1/environments/{environment_pk}/users/{id}/",
        A,
        {"mailbox_email": "alice@contoso.example"},
    ),
    ("patch", "/api/v1/environments/{environment_pk}/users/{id}/", A, {"active": False}),
    ("delete", "/api/v1/environments/{environment_pk}/users/{id}/", A, None),
    ("post", "/api/v1/environments/{environment_pk}/users/{id}/re-enable/", A, None),
    ("post", "/api/v1/environments/{environment_pk}/users/re-enable/", A, {"users": ["alice@contoso.example"]}),
    ("post", "/api/v1/environments/{environment_pk}/users/{id}/confirm-deletions/", A, None),
    ("post", "/api/v1/environments/{environment_pk}/users/{id}/remove-synchronized-items/", A, None),
    ("get", "/api/v1/environments/{environment_pk}/attention/", V, None),
    ("get", "/api/v1/environments/{environment_pk}/attention/{id}/", V, None),
    ("post", "/api/v1/environments/{environment_pk}/attention/{id}/retry/", A, None),
    ("post", "/api/v1/environments/{environment_pk}/attention/unfiled/{unfiled_pk}/dismiss/", A, None),
    ("get", "/api/v1/audit/", V, None),
    ("get", "/api/v1/environments/{environment_pk}/field-mappings/", V, None),
    (
        "post",
        "/api/v1/environments/{environment_pk}/field-mappings/",
        A,
        {"entity": "contact", "crm_field": "department", "exchange_field": "department"},
    ),
    ("get", "/api/v1/environments/{environment_pk}/field-mappings/{id}/", V, None),
    ("put", "/api/v1/environments/{environment_pk}/field-mappings/{id}/", A, {"entity": "contact"}),
    ("patch", "/api/v1/environments/{environment_pk}/field-mappings/{id}/", A, {"position": 3}),
    ("delete", "/api/v1/environments/{environment_pk}/field-mappings/{id}/", A, None),
    ("get", "/api/v1/environments/{environment_pk}/runs/", V, None),
    ("get", "/api/v1/environments/{environment_pk}/runs/{id}/", V, None),
    ("get", "/api/v1/environments/{environment_pk}/conflicts/", V, None),
    ("get", "/api/v1/environments/{environment_pk}/conflicts/{id}/", V, None),
    ("post", "/api/v1/environments/{environment_pk}/conflicts/{id}/resolve/", A, {"keep": "crm"}),
    ("get", "/api/v1/environments/{environment_pk}/items/{kind}/{external_id}/explain/", V, None),
    ("post", "/api/v1/environments/{environment_pk}/items/{kind}/{external_id}/release/", A, None),
]
for _entity in ("companies", "contacts", "employees", "activities"):
    _base = f"/api/v1/environments/{{environment_pk}}/crm/{_entity}/"
    MATRIX += [
        ("get", _base, V, None),
        ("post", _base + "bulk-upsert/", A, []),
        ("get", _base + "{external_id}/", V, None),
        ("put", _base + "{external_id}/", A, {"name": "X", "subject": "X"}),
        ("delete", _base + "{external_id}/", A, None),
    ]

ROLES = {None: -1, "nobody": -1, V: 0, OP: 1, A: 2, "superuser": 2}
ORDER = [V, OP, A]


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setattr(runtime, "test_connection", lambda env_id: ConnectionReport(ok=True))
    env = factories.environment(
        "Production",
        ews_url="http://127.0.0.1:9/EWS/Exchange.asmx",
        auth_type="basic",
        service_account="svc",
        service_password="pw",
        synchronize_activities=True,
    )
    alice = factories.sync_user(env, "alice@contoso.example")
    factories.employee(env, "carol@contoso.example")
    run = SyncRun.objects.create(environment=env, sync_user=alice, kind="calendar")
    activity = factories.activity(env, external_id="X-1")
    link = ItemLink.objects.create(
        environment=env, sync_user=alice, kind="activity", activity=activity, state="failed"
    )
    conflict = Conflict.objects.create(
        link=link, field="subject", crm_value="a", exchange_value="b", choice="crm"
    )
    mapping = FieldMapping.objects.get(environment=env, entity="contact", crm_field="job_title")
    factories.company(env, external_id="X-1")
    factories.contact(env, external_id="X-1")
    factories.employee(env, "x1@contoso.example", external_id="X-1")
    hold = LoopHold.objects.create(
        environment=env, sync_user=alice, pass_kind="calendar", entity="activity", record_id=activity.pk
    )
    unfiled = UnfiledMessage.objects.create(
        environment=env, sync_user=alice, remote_id="AAMk-1", subject="Offer", reason="Too large."
    )
    return {
        "id": env.pk,
        "hold_id": hold.pk,
        "unfiled_id": unfiled.pk,
        "environment_pk": env.pk,
        "user_id": alice.pk,
        "run_id": run.pk,
        "conflict_id": conflict.pk,
        "mapping_id": mapping.pk,
        "link_id": link.pk,
    }


def _path(template: str, ids: dict) -> str:
    path = template.replace("{environment_pk}", str(ids["environment_pk"])).replace("{external_id}", "X-1")
    path = path.replace("{kind}", "activities").replace("{unfiled_pk}", str(ids["unfiled_id"]))
    for segment, key in (
        ("/users/{id}/", "user_id"),
        ("/runs/{id}/", "run_id"),
        ("/conflicts/{id}/", "conflict_id"),
        ("/field-mappings/{id}/", "mapping_id"),
        ("/attention/{id}/", "link_id"),
    ):
        path = path.replace(segment, segment.replace("{id}", str(ids[key])))
    return path.replace("{id}", str(ids["id"]))


def _client(role):
    if role is None:
        return client_for(None)
    if role == "superuser":
        return client_for(user_with_role(None, superuser=True))
    return client_for(user_with_role(None if role == "nobody" else role))


@pytest.mark.parametrize("role", list(ROLES), ids=lambda r: str(r or "anonymous"))
@pytest.mark.parametrize(
    ("method", "template", "least", "body"), MATRIX, ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_endpoint_answers_by_role(world, role, method, template, least, body):
    client = _client(role)
    response = getattr(client, method)(_path(template, world), body, format="json")
    allowed = ROLES[role] >= ORDER.index(least)
    if allowed:
        assert response.status_code not in (401, 403), response.content
    elif role is None:
        assert response.status_code == 401
    else:
        assert response.status_code == 403
    assert response.status_code < 500


def test_the_matrix_covers_every_endpoint_of_the_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    documented = {
        (method, path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == {(method, template) for method, template, _, _ in MATRIX}


# --- the console: the same roles on every page and action ------------------------------------------

# (url name, method, least role, kwargs beyond the environment's pk)
CONSOLE = [
    ("overview", "get", V, {}),
    ("audit", "get", V, {}),
    ("environment", "get", V, {}),
    ("start", "post", OP, {}),
    ("stop", "post", OP, {}),
    ("sync-now", "post", OP, {}),
    ("preview", "post", OP, {}),
    ("test-connection", "post", OP, {}),
    ("switch-backend", "post", A, {}),
    ("test-mailboxes", "post", OP, {}),
    ("test-alert", "post", OP, {}),
    ("re-enable-users", "post", A, {}),
    ("settings", "post", A, {}),
    ("user-add", "get", A, {}),
    ("user-add", "post", A, {}),
    ("user-edit", "get", A, {"user_id": "user_id"}),
    ("user-edit", "post", A, {"user_id": "user_id"}),
    ("user-action", "post", A, {"user_id": "user_id", "action": "re-enable"}),
    ("mapping-add", "post", A, {}),
    ("mapping-save", "post", A, {"mapping_id": "mapping_id"}),
    ("mapping-delete", "post", A, {"mapping_id": "mapping_id"}),
    ("resolve", "post", A, {"conflict_id": "conflict_id"}),
    ("retry", "post", A, {"link_id": "link_id"}),
    ("explain", "get", V, {"kind": "activities", "external_id": "X-1"}),
    ("run", "get", V, {"run_id": "run_id"}),
    ("release-loop", "post", A, {"hold_id": "hold_id"}),
    ("dismiss-unfiled", "post", A, {"unfiled_id": "unfiled_id"}),
    ("settings-preview", "post", A, {}),
    ("mapping-add-preview", "post", A, {}),
    ("mapping-preview", "post", A, {"mapping_id": "mapping_id"}),
]


def _console_url(name: str, kwargs: dict, ids: dict) -> str:
    from django.urls import reverse

    if name in ("overview", "audit"):
        return reverse(f"console:{name}")
    values = {key: ids.get(value, value) for key, value in kwargs.items()}
    return reverse(f"console:{name}", kwargs={"pk": ids["environment_pk"], **values})


@pytest.mark.parametrize("role", list(ROLES), ids=lambda r: str(r or "anonymous"))
@pytest.mark.parametrize(
    ("name", "method", "least", "kwargs"), CONSOLE, ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_console_page_and_action_answers_by_role(client, world, role, name, method, least, kwargs):
    if role == "superuser":
        client.force_login(user_with_role(None, superuser=True))
    elif role is not None:
        client.force_login(user_with_role(None if role == "nobody" else role))
    response = getattr(client, method)(_console_url(name, kwargs, world))
    sent_to_login = response.status_code == 302 and response["Location"].startswith("/login/")
    if ROLES[role] >= ORDER.index(least):
        assert response.status_code != 403 and not sent_to_login, response.status_code
    elif role is None:
        assert sent_to_login
    else:
        assert response.status_code == 403
    assert response.status_code < 500


def test_the_console_matrix_covers_every_console_url():
    from syncadmin.console.urls import urlpatterns

    guarded = {p.name for p in urlpatterns} - {"login", "logout"}
    assert guarded == {name for name, _, _, _ in CONSOLE}
