"""nasconv.runners beyond what the search tests cover: a SIGTERM that lands while ray.init runs."""

from __future__ import annotations

import signal

import pytest
import ray

from nasconv.errors import Terminated
from nasconv.runners import RayRunner


def test_sigterm_inside_ray_init_is_a_sigterm_like_any_other(monkeypatch):
    # ray.init sets, for its duration, a SIGTERM handler that calls sys.exit(15): the CLI would
    # then exit 15 without its one line. RayRunner turns it into Terminated (exit 143) and puts
    # the caller's handlers back.
    before = signal.getsignal(signal.SIGTERM)

    def init(**kwargs):
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # what Ray does
        raise SystemExit(signal.SIGTERM)

    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(Terminated) as info:
        RayRunner(workers=1, cpus_per_worker=1)
    assert info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before
