"""The refusals the differential check compares between the embedded API server and kube-apiserver:
each case is ``name -> (method, path, body, content type)`` for an object name both servers share, and
the configmap of that name exists on both before the request."""

from __future__ import annotations

from tessera.kube import pod_event
from twoservers import CONFIGMAPS, EVENTS, JSON, LEASES, PODS, configmap


def _lease(name: str, **spec: str) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": "a", **spec}}


def _event(name: str, **fields) -> dict:
    return {**pod_event("default", name, "", "Normal", "Checked", "m", "diff", "host"), "metadata": {"name": name},
            **fields}


REFUSALS = {
    "get of a missing object": lambda n: ("GET", f"{CONFIGMAPS}/{n}-missing", None, JSON),
    "get of an unknown resource": lambda n: ("GET", f"/api/v1/namespaces/default/widgets/{n}", None, JSON),
    "an invalid name": lambda n: ("POST", CONFIGMAPS, configmap(n.upper() + "_"), JSON),
    "a body's name unlike the URL's": lambda n: ("PUT", f"{CONFIGMAPS}/{n}", configmap(n + "x"), JSON),
    "a body that is not JSON": lambda n: ("POST", CONFIGMAPS, "{not json", JSON),
    "an unsupported content type": lambda n: ("POST", CONFIGMAPS, "x", "text/plain"),
    "a JSON patch whose test fails": lambda n: ("PATCH", f"{CONFIGMAPS}/{n}",
                                                [{"op": "test", "path": "/data/k", "value": "no"}],
                                                "application/json-patch+json"),
    "an unsupported field selector": lambda n: ("GET", PODS + "?fieldSelector=spec.foo%3Dx", None, JSON),
    "a JSON patch removing a missing key": lambda n: ("PATCH", f"{CONFIGMAPS}/{n}",
                                                      [{"op": "remove", "path": "/data/missing"}],
                                                      "application/json-patch+json"),
    "a delete of a missing object": lambda n: ("DELETE", f"{CONFIGMAPS}/{n}-missing", None, JSON),
    "a create in a missing namespace": lambda n: ("POST", "/api/v1/namespaces/missing/configmaps",
                                                  configmap(n, namespace="missing"), JSON),
    "a Lease's renewTime without microseconds": lambda n: ("POST", LEASES, _lease(n, renewTime="2026-01-01T00:00:00Z"),
                                                            JSON),
    "a Lease's acquireTime with milliseconds": lambda n: ("POST", LEASES, _lease(n, acquireTime="2026-01-01T00:00:00.123Z"),
                                                           JSON),
    "a Lease's renewTime in the 13th month": lambda n: ("POST", LEASES, _lease(n, renewTime="2026-13-01T00:00:00.000000Z"),
                                                        JSON),
    "an Event's eventTime without microseconds": lambda n: ("POST", EVENTS, _event(n, eventTime="2026-01-01T00:00:00+01:00"),
                                                           JSON),
    "an Event about another namespace's object": lambda n: ("POST", EVENTS, _event(n, involvedObject={
        "kind": "Pod", "name": n, "namespace": "other"}), JSON),
    "a resourceVersion that is not a number": lambda n: ("PUT", f"{CONFIGMAPS}/{n}", {
        **configmap(n), "metadata": {"name": n, "resourceVersion": "abc"}}, JSON),
    "a pod without containers": lambda n: ("POST", PODS, {"apiVersion": "v1", "kind": "Pod",
                                                         "metadata": {"name": n}, "spec": {"containers": []}},
                                           JSON),
}


WORDED_OTHERWISE = {   # the embedded server's answer differs here, as the README lists
    "a body that is not JSON": "Go's JSON decoder's messages are not reproduced",
    "a resourceVersion that is not a number": "a 409 Conflict where kube-apiserver answers 500 with Go's "
                                              "strconv error",
}
