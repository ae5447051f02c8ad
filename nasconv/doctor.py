"""What this machine offers nasconv, and what to do about what it lacks (``nasconv doctor``).

Each check is a :class:`Check`: a name, a status (``ok``; ``note``: optional and absent, nasconv
works without it; ``problem``: a search as asked would fail), what was found, and what to do.
Nothing here downloads, trains or writes: it looks.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nasconv._version import __version__

STATUSES = ("ok", "note", "problem")
#: seconds a storage server may take to answer
CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    found: str
    #: what to do when the status is not ok ("" when nothing is needed)
    todo: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def check_nasconv() -> Check:
    return Check("nasconv", "ok", f"{__version__} on Python {platform.python_version()} ({platform.machine()}, "
                                  f"{os.cpu_count() or '?'} cores)")


def check_torch() -> list[Check]:
    try:
        import torch
    except ImportError:
        return [Check("torch", "problem", "not installed", "pip install torch (https://pytorch.org for a CUDA build)")]
    out = [Check("torch", "ok", f"{torch.__version__} (threads {torch.get_num_threads()})")]
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        names = ", ".join(sorted({torch.cuda.get_device_name(i) for i in range(n)}))
        out.append(Check("CUDA", "ok", f"{n} GPU(s): {names} (CUDA {torch.version.cuda})"))
    else:
        build = f"torch built for CUDA {torch.version.cuda}, no GPU visible" if torch.version.cuda else "CPU-only torch"
        out.append(Check("CUDA", "note", build, "searches run on the CPU; for a GPU, install a CUDA build of torch "
                                                "(https://pytorch.org) and pass --device cuda"))
    return out


def check_bf16() -> Check:
    from nasconv.precision import native_precision

    cpu = native_precision("bf16", "cpu")
    where = ["CPU"] if cpu else []
    try:
        import torch

        if torch.cuda.is_available() and native_precision("bf16", "cuda"):
            where.append("GPU")
    except ImportError:  # reported by check_torch
        pass
    if where:
        return Check("native bf16", "ok", f"on the {' and '.join(where)}: --precision auto trains in bf16 there")
    return Check("native bf16", "note", "no (bf16 would be emulated, slower than fp32)",
                 "nothing to do: --precision auto trains in fp32 here")


def check_ray() -> Check:
    try:
        version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return Check("Ray", "problem", "not installed", "pip install 'ray>=2.40', or search with --inline")
    return Check("Ray", "ok", f"{version} (a local instance per search, or --address HOST:PORT for a cluster)")


def check_storage(url: str) -> Check:
    """Whether the study storage answers (an SQLite file: whether its folder can hold it)."""
    import sqlalchemy as sa

    from nasconv.storage.database import safe_url

    shown = safe_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except Exception as exc:
        return Check("storage", "problem", f"{url!r} is not a SQLAlchemy URL ({exc})",
                     "pass --storage sqlite:///PATH.db or postgresql+psycopg://USER@HOST/DB")
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if not db or db == ":memory:":
            return Check("storage", "note", f"{shown}: in memory, gone when the command ends",
                         "pass --storage sqlite:///studies/nasconv.db to keep studies")
        path = Path(db).expanduser()
        if path.is_file():
            return Check("storage", "ok", f"{shown} ({path.stat().st_size / 1e6:.1f} MB)")
        parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
        if os.access(parent, os.W_OK):
            return Check("storage", "ok", f"{shown}: not there yet, made by the first search")
        return Check("storage", "problem", f"{shown}: cannot create {path} ({parent} is not writable)",
                     "pass --storage sqlite:///A/WRITABLE/PATH.db")
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        return Check("storage", "problem", f"{shown}: cannot connect ({first[:160]})",
                     "start the database server or fix the URL; PostgreSQL: pip install 'nasconv[postgres]', "
                     "createdb NAME, --storage postgresql+psycopg://USER@HOST:5432/NAME")
    return Check("storage", "ok", f"{shown}: reachable")


def check_datasets(data_dir: str | None = None, cache_dir: str | None = None) -> list[Check]:
    """Where ``fashion-mnist``, ``cifar10`` and ``cifar100`` would be read from (nothing is
    downloaded here)."""
    from nasconv.data.cifar import CIFAR10, CIFAR100
    from nasconv.data.cifar_sources import locate_cifar
    from nasconv.data.fashion_mnist import SYSTEM_FASHION_MNIST_DIR, download_dir, fashion_files
    from nasconv.errors import DataError

    out = []
    places = [("--data-dir", Path(data_dir)) if data_dir else None,
              ("NASCONV_DATA", Path(os.environ["NASCONV_DATA"])) if os.environ.get("NASCONV_DATA") else None,
              ("dataset-fashion-mnist", SYSTEM_FASHION_MNIST_DIR), ("cache", download_dir(cache_dir))]
    found = None
    for place in filter(None, places):
        origin, base = place
        for d in (base, base / "fashion-mnist") if origin in ("--data-dir", "NASCONV_DATA") else (base,):
            if all(p.is_file() for p in fashion_files(d.expanduser()).values()):
                found = (origin, d)
                break
        if found:
            break
    if found:
        out.append(Check("data fashion-mnist", "ok", f"{found[1]} ({found[0]})"))
    else:
        out.append(Check("data fashion-mnist", "note", "not on disk (downloaded on first use)",
                         "offline: apt-get install dataset-fashion-mnist, or --data-dir DIR with the four idx files"))
    for kind in (CIFAR10, CIFAR100):
        try:
            src = locate_cifar(kind, "", data_dir, cache_dir, download=False)
        except DataError:
            out.append(Check(f"data {kind.name}", "note", "not on disk (downloaded on first use, about 170 MB)",
                             f"offline: put {kind.folder}/ or {kind.tarball} in --data-dir DIR or $NASCONV_DATA"))
        else:
            out.append(Check(f"data {kind.name}", "ok", f"{src.path} ({src.origin})"))
    out.append(Check("data imagefolder", "ok", "your own images: --data imagefolder:DIR (DIR/<class>/*.png|jpg)"))
    return out


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += (Path(root) / f).stat().st_size
            except OSError:
                pass
    return total


def check_cache(cache_dir: str | None = None) -> Check:
    from nasconv.data.store import cache_root

    root = cache_root(cache_dir)
    if not root.exists():
        return Check("cache", "ok", f"{root} (empty; decoded datasets are kept there)")
    size = folder_size(root)
    return Check("cache", "ok", f"{root} ({size / 1e6:.1f} MB)",
                 f"free it with rm -rf {root} (datasets are decoded again on next use)" if size > 5e9 else "")


def check_latency_tables(url: str) -> Check:
    """The device settings and spaces with a latency lookup table in the storage."""
    import sqlalchemy as sa

    from nasconv.storage.database import safe_url
    from nasconv.storage.tables import LatencyBlockRow, LatencyCalibrationRow

    todo = ("for --latency predict and latency budgets checked before training: "
            "nasconv latency profile --space NAME (a few minutes per space)")
    try:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").expanduser().is_file():
            return Check("latency tables", "note", "none (no storage yet)", todo)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=(
            {"connect_timeout": CONNECT_TIMEOUT_S} if parsed.get_backend_name() == "postgresql" else {}))
        try:
            names = set(sa.inspect(engine).get_table_names())
            if LatencyCalibrationRow.__tablename__ not in names:
                return Check("latency tables", "note", f"none in {safe_url(url)}", todo)
            with engine.connect() as conn:
                rows = conn.execute(sa.select(LatencyCalibrationRow.__table__)).mappings().all()
                blocks = conn.execute(sa.select(sa.func.count()).select_from(LatencyBlockRow.__table__)).scalar() \
                    if LatencyBlockRow.__tablename__ in names else 0
        finally:
            engine.dispose()
    except Exception as exc:
        return Check("latency tables", "note", f"not read ({type(exc).__name__})", "see the storage line")
    if not rows:
        return Check("latency tables", "note", f"none in {safe_url(url)} ({blocks} block timings)", todo)
    shown = sorted({f"{r['space']} on {r['device_name']} ({r['threads']} threads, batch {r['batch']}, "
                    f"{r['precision']})" for r in rows})
    return Check("latency tables", "ok", f"{len(shown)}: {'; '.join(shown[:6])}"
                 + (f" and {len(shown) - 6} more" if len(shown) > 6 else "") + f" ({blocks} block timings)")


def run_checks(*, storage: str, data_dir: str | None = None, cache_dir: str | None = None) -> list[Check]:
    """Every check, in the order ``nasconv doctor`` shows them."""
    return [check_nasconv(), *check_torch(), check_bf16(), check_ray(), check_storage(storage),
            check_latency_tables(storage), *check_datasets(data_dir, cache_dir), check_cache(cache_dir)]
