"""schemathesis against /api/schema/: generated requests to every operation never get a 5xx,
and every answer (status code, content type, body) matches the schema.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from syncadmin.wsgi import application
from synccore.runtime import service as runtime
from synccore.sync.connection import ConnectionReport
from tests.fixtures import factories
from tests.fixtures.api import user_with_role

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def keep_connection():
    """As Django's test client does: the WSGI app must not close the test's database connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, monkeypatch, keep_connection):
    """A superuser's token and an environment the generated requests mostly point at."""
    monkeypatch.setattr(runtime, "test_connection", lambda env_id: ConnectionReport(ok=True))
    env = factories.environment(
        "Schema",
        ews_url="http://127.0.0.1:9/EWS/Exchange.asmx",
        auth_type="basic",
        service_account="svc",
        service_password="pw",
        synchronize_activities=True,
    )
    factories.sync_user(env, "alice@contoso.example")
    _, key = AuthToken.objects.create(user=user_with_role(None, superuser=True))
    return env.pk, key


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("SCHEMATHESIS_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_api_answers_as_its_schema_says(case, token):
    environment_pk, key = token
    # Point at the real environment, so the operations run their real paths rather than 404.
    if "environment_pk" in (case.path_parameters or {}):
        case.path_parameters["environment_pk"] = environment_pk
    elif case.path_parameters and "id" in case.path_parameters and case.path.count("{") == 1:
        case.path_parameters["id"] = environment_pk
    case.call_and_validate(headers={"Authorization": f"Token {key}"}, checks=CHECKS)
