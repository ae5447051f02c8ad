"""nasconv.latency.paired: networks timed together, one forward each in turn, the order rotated
each round; the loop tested with a fake clock (the timings are what the test put in), the real
timing only for its bookkeeping."""

from __future__ import annotations

import pytest

from nasconv.latency.paired import PAIRED_MIN_ROUNDS, time_interleaved, time_together
from tests.latency_helpers import tiny_space


class FakeClock:
    """A clock that moves only when a fake forward pass runs (by its cost, in seconds), and by
    ``idle`` each time it is read outside one."""

    def __init__(self, idle: float = 0.0):
        self.now, self.idle, self.order = 0.0, idle, []

    def __call__(self) -> float:
        self.now += self.idle
        return self.now

    def forward(self, key: str, cost_s):
        def run():
            self.order.append(key)
            self.now += cost_s(len([k for k in self.order if k == key])) if callable(cost_s) else cost_s
        return run


def test_each_network_once_per_round_in_a_rotated_order():
    clock = FakeClock()
    fwd = {k: clock.forward(k, c) for k, c in (("a", 0.002), ("b", 0.003), ("c", 0.005))}
    got = time_interleaved(fwd, rounds=4, warmup=1, clock=clock, max_time_s=100)
    assert clock.order[:3] == ["a", "b", "c"]  # warm-up
    assert clock.order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert got == {"a": [pytest.approx(2.0)] * 4, "b": [pytest.approx(3.0)] * 4, "c": [pytest.approx(5.0)] * 4}


def test_the_machine_slowing_down_moves_every_network_of_a_round_alike():
    """The machine 3x slower from round 10 on: each network's times jump, their ratio does not."""
    clock = FakeClock()
    speed = lambda n: 1.0 if n <= 11 else 3.0  # noqa: E731  (n counts the warm-up pass too)
    fwd = {"a": clock.forward("a", lambda n: 0.002 * speed(n)), "b": clock.forward("b", lambda n: 0.004 * speed(n))}
    got = time_interleaved(fwd, rounds=20, warmup=1, clock=clock, max_time_s=100)
    assert max(got["a"]) == pytest.approx(3 * min(got["a"]))
    assert all(b / a == pytest.approx(2.0) for a, b in zip(got["a"], got["b"]))


def test_the_time_cap_stops_after_the_fewest_rounds_that_give_an_interval():
    clock = FakeClock()
    fwd = {"a": clock.forward("a", 1.0), "b": clock.forward("b", 1.0)}  # 2 s a round
    got = time_interleaved(fwd, rounds=31, warmup=0, clock=clock, max_time_s=3.0)
    assert len(got["a"]) == len(got["b"]) == PAIRED_MIN_ROUNDS  # past the cap, but never fewer
    clock = FakeClock()
    fwd = {"a": clock.forward("a", 0.001), "b": clock.forward("b", 0.001)}
    got = time_interleaved(fwd, rounds=31, warmup=0, clock=clock, max_time_s=0.05)
    assert len(got["a"]) == 25  # 2 ms a round: the cap reached after 25
    assert time_interleaved({}, clock=clock) == {}


def test_real_networks_are_timed_together(tmp_path):
    """Bookkeeping only: the figures are this machine's."""
    space = tiny_space(tmp_path)
    archs = {"base": space.baseline(), "other": space.sample(__import__("random").Random(1))}
    t = time_together(archs, threads=1, max_time_s=0.2, rounds=8)
    assert set(t.timings_ms) == {"base", "other"} and PAIRED_MIN_ROUNDS <= t.rounds <= 8
    assert all(len(v) == t.rounds and min(v) > 0 for v in t.timings_ms.values())
    assert t.device == "cpu" and t.threads == 1 and t.batch == 1 and t.to_dict()["started"]
