"""Graph's routing answers each request with parameters of its own, finds routes registered after a
path was routed, and keeps telling a wrong method (405) from an unknown path."""

from __future__ import annotations

import pytest

from exchange_sim.graph import api, events  # noqa: F401  (events registers its routes)
from exchange_sim.graph.errors import GraphError


def test_the_same_path_routes_alike_with_parameters_of_its_own():
    segments = api.split_path("/users/ann%40contoso.example/events/AAMk")
    assert segments == ["users", "ann@contoso.example", "events", "AAMk"]
    first, second = api.match("GET", segments), api.match("GET", list(segments))
    assert first is not None and second is not None and first[0] is second[0]
    assert first[1] == second[1] == {"user": "ann@contoso.example", "id": "AAMk"}
    first[1]["id"] = "changed"
    segments.append("changed")
    assert api.match("GET", api.split_path("/users/ann%40contoso.example/events/AAMk"))[1]["id"] == "AAMk"


def test_a_route_registered_after_a_path_was_routed_is_found(monkeypatch):
    path = api.split_path("/users/ann@contoso.example/simTestThing")
    assert api.match("GET", path) is None
    monkeypatch.setattr(api, "ROUTES", list(api.ROUTES))
    api.route("GET", "users/{user}/simTestThing", "graph.test")(lambda request: api.no_content())
    found = api.match("GET", path)
    assert found is not None and found[0].operation == "graph.test" and found[1] == {"user": "ann@contoso.example"}


def test_a_wrong_method_is_told_from_an_unknown_path_each_time():
    for _ in range(2):
        with pytest.raises(GraphError) as raised:
            api.match("PUT", api.split_path("/users/ann@contoso.example/events"))
        assert raised.value.status == 405
        assert api.match("GET", api.split_path("/users/ann@contoso.example/nothingHere")) is None
