"""The health loop both daemons run (:func:`tessera.gpuhealth.watch_health`): events reach ``apply`` each
round, NVML is read only when a read is due and only when ``apply`` asks, a failed round is logged as
``health_loop_failed`` and the loop goes on, and ``stop`` ends it."""

from __future__ import annotations

import threading

from structlog.testing import capture_logs

from tessera.gpu import GpuEvent, GpuInfo
from tessera.gpuhealth import watch_health
from tessera.log import get_logger


class ScriptedNvml:
    """Answers ``events`` from a script, one entry a round (an exception is raised); stops after it."""

    def __init__(self, rounds: list, stop: threading.Event, read_error: Exception | None = None) -> None:
        self.rounds, self.stop, self.reads, self.read_error = list(rounds), stop, 0, read_error

    def events(self, timeout_s: float) -> list[GpuEvent]:
        answer = self.rounds.pop(0)
        if not self.rounds:
            self.stop.set()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def read_gpus(self) -> list[GpuInfo]:
        self.reads += 1
        if self.read_error is not None:
            raise self.read_error
        return [GpuInfo(0, "GPU-0")]


def run(rounds: list, first_read_s: float, apply=None,
        read_error: Exception | None = None) -> tuple[list, ScriptedNvml, int]:
    stop = threading.Event()
    nvml, seen, after = ScriptedNvml(rounds, stop, read_error), [], [0]

    def record(events, read):
        seen.append(events)   # what apply had before it read: stays so when the read fails
        seen[-1] = (events, read() if read is not None else None)
        if apply is not None:
            apply()

    def count() -> None:
        after[0] += 1

    watch_health(nvml, stop, record, get_logger("test"), 0.0, 3600.0, first_read_s, after_round=count)
    return seen, nvml, after[0]


def test_each_round_s_events_reach_apply_and_the_first_read_comes_when_due():
    xid = GpuEvent("xid", 0, "GPU-0", xid=79)
    seen, nvml, rounds = run([[xid], [], []], first_read_s=0.0)
    assert seen == [([xid], [GpuInfo(0, "GPU-0")]), ([], None), ([], None)]
    assert nvml.reads == 1 and rounds == 3
    seen, nvml, _ = run([[xid], []], first_read_s=3600.0)
    assert seen == [([xid], None), ([], None)] and nvml.reads == 0


def test_nvml_is_read_only_when_apply_asks_so_a_failed_read_loses_no_event():
    xid = GpuEvent("xid", 0, "GPU-0", xid=79)
    with capture_logs() as logs:
        seen, nvml, _ = run([[xid]], first_read_s=0.0, read_error=RuntimeError("NVML away"))
    assert seen == [[xid]] and nvml.reads == 1
    assert [e["event"] for e in logs] == ["health_loop_failed"]


def test_a_failed_round_is_logged_and_the_loop_goes_on_until_stopped():
    failures = iter([RuntimeError("apply failed")])

    def apply_fails_once() -> None:
        for error in failures:
            raise error

    with capture_logs() as logs:
        seen, _, rounds = run([RuntimeError("NVML away"), [], []], first_read_s=3600.0, apply=apply_fails_once)
    assert seen == [([], None), ([], None)] and rounds == 3   # after_round runs after a failed round too
    failed = [e for e in logs if e["event"] == "health_loop_failed"]
    assert [e["component"] for e in failed] == ["test", "test"]


def test_a_stop_set_before_the_start_runs_no_round():
    stop = threading.Event()
    stop.set()
    watch_health(ScriptedNvml([], stop), stop, lambda events, read: None, get_logger("test"), 0.0, 1.0, 0.0)
