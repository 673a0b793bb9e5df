"""Every retry loop's wait (tessera.backoff): doubles per failure in a row, stops at its cap, spreads
a fleet's retries apart, and starts over after a success. Injected random source and clock: no
sleeping."""

from __future__ import annotations

import random
import threading

import pytest

from tessera.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def waits(backoff: Backoff, n: int) -> list[float]:
    return [backoff.failed() for _ in range(n)]


def test_waits_double_with_each_failure_in_a_row_up_to_the_cap():
    top = Backoff(base_s=0.5, cap_s=10.0, rand=lambda: 0.0)          # no jitter drawn: the ceiling itself
    assert waits(top, 8) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    bottom = Backoff(base_s=0.5, cap_s=10.0, jitter=0.5, rand=lambda: 1.0)  # the most jitter takes off
    assert waits(bottom, 6) == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0]


def test_a_thousand_failures_stay_at_the_cap():
    backoff = Backoff(base_s=0.5, cap_s=10.0, rand=lambda: 0.0)
    assert waits(backoff, 1000)[-1] == 10.0


def test_a_fleet_that_failed_together_retries_spread_apart():
    # 200 plugins lose the API server at the same moment, each with its own random source
    fleet = [Backoff(base_s=0.5, cap_s=10.0, rand=random.Random(seed).random) for seed in range(200)]
    for attempt in range(6):
        delays = sorted(b.failed() for b in fleet)
        ceiling = min(10.0, 0.5 * 2 ** attempt)
        assert ceiling / 2 <= delays[0] and delays[-1] <= ceiling, "each wait in the upper half of its ceiling"
        bins = [0] * 20  # the upper half of the ceiling in 20 slices: in lockstep all 200 fall in one
        for d in delays:
            bins[min(19, int((d - ceiling / 2) / (ceiling / 2) * 20))] += 1
        assert max(bins) <= 30, f"attempt {attempt}: {max(bins)} of 200 nodes retry within one slice ({bins})"
        spread = delays[int(0.9 * 199)] - delays[int(0.1 * 199)]
        assert spread > 0.3 * ceiling / 2, f"attempt {attempt}: 10-90 % of the fleet within {spread:.3f} s"


def test_a_success_starts_over_and_makes_the_next_try_due_at_once():
    clock = Clock()
    backoff = Backoff(base_s=0.5, cap_s=10.0, rand=lambda: 0.0, clock=clock)
    waits(backoff, 4)
    assert backoff.failed() == 8.0 and not backoff.due()
    clock.now += 7.9
    assert not backoff.due()
    clock.now += 0.1
    assert backoff.due()
    backoff.failed()
    backoff.reset()
    assert backoff.due() and backoff.failures == 0
    assert backoff.failed() == 0.5, "the first failure after a success waits the base again"


def test_wait_returns_false_once_stop_is_set():
    stop = threading.Event()
    stop.set()
    assert Backoff(base_s=5.0, cap_s=5.0).wait(stop) is False


@pytest.mark.parametrize("kwargs", [{"base_s": 0}, {"base_s": 2, "cap_s": 1}, {"factor": 0.5}, {"jitter": 1.5}])
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(**kwargs)
