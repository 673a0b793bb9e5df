"""Two pods never get one share: many binds racing for the last share of a GPU, through HTTP on
threads, leave exactly one winner, and the cache agrees with the ledger (the pods' assignment
annotations on the API server). The same holds across an extender restart and a leader change that
come while the winner's bind is in flight (held at the API server, so the order is certain)."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from extender_cluster import api_server, bind_args, create, gpu_pod, mps_nodes, post

from tessera import ANNOTATION_ASSIGNMENT
from tessera.assignment import read_assignment

from simcluster.extenders import start_extender

RACERS = 12


def _racers(srv, prefix: str) -> list[dict]:
    # Distinct sizes (21..32 % cores, 1..12 GiB): any two together exceed the 40 % left, and no two
    # share a size, so only the fit check (not the per-shape rule) can stop the second.
    return [create(srv, gpu_pod(f"{prefix}{i}", {"nvidia.com/mps-core": 21 + i, "nvidia.com/mps-memory": 1 + i}))
            for i in range(RACERS)]


def _race(url: str, pods: list[dict], node: str) -> list[str]:
    """Each pod's bind, all sent at once; the error kube-scheduler reads ("" bound), or why the call failed
    (an extender stopped mid-race drops what it had not yet read)."""
    barrier = threading.Barrier(len(pods))

    def one(pod):
        barrier.wait()
        try:
            return post(url, "bind", bind_args(pod, node))[1]["Error"]
        except (OSError, http.client.HTTPException) as exc:
            return f"bind call failed: {exc!r}"

    with ThreadPoolExecutor(len(pods)) as pool:
        return list(pool.map(one, pods))


class HeldBindings:
    """The API server's pods/binding, held until ``let_go()``: a bind the extender has sent and not yet
    seen answered. ``arrived`` is set when the first one comes."""

    def __init__(self, registry) -> None:
        self._bind = registry.bind
        self.arrived = threading.Event()
        self._go = threading.Event()

    def __call__(self, namespace: str, name: str, binding: dict) -> None:
        self.arrived.set()
        if not self._go.wait(120):  # hang guard only: the test lets go long before
            raise TimeoutError("binding held for 120 s")
        self._bind(namespace, name, binding)

    def let_go(self) -> None:
        self._go.set()


def _race_until_a_bind_is_in_flight(srv, url: str, pods: list[dict], held: HeldBindings) -> Future:
    """Start a race and return once the winner's binding has reached the API server and is held there:
    the extender holds the share and its bind is in flight. The future answers the race's errors."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(_race, url, pods, "gpu-0")
    pool.shutdown(wait=False)
    while not held.arrived.wait(0.05):
        if future.done():  # the race ended without any binding: say why
            raise AssertionError(f"no bind reached the API server: {future.result()}")
    assert not future.done() and set(_ledger(srv)) == {"default/first"}  # sent, not landed
    return future


def _pods(srv) -> list[dict]:
    return srv.registry.list("pods")


def _ledger(srv) -> dict[str, tuple[str, int]]:
    """Pod -> (GPU, core) from the assignment annotations on the API server."""
    out = {}
    for pod in _pods(srv):
        value = (pod["metadata"].get("annotations") or {}).get(ANNOTATION_ASSIGNMENT)
        if value:
            doc, _ = read_assignment(value)
            grant = doc.containers["main"]["nvidia.com/mps-core"]
            out[f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"] = (grant.gpus[0], grant.core)
    return out


def _cache(ext) -> dict[str, tuple[str, int]]:
    return {k: (p.grants[0].gpu_uuid, p.grants[0].core) for k, p in ext.cache.placements().items() if p.grants}


def _hold_60(srv, ext, node: str) -> None:
    first = create(srv, gpu_pod("first", {"nvidia.com/mps-core": 60, "nvidia.com/mps-memory": 4}))
    assert post(ext.url, "bind", bind_args(first, node))[1] == {"Error": ""}


def _settled(ext, srv, timeout_s: float = 30.0) -> None:  # a hang guard: it waits on the watch
    deadline = time.monotonic() + timeout_s
    while _cache(ext) != _ledger(srv):
        if time.monotonic() > deadline:
            raise AssertionError(f"cache {_cache(ext)} != ledger {_ledger(srv)}")
        time.sleep(0.02)


def test_concurrent_binds_for_the_last_share_leave_exactly_one_winner(tmp_path):
    with api_server(tmp_path, mps_nodes(1)) as (srv, kubeconfig):
        ext = start_extender(kubeconfig, tmp_path, leader_election=False)
        try:
            _hold_60(srv, ext, "gpu-0")
            errors = _race(ext.url, _racers(srv, "r"), "gpu-0")
            assert sum(1 for e in errors if e == "") == 1
            assert all("does not fit on gpu-0" in e for e in errors if e)
            _settled(ext, srv)
            ledger = _ledger(srv)
            assert len(ledger) == 2 and sum(core for _, core in ledger.values()) <= 100
            bound = [p for p in _pods(srv) if p["spec"].get("nodeName")]
            assert len(bound) == 2
        finally:
            ext.stop()


def test_a_restart_mid_race_gives_nothing_more_away(tmp_path, monkeypatch):
    with api_server(tmp_path, mps_nodes(1)) as (srv, kubeconfig):
        ext = start_extender(kubeconfig, tmp_path, leader_election=False)
        _hold_60(srv, ext, "gpu-0")
        pods = _racers(srv, "r")
        held = HeldBindings(srv.registry)
        monkeypatch.setattr(srv.registry, "bind", held)
        # Half the racers go to the first extender, which is stopped while the winner's bind is in
        # flight; the new one starts from an API server that does not show it yet.
        first_race = _race_until_a_bind_is_in_flight(srv, ext.url, pods[:6], held)
        ext.stop()
        ext = start_extender(kubeconfig, tmp_path, leader_election=False)
        try:
            assert _cache(ext) == _ledger(srv) and len(_ledger(srv)) == 1  # rebuilt before the bind landed
            held.let_go()
            errors = first_race.result(timeout=120)
            _settled(ext, srv)  # the bind that landed reaches the new instance by its watch
            errors += _race(ext.url, pods[6:], "gpu-0")
            # The winner's answer may die with the stopped extender (a stopped process answers nothing);
            # its Binding landed all the same, and the ledger below holds exactly one racer.
            assert sum(1 for e in errors if e == "") <= 1
            assert all(e for e in errors[6:])  # the new instance gave nothing more away
            ledger = _ledger(srv)
            assert len(ledger) == 2 and sum(core for _, core in ledger.values()) <= 100
        finally:
            held.let_go()
            ext.stop()


def _healthy(ext) -> bool:
    try:
        with urllib.request.urlopen(ext.url + "/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _wait(predicate, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("graceful", [True, False], ids=["released", "expired"])
def test_a_standby_takes_over_the_lease_mid_race_and_refuses_the_share_taken(tmp_path, graceful, monkeypatch):
    lease = {"lease_namespace": "kube-system", "lease_name": "tessera-extender", "leader_election": True,
             "lease_duration_s": 1.5, "lease_retry_s": 0.2}
    with api_server(tmp_path, mps_nodes(1)) as (srv, kubeconfig):
        one = start_extender(kubeconfig, tmp_path, identity="one", **lease)
        _wait(lambda: _healthy(one), "the first replica to lead")
        two = start_extender(kubeconfig, tmp_path, identity="two", **lease)
        held = None
        try:
            time.sleep(0.5)
            assert not _healthy(two)  # a standby is not ready, so the Service routes to the leader
            pods = _racers(srv, "r")
            _hold_60(srv, one, "gpu-0")
            assert "not the leader" in post(two.url, "bind", bind_args(pods[0], "gpu-0"))[1]["Error"]
            held = HeldBindings(srv.registry)
            monkeypatch.setattr(srv.registry, "bind", held)
            first_race = _race_until_a_bind_is_in_flight(srv, one.url, pods[:6], held)
            if graceful:
                one.stop()
            else:  # the leader hangs: it stops renewing, its lease expires
                one.elector._stop.set()
            _wait(lambda: _healthy(two), "the standby to take over")
            lease_held = srv.registry.get("leases", "tessera-extender", "kube-system")["spec"]
            assert lease_held["holderIdentity"] == "two" and lease_held["leaseTransitions"] >= 1
            held.let_go()  # the old leader's bind lands after the handover
            errors = first_race.result(timeout=120)
            _settled(two, srv)
            errors += _race(two.url, pods[6:], "gpu-0")
            # A stopped leader answers nothing: the winner's answer dies with it, its Binding lands.
            wins = sum(1 for e in errors if e == "")
            assert wins <= 1 if graceful else wins == 1
            assert len(_ledger(srv)) == 2  # the 60 % pod and exactly one racer
            assert all(e for e in errors[6:])
            _settled(two, srv)
        finally:
            if held is not None:
                held.let_go()
            two.stop()
            one.stop()
