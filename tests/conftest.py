import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

# Tests run on 2-core machines: keep torch from oversubscribing and make runs repeatable.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _data_cache_dir(tmp_path_factory):
    """A data cache (NASCONV_CACHE_DIR) of this test session's own, for it and the processes it
    starts: tests never read entries a previous run left, nor write into the user's cache.
    Downloads go to a closed local port: a command run without --data falls back to
    Fashion-MNIST as on an offline machine, never fetching 170 MB of CIFAR in CI."""
    new = {"NASCONV_CACHE_DIR": str(tmp_path_factory.mktemp("nasconv-cache")),
           "NASCONV_DATA_MIRROR": "http://127.0.0.1:9/"}
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# --- services (PostgreSQL, a Ray cluster) ------------------------------------------------------
# Where a service is missing these tests skip with the reason; CI (.ci/run) sets
# NASCONV_REQUIRE_SERVICES=1, and then a missing service fails them instead.

PG_HOSTPORT = os.environ.get("NASCONV_TEST_PG", "127.0.0.1:5432")


def _unavailable(what: str) -> None:
    if os.environ.get("NASCONV_REQUIRE_SERVICES"):
        pytest.fail(f"{what} (NASCONV_REQUIRE_SERVICES is set: required, not skipped)", pytrace=False)
    pytest.skip(what)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards, as a SQLAlchemy URL.

    Connects to database ``test`` on 127.0.0.1:5432 (NASCONV_TEST_PG=host:port to change) as
    root, then postgres (trust auth). Without the right to create databases, a fresh schema of
    ``test`` is used instead.
    """
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    admin, user, errors = None, None, []
    for user in ("root", "postgres"):
        try:
            admin = psycopg.connect(f"postgresql://{user}@{PG_HOSTPORT}/test", autocommit=True, connect_timeout=5)
            break
        except psycopg.Error as exc:
            errors.append(f"{user}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
    if admin is None:
        _unavailable(f"no PostgreSQL at {PG_HOSTPORT} (database test, users root/postgres): {'; '.join(errors)}")
    name = f"nasconv_test_{uuid.uuid4().hex[:12]}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://{user}@{PG_HOSTPORT}/{name}"
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    except psycopg.Error:
        admin.execute(f'CREATE SCHEMA "{name}"')
        url = f"postgresql+psycopg://{user}@{PG_HOSTPORT}/test?options=-csearch_path%3D{name}"
        drop = f'DROP SCHEMA IF EXISTS "{name}" CASCADE'
    try:
        yield url
    finally:
        try:
            admin.execute(drop)
        finally:
            admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNode:
    """A ``ray start --block`` process started as the leader of its own session: every process
    of the node (GCS, raylet, agents, workers) is in that session, and only those are killed."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(args, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

    def pids(self) -> list[int]:
        out = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    stat = (p / "stat").read_text()
                except OSError:
                    continue
                fields = stat.rsplit(")", 1)[1].split()
                if int(fields[3]) == self.proc.pid and fields[0] != "Z":  # session id, not a zombie
                    out.append(int(p.name))
        return out

    def owns(self, pid: int) -> bool:
        return pid in self.pids()

    def wait_started(self, timeout: float) -> bool:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.5)
        return False

    def kill(self) -> None:
        """SIGKILL to every process of the node: a machine that dies."""
        for _ in range(3):
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # `ray start --block` stops its processes on SIGTERM
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class RayCluster:
    def __init__(self, address: str, head: RayNode, worker: RayNode, env: dict[str, str], trace: Path) -> None:
        self.address, self.head, self.worker, self.env, self.trace = address, head, worker, env, trace


@pytest.fixture(scope="module")
def ray_cluster():
    """Two Ray nodes on this machine, 1 CPU each: ``ray start --head`` on loopback and a second
    ``ray start --address``, with their own temp dirs and ports, so that they neither meet nor
    stop another Ray instance of this machine (no ``ray stop``). Token authentication is off
    (RAY_AUTH_MODE=disabled; loopback only). Workers append to ``cluster.trace``
    (NASCONV_TEST_TRACE) where each evaluation ran."""
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        ray_bin = shutil.which("ray")
        if ray_bin is None:
            _unavailable("the `ray` command is not installed")
    # Short paths: Ray's unix sockets live under the temp dir (108-byte limit).
    tmp = Path(tempfile.mkdtemp(prefix="nr", dir="/tmp"))
    trace = tmp / "trace"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "NASCONV_TEST_TRACE": str(trace)}
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    common = ["--block", "--num-cpus=1", "--disable-usage-stats", "--object-store-memory=100000000",
              f"--metrics-export-port={free_port()}"]
    head = RayNode([str(ray_bin), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false", f"--dashboard-port={free_port()}",
                    f"--dashboard-agent-listen-port={free_port()}",
                    f"--temp-dir={tmp}/h", *common], env, tmp / "head.log")
    nodes = [head]
    try:
        if not head.wait_started(120):
            _unavailable(f"`ray start --head` did not start: {head.log.read_text(errors='replace')[-800:]}")
        worker = RayNode([str(ray_bin), "start", f"--address=127.0.0.1:{port}",
                          f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={tmp}/w", *common],
                         env, tmp / "worker.log")
        nodes.append(worker)
        if not worker.wait_started(120):
            _unavailable(f"`ray start --address` did not start: {worker.log.read_text(errors='replace')[-800:]}")
        yield RayCluster(f"127.0.0.1:{port}", head, worker, env, trace)
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# --- searches in a separate process, and what must hold afterwards -----------------------------


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class SearchCLI:
    """``nasconv search`` as its own process, with settings that make an evaluation quick
    (resnet20, synflow on synthetic data at 16 px, no latency; ``slow=True``: naswot at 64 px,
    about 2 s, for a signal to land inside an evaluation), the trace hook on
    (NASCONV_TEST_TRACE: every fault point passed, with its pid), and checks of a study."""

    BASE = ["search", "--space", "resnet20", "--budget", "30mflops", "--sampler", "random", "--inline",
            "--no-baseline", "--no-latency", "--objectives", "accuracy,macs", "--data", "synthetic", "--json"]

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.trace = tmp_path / "trace"

    def cmd(self, storage: str, trials: int, *, study: str = "s", extra: tuple[str, ...] = (),
            slow: bool = False) -> list[str]:
        proxy = ["--proxy", "naswot", "--resolution", "64"] if slow else ["--proxy", "synflow", "--resolution", "16"]
        return [sys.executable, "-m", "nasconv.cli", *self.BASE, *proxy, "--trials", str(trials),
                "--storage", storage, "--study", study, *extra]

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NASCONV_TEST_")}
        env.update(NASCONV_TEST_TRACE=str(self.trace), PYTHONUNBUFFERED="1", **extra)
        return env

    def start(self, storage: str, trials: int, *, study: str = "s", extra: tuple[str, ...] = (),
              env: dict[str, str] | None = None, slow: bool = False) -> subprocess.Popen:
        env = dict(env or self.env())
        if slow:  # every evaluation takes at least 2 s, however fast the machine
            env.setdefault("NASCONV_TEST_DELAY", "during_eval:2")
        # As from a terminal: SIGINT at its default even when this test run was started in the
        # background (`cmd &` in a non-interactive shell ignores SIGINT, and children inherit it).
        return subprocess.Popen(self.cmd(storage, trials, study=study, extra=extra, slow=slow), cwd=self.tmp,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_sigint)

    def run(self, storage: str, trials: int, *, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
        p = self.start(storage, trials, **kw)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"nasconv search did not finish in {timeout} s; stderr: {err[-2000:]}")
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    def traced(self, point: str | None = None) -> list[tuple[str, str, int]]:
        if not self.trace.exists():
            return []
        rows = []
        for line in self.trace.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and (point is None or parts[0] == point):
                rows.append((parts[0], parts[1], int(parts[2])))
        return rows

    def wait_traced(self, point: str, n: int, proc: subprocess.Popen | None = None, timeout: float = 180) -> None:
        t0 = time.monotonic()
        while len(self.traced(point)) < n:
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"the search ended (rc {proc.returncode}) before {n} x {point}: "
                            f"{proc.stderr.read()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                pytest.fail(f"no {n} x {point} within {timeout} s")
            time.sleep(0.05)

    @staticmethod
    def study(storage: str, name: str = "s"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.load_study(study_name=name, storage=storage)

    def check(self, storage: str, trials: int, *, name: str = "s", drivers: int = 1) -> dict:
        """What must hold for a study once its drivers have finished: see the asserts."""
        import numpy as np
        import sqlalchemy as sa
        from optuna.trial import TrialState

        from nasconv.results import study_front
        from nasconv.storage import NasconvTables

        study = self.study(storage, name)
        trials_all = study.get_trials(deepcopy=False)
        assert len({t.number for t in trials_all}) == len(trials_all), "trial numbers must be distinct"
        left = [(t.number, t.state.name) for t in trials_all if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        if drivers == 1:
            assert not left, f"trials left RUNNING/WAITING: {left}"
        else:  # a trial queued again by one driver may wait for the next run; none may stay RUNNING
            assert not [x for x in left if x[1] == "RUNNING"], f"trials left RUNNING: {left}"
        done = [t for t in trials_all if t.state == TrialState.COMPLETE
                and t.user_attrs.get("status") in ("evaluated", "cached")]
        # --trials is the study's total, however many drivers (each claims a trial under the
        # study's claim lock, nasconv.storage.locks)
        assert len(done) == trials, (len(done), trials)
        for t in done:
            a = t.user_attrs
            for key in ("arch", "arch_hash", "macs", "params", "score", "node", "worker_pid", "driver",
                        "settings_key", "status"):
                assert key in a, (t.number, key)
            assert t.values == [a["score"], a["macs"]]
        for t in trials_all:
            if t.state == TrialState.FAIL:
                assert t.user_attrs.get("fail_reason"), f"trial {t.number} failed without a reason"
        evaluated = [t.user_attrs["arch_hash"] for t in done if t.user_attrs["status"] == "evaluated"]
        if drivers == 1:  # a driver never evaluates an architecture it has a result for
            assert len(set(evaluated)) == len(evaluated), f"evaluated twice: {evaluated}"
        settings_key = study.user_attrs["settings_key"]
        tables = NasconvTables(storage)
        try:
            with tables.engine.connect() as c:
                rows = c.execute(sa.text("SELECT arch_hash, COUNT(*) FROM nasconv_eval_cache WHERE settings_key = :k "
                                         "GROUP BY arch_hash"), {"k": settings_key}).all()
            assert all(n == 1 for _, n in rows)
            cached = {h for h, _ in rows}
            assert cached == {t.user_attrs["arch_hash"] for t in done}, "cache rows = the evaluated architectures"
            # The front: recomputed here (score up, MACs down), as nasconv's, and as last snapshotted.
            vals = np.array([[-t.values[0], t.values[1]] for t in done])
            front = sorted(t.number for t, v in zip(done, vals)
                           if not any((w <= v).all() and (w < v).any() for w in vals))
            assert [t.number for t in study_front(study)] == front
            snaps = tables.snapshots(name)
            assert any(s.n_complete == len(done) and s.front_trials == front for s in snaps), \
                "a snapshot holds the final front"
            if drivers == 1:
                assert snaps[-1].n_complete == len(done) and snaps[-1].front_trials == front
            ref = study.user_attrs.get("hv_reference")
            with tables.engine.connect() as c:
                stored = c.execute(sa.text("SELECT value_json FROM nasconv_study_attrs WHERE study_name = :s "
                                           "AND key = 'hv_reference'"), {"s": name}).scalar()
            assert stored is not None and json.loads(stored) == ref, "one hypervolume reference for the study"
        finally:
            tables.dispose()
        return {"study": study, "done": done, "front": front, "evaluated": evaluated}


@pytest.fixture
def search_cli(tmp_path):
    return SearchCLI(tmp_path)


def load_benchmark(name: str) -> Any:
    """``benchmarks/<name>.py`` as a module (its folder on sys.path while it loads, for ``_common``)."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    sys.path.insert(0, str(script.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, script)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(name, module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(script.parent))


@pytest.fixture(scope="session")
def searched(tmp_path_factory):
    """A real 10-candidate search (resnet20, Fashion-MNIST, brief training) shared by the report
    and dashboard tests: (folder, SQLite URL)."""
    from tests.report_helpers import search

    folder = tmp_path_factory.mktemp("searched")
    storage = f"sqlite:///{folder}/studies.db"
    search(storage, 10)
    return folder, storage
