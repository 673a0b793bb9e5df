"""A pod's status as the kubelet writes it: each container's state, and the pod's phase and conditions
derived from them and the restart policy by the real kubelet's rules (``getPhase`` in
pkg/kubelet/kubelet_pods.go):

- a container waiting that never ran keeps the pod Pending;
- any container running makes it Running;
- all containers exited: ``Always`` restarts them, so the pod stays Running; otherwise Succeeded when every
  one exited 0, Failed under ``Never`` when one did not, and Running under ``OnFailure`` (it restarts).

So a pod reaches Succeeded or Failed by its containers' exits only where its restart policy lets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

START_ERROR_EXIT_CODE = 128   # containerd's exit code for a container whose start failed ("StartError")
NEVER_STARTED = "1970-01-01T00:00:00Z"


@dataclass
class ContainerRecord:
    """One container of a pod, as ``status.containerStatuses`` shows it."""

    name: str
    image: str = ""
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    restart_count: int = 0
    container_id: str = ""

    @property
    def running(self) -> bool:
        return "running" in self.state

    def ran(self, container_id: str, now: str) -> None:
        """The runtime started it."""
        self.container_id = container_id
        self.state = {"running": {"startedAt": now}}

    def exited(self, exit_code: int, now: str, reason: str = "", message: str = "") -> None:
        """It ended with ``exit_code`` (``Completed`` for 0, ``Error`` otherwise, unless ``reason`` says); one
        that never ran shows the zero time as its start, as containerd reports a StartError."""
        started = (self.state.get("running") or {}).get("startedAt", NEVER_STARTED)
        terminated = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                      "startedAt": started, "finishedAt": now, "containerID": self.container_id}
        if message:
            terminated["message"] = message
        self.state = {"terminated": terminated}

    def waits(self, reason: str, message: str = "") -> None:
        """It waits (``CrashLoopBackOff`` before a restart, ``CreateContainerError`` where the runtime
        refused to create it); a termination it had stays as its last state."""
        if "terminated" in self.state:
            self.last_state = self.state
        self.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}

    def restarted(self) -> None:
        """A new container replaces the one that exited: one more restart, the exit kept as the last state."""
        if "terminated" in self.state:
            self.last_state = self.state
        self.restart_count += 1
        self.state = {"waiting": {"reason": "ContainerCreating"}}

    def status(self) -> dict:
        """Its entry in ``status.containerStatuses``."""
        return {"name": self.name, "image": self.image, "imageID": "", "containerID": self.container_id,
                "ready": self.running, "started": self.running, "restartCount": self.restart_count,
                "state": self.state, "lastState": self.last_state}


def pod_phase(restart_policy: str, records: list[ContainerRecord]) -> str:
    """The pod's phase from its containers' states and its restart policy (the kubelet's getPhase)."""
    waiting = running = stopped = succeeded = 0
    for record in records:
        if "running" in record.state:
            running += 1
        elif "terminated" in record.state:
            stopped += 1
            succeeded += record.state["terminated"]["exitCode"] == 0
        elif "terminated" in record.last_state:
            stopped += 1          # waiting to be restarted after it ran
        else:
            waiting += 1          # not started yet
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if restart_policy == "Always":
        return "Running"          # every container is being restarted
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def pod_conditions(phase: str, records: list[ContainerRecord], since: dict[str, tuple[str, str]],
                   now: str) -> list[dict]:
    """PodReadyToStartContainers, Initialized, Ready, ContainersReady and PodScheduled (kubelet v1.37's
    order); ``since`` keeps each condition's last
    (status, transition time) so a transition time moves only when its status does."""
    unready = [r.name for r in records if not r.running]
    if phase in ("Succeeded", "Failed"):
        ready = ("False", "PodCompleted", "")
    elif unready:
        ready = ("False", "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
    else:
        ready = ("True", "", "")
    # PodReadyToStartContainers (GA in 1.29): the pod's sandbox is up; it goes once the pod is finished.
    sandbox = ("False", "", "") if phase in ("Succeeded", "Failed") else ("True", "", "")
    conditions = []
    for kind, (status, reason, message) in (("PodReadyToStartContainers", sandbox), ("Initialized", ("True", "", "")),
                                            ("Ready", ready), ("ContainersReady", ready),
                                            ("PodScheduled", ("True", "", ""))):
        previous = since.get(kind)
        changed_at = previous[1] if previous and previous[0] == status else now
        since[kind] = (status, changed_at)
        condition = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": changed_at}
        if reason:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        conditions.append(condition)
    return conditions
