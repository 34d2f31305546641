"""Fuzzing the CRM API and Graph's webhooks with hypothesis (issue 16): JSON values with deep
nesting, NUL characters, lone surrogates and huge numbers, in bodies, paths and query strings.
No request ends in a server error, and after each bulk-upsert the database holds all of the items
the answer reports stored, or (on any other answer) nothing new at all.

Full example counts run under CI=true; locally a modest number, so the file stays quick."""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from synccore import crmio
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import user_with_role

pytestmark = pytest.mark.django_db

EXAMPLES = 400 if os.environ.get("CI") == "true" else 30
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CI") != "true",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text as an attacker types it: NUL, lone surrogates, control characters, anything.
nasty_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=30),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "\ufeff", "' OR 1=1 --", "../../etc/passwd", "𝔘𝔫𝔦"]),
)
huge_numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([10**18, -(2**63), 2**64, 99999999999999999999, 1e308]),
)
json_values = st.recursive(
    st.none() | st.booleans() | huge_numbers | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12,
)


def deep(n: int, opener: str = "[") -> str:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return '{"a":' * n + "1" + closer * n
    return opener * n + closer * n


raw_bodies = st.one_of(
    st.integers(min_value=19, max_value=100_000).map(deep),
    st.integers(min_value=19, max_value=5_000).map(lambda n: deep(n, "{")),
    st.just("9" * 5000),
    st.just("[NaN, Infinity]"),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)

FIELDS = {
    "companies": ["name", "country", "synchronize", "email", "comment"],
    "contacts": ["first_name", "emails", "country", "language", "rep_email", "sales_groups", "favorite_of"],
    "employees": ["name", "email", "username"],
    "activities": ["subject", "start", "end", "time_zone", "recurrence", "exdates", "exceptions", "attendees",
                   "reminder_minutes", "organizer_email", "all_day"],
}
GOOD = {
    "name": st.just("Fabrikam"),
    "subject": st.just("Review"),
    "start": st.just("2026-12-01T09:00:00+01:00"),
    "end": st.just("2026-12-01T10:00:00+01:00"),
    "time_zone": st.sampled_from(["Europe/Amsterdam", "UTC", "posixrules", "Factory"]),
    "country": st.sampled_from(["NL", "xx", "nl"]),
    "attendees": st.just([{"email": "guest@fabrikam.example"}]),
    "emails": st.just(["anna@fabrikam.example"]),
}


def items(entity: str):
    def one(external_id, fields):
        return {"external_id": external_id, **fields}

    field_values = st.dictionaries(
        st.sampled_from(FIELDS[entity]),
        json_values,
        max_size=4,
    ).flatmap(
        lambda fuzzed: st.fixed_dictionaries({k: GOOD.get(k, st.just(v)) | st.just(v) for k, v in fuzzed.items()})
    )
    external_ids = st.one_of(st.sampled_from(["X-1", "X-2", "X-3"]), nasty_text, huge_numbers)
    return st.builds(one, external_ids, field_values) | json_values


@pytest.fixture
def admin(db) -> APIClient:
    client = APIClient()
    client.force_authenticate(user_with_role("administrator"))
    return client


def send(client, method: str, path: str, body: str | None = None):
    if body is None:
        return client.generic(method, path)
    return client.generic(method, path, body.encode("utf-8", "surrogatepass"), content_type="application/json")


def stored(env, entity) -> set[str]:
    return set(crmio.ENTITIES[entity].all_objects.filter(environment=env).values_list("external_id", flat=True))


@FUZZ
@given(
    entity=st.sampled_from(sorted(FIELDS)),
    batch=st.one_of(st.lists(st.deferred(lambda: st.sampled_from(sorted(FIELDS)).flatmap(items)), max_size=6)),
    raw=st.none() | raw_bodies,
)
def test_fuzzed_bulk_upserts_never_answer_5xx_and_store_all_valid_items_or_none(admin, env, entity, batch, raw):
    with transaction.atomic():
        before = stored(env, entity)
        body = raw if raw is not None else json.dumps(batch)
        response = send(admin, "POST", f"/api/v1/environments/{env.pk}/crm/{entity}/bulk-upsert/", body)
        assert response.status_code < 500, response.content[:300]
        assert response["Content-Type"].startswith("application/json")
        after = stored(env, entity)
        if response.status_code == 200:
            results = response.json()["results"]
            written = {r["external_id"] for r in results if r["status"] in ("created", "updated")}
            assert written <= after
            assert after - before <= written
        else:
            assert after == before
        transaction.set_rollback(True)


@FUZZ
@given(
    entity=st.sampled_from(sorted(FIELDS)),
    external_id=nasty_text,
    value=json_values,
    raw=st.none() | raw_bodies,
    query=st.dictionaries(st.sampled_from(["external_id", "updated_since", "cursor", "page_size", "include_deleted"]),
                          nasty_text, max_size=3),
)
def test_fuzzed_reads_and_puts_never_answer_5xx(admin, env, entity, external_id, value, raw, query):
    with transaction.atomic():
        path = f"/api/v1/environments/{env.pk}/crm/{entity}/{quote(external_id.encode('utf-8', 'surrogatepass'), safe='')}/"
        body = raw if raw is not None else json.dumps(value)
        for method, target, data in (
            ("PUT", path, body),
            ("GET", path, None),
            ("GET", f"/api/v1/environments/{env.pk}/crm/{entity}/?"
             + "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in query.items()), None),
            ("GET", "/api/v1/audit/?" + "&".join(f"action={quote(v.encode('utf-8', 'surrogatepass'))}" for v in query.values()), None),
        ):
            response = send(admin, method, target, data)
            assert response.status_code < 500, (method, target, response.content[:300])
        transaction.set_rollback(True)


graph_entries = st.lists(
    st.fixed_dictionaries(
        {"subscriptionId": nasty_text | json_values, "clientState": nasty_text | json_values},
        optional={"lifecycleEvent": nasty_text, "resource": nasty_text},
    )
    | json_values,
    max_size=5,
)


@FUZZ
@given(
    path=st.sampled_from(["/hooks/graph/", "/hooks/graph/lifecycle/"]),
    entries=graph_entries,
    raw=st.none() | raw_bodies,
)
def test_fuzzed_webhook_posts_never_answer_5xx(db, path, entries, raw):
    body = raw if raw is not None else json.dumps({"value": entries})
    response = send(APIClient(enforce_csrf_checks=True), "POST", path, body)
    assert response.status_code in (202, 400), response.content[:300]
