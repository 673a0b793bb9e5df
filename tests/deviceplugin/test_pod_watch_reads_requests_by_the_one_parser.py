"""The device plugin reads a pod's request with the parser the webhook and the extender use
(tessera.podrequest): the same rules, so a request they refuse is not quietly read another way here;
such a pod is logged once and never matched, and the watch goes on."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from deviceplugin.podwatch import PodWatch, device_requests
from tessera.podrequest import RequestError, pod_request, requested_devices

CORE, MEM, GPU = "nvidia.com/mps-core", "nvidia.com/mps-memory", "nvidia.com/gpu"


def pod(name: str, *containers: tuple[str, dict, dict]) -> dict:
    """A pending pod bound to this node; each container is (name, requests, limits)."""
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"nodeName": "n1", "containers": [
                {"name": c, "resources": {"requests": req, "limits": lim}} for c, req, lim in containers]},
            "status": {"phase": "Pending"}}


GOOD = [
    pod("share", ("main", {CORE: "30", MEM: "8"}, {CORE: "30", MEM: "8"}), ("cpu-only", {"cpu": "1"}, {})),
    pod("whole", ("main", {}, {CORE: "200", MEM: "160"})),
    pod("mig", ("main", {}, {"nvidia.com/mig-1g.10gb": 2})),
    pod("two", ("a", {}, {GPU: 1}), ("b", {}, {"nvidia.com/gpu.shared": "2"})),
]
REFUSED = [
    (pod("odd-hundreds", ("main", {}, {CORE: "150"})), "not in whole hundreds"),
    (pod("overcommit", ("main", {GPU: "1"}, {GPU: "2"})), "differ"),
    (pod("memory-alone", ("main", {}, {MEM: "4"})), "needs nvidia.com/mps-core"),
    (pod("half-gpu", ("main", {}, {GPU: "0.5"})), "whole number"),
    (pod("two-kinds", ("main", {}, {GPU: "1", CORE: "20"})), "one kind of GPU resource"),
]


@pytest.mark.parametrize("spec", GOOD, ids=lambda p: p["metadata"]["name"])
def test_the_plugin_counts_what_the_extender_counts(spec):
    got = device_requests(spec)
    request = pod_request(spec)
    assert got == {c.name: n for c in request.containers if (n := requested_devices(c.ask))}
    assert "cpu-only" not in got, "a container that uses no GPU is not pending admission"


@pytest.mark.parametrize("spec,reason", REFUSED, ids=lambda v: v["metadata"]["name"] if isinstance(v, dict) else "")
def test_a_request_the_webhook_refuses_is_refused_here_with_its_reason(spec, reason):
    with pytest.raises(RequestError) as webhook:
        pod_request(spec)
    with pytest.raises(RequestError) as plugin:
        device_requests(spec)
    assert str(plugin.value) == str(webhook.value) and reason in str(plugin.value)


def test_a_refused_pod_is_logged_once_never_matched_and_the_watch_goes_on():
    watch = PodWatch(api=None, node="n1", public_key=None)
    bad, _ = REFUSED[0]
    with capture_logs() as logs:
        for event in ("ADDED", "MODIFIED", "MODIFIED"):
            watch._apply(event, bad)  # the watch loop's step for one event
            watch._apply(event, GOOD[0])
    refused = [e for e in logs if e["event"] == "pod_request_refused"]
    assert len(refused) == 1 and refused[0]["pod"] == "default/odd-hundreds"
    assert "whole hundreds" in refused[0]["reason"]
    assert watch.match(CORE, 150) is None, "no admission is matched to a refused request"
    found = watch.match(CORE, 30)
    assert found is not None and (found.pod_name, found.container, found.requests) == ("share", "main", {CORE: 30, MEM: 8})
