"""What the tests of nasconv.latency share: a tiny ResNet-20-like space at 16 px, real measurements
with few repeats, profiled into a real database."""

from __future__ import annotations

from pathlib import Path

from nasconv.latency import LatencyTable, Repeats, current_setting, open_tables, profile_space
from nasconv.spaces import load_space

TINY_SPACE = """\
name: tiny20
description: ResNet-20's shape at 16 px, two operators, for the latency tests
resolution: 16
in_channels: 3
num_classes: 10
stem: {type: cifar, width: 8}
block: basic
choices: [standard, {op: gc, groups: [2]}]
stages:
  - {depth: {choices: [1, 2], default: 1}, width: 8, stride: 1}
  - {depth: {choices: [1, 2], default: 1}, width: {choices: [8, 16], default: 16}, stride: 2}
"""
#: few repeats: these tests check the bookkeeping, not the figures
QUICK = Repeats(warmup=1, min_repeats=3, max_repeats=5, max_time_s=0.05)


def tiny_space(folder: Path):
    path = folder / "tiny20.yaml"
    path.write_text(TINY_SPACE)
    return load_space(str(path))


def profiled(url: str, space, *, threads: int = 1, networks: int = 4, **kw):
    """(table, setting, report) of ``space`` profiled into ``url``."""
    tables = open_tables(url)
    table = LatencyTable(tables, url)
    setting = current_setting("cpu", threads=threads)
    report = profile_space(space, table, setting, repeats=QUICK, network_repeats=QUICK, networks=networks, **kw)
    return tables, table, setting, report


def now_ms(arch) -> float:
    """What the device "times" a network at now in the tests that inject timings: a fixed value per
    architecture (0.5 to 1.5 ms), so that a ratio to it is what the test stored, not what the machine did."""
    return 0.5 + (int(arch.arch_hash[:8], 16) % 1000) / 1000


def inject_drift_timings(monkeypatch) -> None:
    """The drift check's timing of a calibration network replaced by :func:`now_ms`."""
    import nasconv.latency.drift as drift

    monkeypatch.setattr(drift, "time_network", lambda arch, setting, device: now_ms(arch))


def stored_as_if_faster(engine, space, setting, factor: float) -> None:
    """Each whole network the table holds stored as if the device had timed it ``factor`` times
    faster than it times it now (now: :func:`now_ms`, injected by :func:`inject_drift_timings`)."""
    import sqlalchemy as sa

    from nasconv.latency import calibration_archs, network_key
    from nasconv.storage.tables import LatencyBlockRow

    for a in calibration_archs(space, 10):
        then = now_ms(a) / factor
        with engine.begin() as c:
            c.execute(sa.update(LatencyBlockRow).where(LatencyBlockRow.block_key == network_key(a))
                      .values(median_ms=then, ci_low_ms=then * 0.98, ci_high_ms=then * 1.02, iqr_ms=then * 0.02))
