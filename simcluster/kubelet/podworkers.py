"""The kubelet's pod workers: an admitted pod's containers started, restarted as its ``restartPolicy``
says with the kubelet's back-off, and the pod's status, events and container logs kept in step with
what its containers did.

- A container that exits is restarted under ``Always``, under ``OnFailure`` when it failed, never under
  ``Never``; the first restart at once, then ``CrashLoopBackOff`` (10 s doubling to 5 min), each one
  counted in ``restartCount`` with the exit kept in ``lastState``. The pod keeps its devices meanwhile.
- A container the runtime could not start (a missing executable, tessera-hook's refusal) is, as
  containerd reports it, terminated with reason ``StartError`` and exit code 128, with a ``Failed`` event
  carrying the runtime's line; under CRI-O, which fails at create, it waits in ``CreateContainerError``
  and is retried (the pod stays Pending).
- Only when the pod's phase becomes Succeeded or Failed are its devices released (``on_finished``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from simcluster.kubelet.apiclient import KubeletApi
from simcluster.kubelet.containerlogs import LogRefused, chosen_run, log_path
from simcluster.kubelet.containers import ContainerExit, Runner, container_id, first_error_line
from simcluster.kubelet.podstatus import START_ERROR_EXIT_CODE, ContainerRecord, pod_conditions, pod_phase
from simcluster.kubelet.restarts import CrashLoopBackOff, restart_wanted
from tessera.kube import now_rfc3339
from tessera.log import get_logger

ID_SCHEMES = {"containerd": "containerd://", "crio": "cri-o://"}


@dataclass
class _PodRun:
    """One admitted pod as its worker keeps it."""

    pod: dict
    records: dict[str, ContainerRecord]
    bundles: dict[str, Path]
    started_at: str
    logs: dict[str, Path] = field(default_factory=dict)          # container ID -> that run's log
    conditions_since: dict[str, tuple[str, str]] = field(default_factory=dict)
    timers: list[threading.Timer] = field(default_factory=list)
    done: bool = False                                            # Succeeded, Failed or deleted

    @property
    def meta(self) -> dict:
        return self.pod["metadata"]

    @property
    def restart_policy(self) -> str:
        return (self.pod.get("spec") or {}).get("restartPolicy") or "Always"

    def describe(self) -> str:
        """``name_namespace(uid)``, as the kubelet names a pod in its messages."""
        return f"{self.meta['name']}_{self.meta.get('namespace', 'default')}({self.meta['uid']})"


class PodWorkers:
    """Every admitted pod of one node; ``runner`` (set before the first pod) runs their containers."""

    def __init__(self, api: KubeletApi, root: Path, flavour: str, backoff: CrashLoopBackOff,
                 on_finished: Callable[[dict], None], stopping: threading.Event) -> None:
        self.runner: Runner | None = None
        self._api = api
        self._root = root
        self._flavour = flavour
        self._scheme = ID_SCHEMES.get(flavour, f"{flavour}://")
        self._backoff = backoff
        self._on_finished = on_finished
        self._stopping = stopping
        self._pods: dict[str, _PodRun] = {}
        self._lock = threading.RLock()
        self._log = get_logger("simkubelet.pods", flavour=flavour)

    def run(self, pod: dict, bundles: dict[str, Path]) -> None:
        """Start the containers of a pod the kubelet admitted (their bundles written)."""
        containers = (pod.get("spec") or {}).get("containers") or []
        run = _PodRun(pod, {c["name"]: ContainerRecord(c["name"], c.get("image", "")) for c in containers},
                      bundles, now_rfc3339())
        with self._lock:
            self._pods[run.meta["uid"]] = run
            self._post(run)
        for name in run.records:
            self._start(run, name)

    def _start(self, run: _PodRun, name: str) -> None:
        record = run.records[name]
        meta = run.meta
        log = log_path(self._root, meta.get("namespace", "default"), meta["name"], meta["uid"], name,
                       record.restart_count)
        log.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            run.logs[self._scheme + container_id(meta["uid"], name, record.restart_count)] = log
        assert self.runner is not None
        # As kubelet v1.37 reports them: the image (never pulled here), then the container created by
        # CreateContainer; containerd runs runc at StartContainer, so a refusal comes after "Created",
        # while CRI-O runs it at create (no "Created" then: see started()).
        self._event(run, "Normal", "Pulled",
                    f'Container image "{record.image}" already present on machine and can be accessed by the pod')
        if self._flavour != "crio":
            self._event(run, "Normal", "Created", "Container created")
        self.runner.start(run.pod, name, record.restart_count, run.bundles[name], log)

    # what the runner reports ---------------------------------------------------------------------

    def started(self, pod_uid: str, name: str, cid: str) -> None:
        """The runtime started a container."""
        with self._lock:
            run = self._pods.get(pod_uid)
            if run is None or run.done or self._stopping.is_set():
                return
            run.records[name].ran(self._scheme + cid, now_rfc3339())
            self._post(run)
            if self._flavour == "crio":
                self._event(run, "Normal", "Created", "Container created")
            self._event(run, "Normal", "Started", "Container started")

    def exited(self, exit: ContainerExit) -> None:
        """A container ended, or never started: record it, restart it if its policy says so, and release
        the pod's devices once the pod is finished."""
        if self._stopping.is_set():
            return  # killed because the kubelet is stopping: nothing to report
        with self._lock:
            run = self._pods.get(exit.pod_uid)
            if run is None or run.done:
                return
            record = run.records[exit.container]
            exit_code: int | None = exit.result.returncode
            if exit.started:
                record.exited(exit.result.returncode, now_rfc3339())
                if exit.result.returncode != 0:
                    self._log.warning("container_failed", pod=run.meta["name"], container=exit.container,
                                      exit_code=exit.result.returncode)
            else:
                exit_code = self._start_failed(run, record, exit)
            if exit_code is None or restart_wanted(run.restart_policy, exit_code):
                self._schedule_restart(run, record, new_container=exit_code is not None)
            phase = self._post(run)
            finished = run.done = phase in ("Succeeded", "Failed")
        if finished:
            self._log.info("pod_finished", pod=run.meta["name"], phase=phase)
            self._on_finished(run.pod)

    def _start_failed(self, run: _PodRun, record: ContainerRecord, exit: ContainerExit) -> int | None:
        """The runtime could not start it: containerd's StartError (an exit code for the restart policy), or
        CRI-O's CreateContainerError (None: no container existed, it is retried whatever the policy)."""
        message = first_error_line(exit.result.stderr)
        self._event(run, "Warning", "Failed", f"Error: {message}")
        self._log.warning("container_start_failed", pod=run.meta["name"], container=record.name, message=message)
        if self._flavour == "crio":
            record.waits("CreateContainerError", message)
            return None
        record.container_id = self._scheme + exit.container_id
        record.exited(START_ERROR_EXIT_CODE, now_rfc3339(), "StartError", message)
        return START_ERROR_EXIT_CODE

    def _schedule_restart(self, run: _PodRun, record: ContainerRecord, new_container: bool) -> None:
        delay = self._backoff.next_delay(f"{run.meta['uid']}/{record.name}")
        if delay > 0 and new_container:
            record.waits("CrashLoopBackOff", f"back-off {delay:g}s restarting failed container={record.name} "
                                             f"pod={run.describe()}")
            self._event(run, "Warning", "BackOff",
                        f"Back-off restarting failed container {record.name} in pod {run.describe()}")
        timer = threading.Timer(delay, self._restart, args=(run, record.name, new_container))
        timer.daemon = True
        run.timers.append(timer)
        timer.start()

    def _restart(self, run: _PodRun, name: str, new_container: bool) -> None:
        with self._lock:
            if run.done or self._stopping.is_set() or self._pods.get(run.meta["uid"]) is not run:
                return
            if new_container:
                # The count shows with the new container's state (the real kubelet counts the exited
                # containers it finds when it writes the status after starting the next one).
                run.records[name].restarted()
        self._start(run, name)

    # the pod's status and events -----------------------------------------------------------------

    def _post(self, run: _PodRun) -> str:
        """Write the pod's status (phase, conditions, every container's state); returns the phase."""
        records = list(run.records.values())
        phase = pod_phase(run.restart_policy, records)
        now = now_rfc3339()
        status = {"phase": phase, "hostIP": "127.0.0.1", "podIP": "10.244.0.1", "startTime": run.started_at,
                  "conditions": pod_conditions(phase, records, run.conditions_since, now),
                  "containerStatuses": [r.status() for r in records]}
        try:
            self._api.patch_pod_status(run.meta.get("namespace", "default"), run.meta["name"], status)
        except Exception as exc:  # noqa: BLE001 - the pod may be gone; its deletion is handled apart
            self._log.warning("pod_status_update_failed", pod=run.meta["name"], error=str(exc))
        return phase

    def _event(self, run: _PodRun, kind: str, reason: str, message: str) -> None:
        try:
            self._api.post_event(run.pod, kind, reason, message)
        except Exception as exc:  # noqa: BLE001 - an event lost must not stop the pod
            self._log.warning("event_post_failed", pod=run.meta["name"], reason=reason, error=str(exc))

    # deletion, stop, logs ------------------------------------------------------------------------

    def forget(self, pod_uid: str) -> None:
        """The pod was deleted: no more restarts; its containers are killed by the caller."""
        with self._lock:
            run = self._pods.pop(pod_uid, None)
            if run is None:
                return
            run.done = True
            for timer in run.timers:
                timer.cancel()
        self._backoff.forget(pod_uid)

    def stop(self) -> None:
        with self._lock:
            for run in self._pods.values():
                for timer in run.timers:
                    timer.cancel()

    def log_source(self, namespace: str, pod: str, container: str,
                   previous: bool) -> tuple[Path, Callable[[], bool]]:
        """The log file of the run ``kubectl logs`` means, and whether that run still runs; LogRefused with
        the kubelet's message where there is none."""
        with self._lock:
            run = next((r for r in self._pods.values()
                        if r.meta["name"] == pod and r.meta.get("namespace", "default") == namespace), None)
            if run is None:
                raise LogRefused(f'pod "{pod}" not found')
            record = run.records.get(container)
            chosen = chosen_run(pod, container, record.status() if record else None, previous)
            path = run.logs.get(chosen)
        if path is None:
            raise LogRefused(f'container "{container}" in pod "{pod}" has no log yet')

        def running() -> bool:
            return record.running and record.container_id == chosen
        return path, running
