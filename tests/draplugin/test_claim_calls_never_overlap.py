"""One call at a time per claim, however the kubelet's calls for it interleave: a prepare holding the
claim, an unprepare waiting for it, then more calls arriving around the unprepare's end. None ever runs
beside another (the driver once dropped a claim's lock at unprepare while a waiter still had it, and the
next call got a fresh lock and ran beside that waiter)."""

from __future__ import annotations

import threading
import types
from pathlib import Path

from draharness import DRIVER, GPUS, KEY, MODES, NODE, PIPE, SHM, claim
from draplugin import prepare as prepare_module
from draplugin.checkpoint import Checkpoint
from draplugin.devices import select_gpus
from draplugin.prepare import DraService, PrepareSettings
from tessera.kubeletapi import dra_pb2

UID = "11111111-aaaa-4000-8000-0000000000c1"
GUARD_S = 60   # a hang guard only: every wait below ends on an event long before it


class Calls:
    """Which call (by its thread's name) reached the claim, which found it held and waits, and whether
    two were ever inside at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside: list[str] = []
        self.overlaps: list[tuple[str, ...]] = []
        self.arrived = {name: threading.Event() for name in ("P", "U", "T", "F")}   # waiting, or inside
        self.gates = {name: threading.Event() for name in ("P", "U", "T")}   # holds that call inside

    def waits(self) -> None:
        self.arrived[threading.current_thread().name].set()

    def enter(self) -> None:
        name = threading.current_thread().name
        with self.lock:
            self.inside.append(name)
            if len(self.inside) > 1:
                self.overlaps.append(tuple(self.inside))
        self.arrived[name].set()

    def leave(self) -> None:
        with self.lock:
            self.inside.remove(threading.current_thread().name)

    def hold(self) -> None:
        gate = self.gates.get(threading.current_thread().name)
        if gate is not None:
            assert gate.wait(GUARD_S), "the test never let this call go on"


def spy_lock_class(calls: Calls) -> type:
    class SpyLock:
        """A lock that says when a thread finds it held (and so waits for it)."""

        def __init__(self) -> None:
            self._lock = threading.Lock()

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            if self._lock.acquire(False):
                return True
            if not blocking:
                return False
            calls.waits()
            return self._lock.acquire(True, timeout)

        def release(self) -> None:
            self._lock.release()

        def locked(self) -> bool:
            return self._lock.locked()

        __enter__ = acquire

        def __exit__(self, *exc) -> None:
            self.release()

    return SpyLock


def test_a_call_arriving_as_an_unprepare_ends_never_runs_beside_the_one_it_let_in(tmp_path: Path, monkeypatch):
    calls = Calls()
    doc = claim("train", UID, [("gpu", "gpu-5")])

    def read_claim(namespace: str, name: str) -> dict:
        calls.hold()   # P and T wait here, inside the claim's call
        return doc

    settings = PrepareSettings(DRIVER, NODE, str(tmp_path / "cdi"), str(tmp_path / "host"), KEY, PIPE, SHM)
    published = {g.name: g for g in select_gpus(GPUS, [g.index for g in GPUS], MODES)}
    service = DraService(settings, lambda: published, read_claim, Checkpoint(str(tmp_path / "checkpoint.json")))
    for method in ("prepare", "unprepare"):
        def tracked(*args, _inner=getattr(service, method)):
            calls.enter()
            try:
                if threading.current_thread().name == "U":
                    calls.hold()
                return _inner(*args)
            finally:
                calls.leave()
        setattr(service, method, tracked)
    spy_threading = types.ModuleType("threading")
    spy_threading.__dict__.update(vars(threading))
    spy_threading.Lock = spy_lock_class(calls)
    monkeypatch.setattr(prepare_module, "threading", spy_threading)   # the claims' locks, made from here on

    answers: dict[str, object] = {}
    one = [dra_pb2.Claim(namespace="team-a", name="train", uid=UID)]

    def call(name: str, kind: str) -> threading.Thread:
        def run() -> None:
            if kind == "prepare":
                answers[name] = service.NodePrepareResources(dra_pb2.NodePrepareResourcesRequest(claims=one), None)
            else:
                answers[name] = service.NodeUnprepareResources(dra_pb2.NodeUnprepareResourcesRequest(claims=one), None)
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def arrived(name: str) -> None:
        assert calls.arrived[name].wait(GUARD_S), f"call {name} neither waited for the claim nor reached it"

    threads = [call("P", "prepare")]                # the prepare holds the claim (its read is slow)
    arrived("P")
    threads.append(call("U", "unprepare"))          # the kubelet's unprepare overtakes it and waits
    arrived("U")
    calls.arrived["U"].clear()
    calls.gates["P"].set()                          # the prepare ends: the unprepare goes in, and stays
    arrived("U")
    threads.append(call("T", "prepare"))            # a third call waits behind the unprepare
    arrived("T")
    calls.arrived["T"].clear()
    calls.gates["U"].set()                          # the unprepare ends and lets the third call in
    threads[1].join(GUARD_S)
    arrived("T")
    threads.append(call("F", "unprepare"))          # a call arriving now must wait for the third call
    arrived("F")
    calls.gates["T"].set()
    for thread in threads:
        thread.join(GUARD_S)
        assert not thread.is_alive()
    assert calls.overlaps == []
    assert all(answer.claims[UID].error == "" for answer in answers.values())
    assert service._claim_locks == {}   # nothing kept once every call ended
