"""Resolver: core's compiled mapping snapshot from Python (the same answers as every Heimdall frontend)."""

import json

import pytest

import heimdall
from heimdall import InvalidInput, Resolver

MAPPINGS = [
    {"id": 10, "method": "GET", "path_pattern": "/courses/:id", "action": "course:read", "owner_group": "go:courses"},
    {"id": 11, "method": "POST", "path_pattern": "/courses/:id/enroll", "action": "course:enroll"},
    {"id": 12, "method": "GET", "path_pattern": "/files/**", "action": "file:read"},
    {"id": 13, "method": "ANY", "path_pattern": "/admin/*", "action": "admin:any"},
]


def test_a_hit_carries_the_mapping_and_its_parameters() -> None:
    r = Resolver(MAPPINGS, version=7)
    m = r.resolve("GET", "/courses/42")
    assert m is not None
    assert (m.mapping_id, m.action, m.path_pattern, m.owner_group) == (10, "course:read", "/courses/:id", "go:courses")
    assert m.params == {"id": "42"}
    assert r.version == 7 and len(r) == 4


def test_methods_wildcards_and_misses() -> None:
    r = Resolver(MAPPINGS)
    enroll = r.resolve("POST", "/courses/42/enroll")
    assert enroll is not None and enroll.action == "course:enroll"
    deep = r.resolve("GET", "/files/a/b/c.txt")
    assert deep is not None and deep.action == "file:read"
    any_method = r.resolve("DELETE", "/admin/users")
    assert any_method is not None and any_method.action == "admin:any"
    assert r.resolve("DELETE", "/courses/42") is None
    assert r.resolve("GET", "/nothing/here") is None
    # A query string is not part of the path.
    q = r.resolve("GET", "/courses/42?x=1")
    assert q is not None and q.params == {"id": "42"}


@pytest.mark.parametrize(
    "path",
    ["/courses/%2e%2e/admin", "/courses/1/../2", "/courses//1", "/courses/%2F1", "courses/1", "/courses/./1"],
)
def test_a_path_a_router_could_read_differently_is_refused_not_rewritten(path: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Resolver(MAPPINGS).resolve("GET", path)
    assert refused.value.status == 400 and refused.value.code == "invalid_input"
    assert "path rejected" in str(refused.value)


def test_ids_default_to_positions_and_priority_to_zero() -> None:
    r = Resolver([{"method": "GET", "path_pattern": "/a/:x", "action": "a:read"},
                  {"method": "GET", "path_pattern": "/b", "action": "b:read"}])
    b = r.resolve("GET", "/b")
    assert b is not None and b.mapping_id == 2


@pytest.mark.parametrize(
    "bad",
    [
        [{"method": "FETCH", "path_pattern": "/a", "action": "a:read"}],
        [{"method": "GET", "path_pattern": "no-slash", "action": "a:read"}],
        [{"method": "GET", "path_pattern": "/a", "action": ""}],
        [{"method": "GET", "path_pattern": "/a"}],
        [{"method": "GET", "path_pattern": "~/a/(", "action": "a:read"}],
    ],
)
def test_bad_mappings_are_invalid_input(bad: list[dict[str, str]]) -> None:
    with pytest.raises(InvalidInput):
        Resolver(bad)


def test_equal_mappings_conflict_at_build() -> None:
    twice = [{"method": "GET", "path_pattern": "/a/:x", "action": "a:read"},
             {"method": "GET", "path_pattern": "/a/:y", "action": "a:write"}]
    with pytest.raises(heimdall.HeimdallError):
        Resolver(twice)


def test_the_export_body_of_heimdall_http_loads() -> None:
    body = {"version": 3, "mappings": [
        {"id": 5, "method": "GET", "path_pattern": "/x/:id", "action": "x:read", "owner_group": None, "priority": 0},
    ]}
    for given in (json.dumps(body), json.dumps(body).encode()):
        r = Resolver.from_export_json(given)
        m = r.resolve("GET", "/x/1")
        assert r.version == 3 and m is not None and m.mapping_id == 5
    with pytest.raises(InvalidInput):
        Resolver.from_export_json("{not json")


def test_an_unreachable_export_is_unavailable() -> None:
    # Port 9 on loopback: nothing listens there.
    with pytest.raises(heimdall.Unavailable):
        Resolver.from_export("http://127.0.0.1:9", "hk_nothing", timeout=2.0)


def test_error_classes_share_one_base_with_codes_and_statuses() -> None:
    expected = {
        heimdall.InvalidInput: ("invalid_input", 400),
        heimdall.Unauthenticated: ("unauthenticated", 401),
        heimdall.Forbidden: ("forbidden", 403),
        heimdall.NotFound: ("not_found", 404),
        heimdall.Conflict: ("conflict", 409),
        heimdall.Unavailable: ("unavailable", 503),
        heimdall.ConfigError: ("config", 500),
        heimdall.UnexpectedError: ("unexpected", 500),
    }
    for cls, (code, status) in expected.items():
        assert issubclass(cls, heimdall.HeimdallError)
        assert (cls.code, cls.status) == (code, status)
