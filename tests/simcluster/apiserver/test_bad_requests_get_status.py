"""Malformed requests get the real Status (reason and code) and never take the server down."""

from __future__ import annotations

import json
import socket

from apiserver_helpers import http, pod


def _ok(server) -> None:
    code, body = http(server, "GET", "/api/v1/namespaces/default")
    assert code == 200 and body["metadata"]["name"] == "default"


def _status(body, reason, code):
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["reason"] == reason and body["code"] == code, body


def test_not_json(server):
    code, body = http(server, "POST", "/api/v1/namespaces/default/pods", b"{not json")
    assert code == 400
    _status(body, "BadRequest", 400)
    _ok(server)


def test_wrong_types(server):
    code, body = http(server, "POST", "/api/v1/namespaces/default/pods",
                      json.dumps({"metadata": "oops", "spec": {}}).encode())
    _status(body, "BadRequest", 400)
    assert "cannot unmarshal" in body["message"]
    code, body = http(server, "POST", "/api/v1/namespaces/default/pods", b"[1, 2]")
    _status(body, "BadRequest", 400)
    code, body = http(server, "POST", "/api/v1/namespaces/default/pods",
                      json.dumps({"metadata": {"name": "x"}, "spec": {"containers": "nginx"}}).encode())
    _status(body, "BadRequest", 400)
    _ok(server)


def test_pod_without_containers_is_invalid_naming_the_field(server):
    code, body = http(server, "POST", "/api/v1/namespaces/default/pods",
                      json.dumps({"metadata": {"name": "x"}, "spec": {}}).encode())
    _status(body, "Invalid", 422)
    assert body["message"] == 'Pod "x" is invalid: spec.containers: Required value'
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired", "message": "Required value",
                                          "field": "spec.containers"}]


def test_bad_name_is_invalid(server):
    code, body = http(server, "POST", "/api/v1/namespaces/default/pods", json.dumps(pod("Bad_Name")).encode())
    _status(body, "Invalid", 422)
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "a lowercase RFC 1123 subdomain" in body["message"]


def test_unknown_kind_and_path(server):
    for path in ("/api/v1/widgets", "/apis/example.com/v1/things", "/api/v2/pods", "/nope",
                 "/api/v1/namespaces/default/pods/x/logs"):
        code, body = http(server, "GET", path)
        assert code == 404, path
        _status(body, "NotFound", 404)
    code, body = http(server, "GET", "/api/v1/namespaces/default/pods/ghost")
    _status(body, "NotFound", 404)
    assert body["message"] == 'pods "ghost" not found' and body["details"] == {"name": "ghost", "kind": "pods"}


def test_method_not_allowed(server):
    code, body = http(server, "PUT", "/api/v1/namespaces/default/pods", b"{}")
    _status(body, "MethodNotAllowed", 405)
    code, body = http(server, "POST", "/api/v1/namespaces/default/pods/x", json.dumps(pod("x")).encode())
    _status(body, "MethodNotAllowed", 405)


def test_namespace_must_exist(server):
    code, body = http(server, "POST", "/api/v1/namespaces/nowhere/pods", json.dumps(pod("x", "nowhere")).encode())
    _status(body, "NotFound", 404)
    assert body["message"] == 'namespaces "nowhere" not found'


def test_bad_patches(server):
    http(server, "POST", "/api/v1/namespaces/default/pods", json.dumps(pod("p")).encode())
    path = "/api/v1/namespaces/default/pods/p"
    code, body = http(server, "PATCH", path, b'{"metadata":{}}', "text/plain")
    _status(body, "UnsupportedMediaType", 415)
    code, body = http(server, "PATCH", path, b"{bad", "application/merge-patch+json")
    _status(body, "BadRequest", 400)
    code, body = http(server, "PATCH", path, b'{"op": "add"}', "application/json-patch+json")
    _status(body, "BadRequest", 400)
    code, body = http(server, "PATCH", path, json.dumps([{"op": "remove", "path": "/metadata/nothere"}]).encode(),
                      "application/json-patch+json")
    _status(body, "Invalid", 422)
    code, body = http(server, "PATCH", path, json.dumps([{"op": "test", "path": "/metadata/name", "value": "q"}]).encode(),
                      "application/json-patch+json")
    _status(body, "Invalid", 422)
    code, body = http(server, "PATCH", path, b'{"spec":{"containers":[{"image":"x"}]}}',
                      "application/strategic-merge-patch+json")
    _status(body, "BadRequest", 400)
    _ok(server)


def test_bad_selectors(server):
    for query in ("labelSelector=app%20in%20(a", "labelSelector=a%3D%3D%3Db", "labelSelector=!%3Dx",
                  "fieldSelector=spec.color%3Dred", "fieldSelector=nonsense", "limit=ten", "continue=garbage"):
        code, body = http(server, "GET", f"/api/v1/pods?{query}")
        assert code == 400, query
        _status(body, "BadRequest", 400)
    code, body = http(server, "GET", "/api/v1/pods?fieldSelector=spec.color%3Dred")
    assert body["message"] == "field label not supported: spec.color"


def test_huge_body_is_refused(server):
    big = json.dumps({"metadata": {"name": "big", "annotations": {"x": "a" * (4 * 1024 * 1024)}}}).encode()
    code, body = http(server, "POST", "/api/v1/namespaces/default/configmaps", big)
    _status(body, "RequestEntityTooLarge", 413)
    _ok(server)


def test_garbage_on_the_socket_does_not_kill_the_server(server):
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET /api HTTP/9.9\r\n\r\n", b"POST /api/v1/namespaces/default/pods HTTP/1.1\r\n"
                 b"Content-Length: 100\r\n\r\n{"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(4096)
            except OSError:
                pass
    _ok(server)


def test_stale_delete_precondition_is_conflict(server):
    http(server, "POST", "/api/v1/namespaces/default/pods", json.dumps(pod("p")).encode())
    code, body = http(server, "DELETE", "/api/v1/namespaces/default/pods/p",
                      json.dumps({"preconditions": {"uid": "not-the-uid"}}).encode())
    _status(body, "Conflict", 409)
    assert "Precondition failed: UID in precondition: not-the-uid" in body["message"]


def test_protected_namespace_cannot_be_deleted(server):
    code, body = http(server, "DELETE", "/api/v1/namespaces/default")
    _status(body, "Forbidden", 403)


def test_dry_run_stores_nothing(server):
    code, body = http(server, "POST", "/api/v1/namespaces/default/pods?dryRun=All", json.dumps(pod("dry")).encode())
    assert code == 201 and body["metadata"]["name"] == "dry"
    code, _ = http(server, "GET", "/api/v1/namespaces/default/pods/dry")
    assert code == 404
