"""CRM bulk-upsert at full size (issue 16, finding 5): a batch costs a bounded number of queries
whatever its size (docs/api.md: a full batch is answered well within the server timeout), every
list an item carries is bounded, and a batch is written all together or not at all."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from synccore import crmio
from synccore.models import Activity, Attendee, Contact, SalesGroup
from tests.fixtures import factories
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db



def max_queries(rows: int) -> int:
    """Queries one bulk-upsert may take: the lookups, the transaction and authentication, plus the
    inserts in batches (SQLite takes at most a few hundred parameters per statement, so about 90
    attendee rows per INSERT). Per-item queries would be several per row written."""
    return 40 + rows // 50


def url(env, entity, tail="bulk-upsert/"):
    return f"/api/v1/environments/{env.pk}/crm/{entity}/{tail}"


def meetings(n: int, attendees: int, round_: int = 0) -> list[dict]:
    return [
        {
            "external_id": f"M-{i}",
            "subject": f"Meeting {i} r{round_}",
            "start": f"2026-12-{1 + i % 28:02d}T09:00:00+01:00",
            "end": f"2026-12-{1 + i % 28:02d}T10:00:00+01:00",
            "time_zone": "Europe/Amsterdam",
            "organizer_email": "alice@contoso.example",
            "attendees": [
                {"email": f"guest{(i + k + round_) % 2000}@fabrikam.example", "name": f"Guest {k}"}
                for k in range(attendees)
            ],
        }
        for i in range(n)
    ]


def contacts(n: int, round_: int = 0) -> list[dict]:
    return [
        {
            "external_id": f"P-{i}",
            "last_name": f"Contact {i} r{round_}",
            "emails": [f"p{i}@fabrikam.example"],
            "country": "NL",
            "language": "nl",
            "rep_email": "alice@contoso.example",
            "sales_groups": [f"Group {i % 7}", "All"],
            "favorite_of": ["bob@contoso.example"],
        }
        for i in range(n)
    ]


def post(client, env, entity, items):
    response = client.post(url(env, entity), items, format="json")
    assert response.status_code == 200, response.content[:500]
    return response.json()["results"]


def test_1000_activities_with_10_attendees_each_are_stored_in_a_bounded_number_of_queries(
    admin_api, env, django_assert_max_num_queries
):
    with django_assert_max_num_queries(max_queries(11_000)):
        results = post(admin_api, env, "activities", meetings(1000, 10))
    assert {r["status"] for r in results} == {"created"}
    assert Activity.objects.filter(environment=env).count() == 1000
    assert Attendee.objects.filter(activity__environment=env).count() == 10_000
    # Again, every meeting changed and one attendee of each replaced: still no per-item queries.
    with django_assert_max_num_queries(max_queries(11_000)):
        results = post(admin_api, env, "activities", meetings(1000, 10, round_=1))
    assert {r["status"] for r in results} == {"updated"}
    assert Attendee.objects.filter(activity__environment=env).count() == 10_000
    meeting = admin_api.get(url(env, "activities", "M-3/")).json()
    assert meeting["subject"] == "Meeting 3 r1"
    assert sorted(a["email"] for a in meeting["attendees"]) == sorted(
        f"guest{(3 + k + 1) % 2000}@fabrikam.example" for k in range(10)
    )


def test_1000_contacts_with_groups_and_favorites_are_stored_in_a_bounded_number_of_queries(
    admin_api, env, django_assert_max_num_queries
):
    for round_, status in ((0, "created"), (1, "updated")):
        # a contact, 2 group memberships and a favorite each
        with django_assert_max_num_queries(max_queries(4_000)):
            results = post(admin_api, env, "contacts", contacts(1000, round_))
        assert {r["status"] for r in results} == {status}
    assert SalesGroup.objects.filter(environment=env).count() == 8
    contact = admin_api.get(url(env, "contacts", "P-8/")).json()
    assert (contact["last_name"], contact["sales_groups"]) == ("Contact 8 r1", ["All", "Group 1"])
    assert (contact["rep_email"], contact["favorite_of"]) == ("alice@contoso.example", ["bob@contoso.example"])


@pytest.mark.parametrize(
    ("entity", "name", "limit", "value"),
    [
        ("activities", "attendees", crmio.MAX_ATTENDEES, lambda i: {"email": f"g{i}@fabrikam.example"}),
        ("activities", "exdates", crmio.MAX_EXDATES, lambda i: "2026-12-01T09:00:00+01:00"),
        ("contacts", "sales_groups", crmio.MAX_SALES_GROUPS, lambda i: f"Group {i}"),
        ("contacts", "favorite_of", crmio.MAX_FAVORITES, lambda i: "alice@contoso.example"),
    ],
)
def test_every_list_an_item_carries_is_bounded_with_a_clear_400(admin_api, env, entity, name, limit, value):
    item = {**(meetings(1, 0)[0] if entity == "activities" else {}), "external_id": "X-1"}
    item[name] = [value(i) for i in range(limit + 1)]
    results = post(admin_api, env, entity, [item])
    assert results[0]["status"] == "error" and name in results[0]["errors"], results
    response = admin_api.put(url(env, entity, "X-1/"), item, format="json")
    assert response.status_code == 400 and name in response.json(), response.content[:300]
    assert not crmio.ENTITIES[entity].all_objects.filter(external_id="X-1").exists()


def test_an_external_id_given_twice_in_one_batch_is_an_item_error(admin_api, env):
    results = post(admin_api, env, "contacts", [{"external_id": "P-1"}, {"external_id": "P-1"}])
    assert [r["status"] for r in results] == ["created", "error"]
    assert "external_id" in results[1]["errors"]


def test_a_batch_that_fails_while_written_stores_nothing_and_answers_409(admin_api, env, monkeypatch):
    factories.employee(env, "carol@contoso.example")

    def clash(self):
        Contact.objects.bulk_create([Contact(environment=env, external_id="P-0")])
        raise IntegrityError("duplicate key")

    monkeypatch.setattr(crmio.writing._Batch, "write", clash)
    response = admin_api.post(url(env, "contacts"), contacts(5), format="json")
    assert response.status_code == 409 and "nothing was stored" in response.json()["detail"]
    assert not Contact.all_objects.filter(environment=env).exists()


@pytest.mark.parametrize("zone", ["posixrules", "Factory", "localtime", "posix/Europe/Amsterdam", "right/UTC"])
def test_posixrules_and_factory_are_refused_as_time_zones(admin_api, env, zone):
    item = {**meetings(1, 0)[0], "time_zone": zone}
    results = post(admin_api, env, "activities", [item])
    assert results[0]["status"] == "error" and "time_zone" in results[0]["errors"]
    assert not Activity.all_objects.filter(environment=env).exists()
