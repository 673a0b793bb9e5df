"""Refusals the differential check (tests/real/test_embedded_api_matches_the_real_one.py) found worded
or decided otherwise than by kube-apiserver v1.37.2, pinned here with kube-apiserver's answers so they
stay covered where the real binaries are missing: MicroTimes without their six fraction digits, a
legacy Event about another namespace's object, a JSON patch that cannot apply, a body in an unknown
media type."""

from __future__ import annotations

import json

import pytest
from apiserver_helpers import http

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
EVENTS = "/api/v1/namespaces/default/events"
LAYOUT = "2006-01-02T15:04:05.000000Z07:00"


def _lease(renew_time: str) -> bytes:
    return json.dumps({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
                       "spec": {"holderIdentity": "a", "renewTime": renew_time}}).encode()


@pytest.mark.parametrize("renew_time, why", [
    ("2026-01-01T00:00:00Z", f'parsing time "2026-01-01T00:00:00Z" as "{LAYOUT}": cannot parse "Z" as ".000000"'),
    ("2026-01-01T00:00:00.123Z",
     f'parsing time "2026-01-01T00:00:00.123Z" as "{LAYOUT}": cannot parse ".123Z" as ".000000"'),
    ("2026-13-01T00:00:00.000000Z", 'parsing time "2026-13-01T00:00:00.000000Z": month out of range'),
    ("garbage", f'parsing time "garbage" as "{LAYOUT}": cannot parse "garbage" as "2006"'),
])
def test_a_lease_time_without_microseconds_is_a_400(server, renew_time, why):
    code, body = http(server, "POST", LEASES, _lease(renew_time))
    assert (code, body["reason"]) == (400, "BadRequest")
    assert body["message"] == f'Lease in version "v1" cannot be handled as a Lease: {why}'


def test_a_lease_time_with_microseconds_and_an_offset_is_stored(server):
    code, body = http(server, "POST", LEASES, _lease("2026-01-01T00:00:00.123456+01:00"))
    assert code == 201, body


def _event(name: str, involved_namespace: str | None) -> bytes:
    involved = {"kind": "Pod", "name": "p", **({"namespace": involved_namespace} if involved_namespace else {})}
    return json.dumps({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
                       "involvedObject": involved, "reason": "R", "message": "m", "type": "Normal"}).encode()


def test_an_event_about_another_namespaces_object_is_invalid(server):
    code, body = http(server, "POST", EVENTS, _event("e", "other"))
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"] == ('Event "e" is invalid: involvedObject.namespace: Invalid value: "other": '
                               "does not match event.namespace")
    assert http(server, "POST", EVENTS, _event("same", "default"))[0] == 201
    assert http(server, "POST", EVENTS, _event("unset", None))[0] == 201   # allowed in default only


def test_a_json_patch_that_cannot_apply_is_the_plain_422(server):
    created = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}})
    assert http(server, "POST", "/api/v1/namespaces/default/configmaps", created.encode())[0] == 201
    for ops in ([{"op": "test", "path": "/data/k", "value": "no"}], [{"op": "remove", "path": "/data/missing"}]):
        code, body = http(server, "PATCH", "/api/v1/namespaces/default/configmaps/c", json.dumps(ops).encode(),
                          content_type="application/json-patch+json")
        assert (code, body["reason"], body["details"]) == (422, "Invalid", {})
        assert body["message"] == "the server rejected our request due to an error in our request"


def test_a_body_in_an_unknown_media_type_is_a_415_without_details(server):
    code, body = http(server, "POST", "/api/v1/namespaces/default/configmaps", b"x", content_type="text/plain")
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")
    assert "details" not in body
