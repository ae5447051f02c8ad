"""An image folder as a task: what is read and held out, the metric for unbalanced classes, the
proxy's length, and bad folders refused in one line with nothing stored (issue #34)."""

from __future__ import annotations

import math
import shutil

import pytest

from nasconv.cli import main
from nasconv.data import load_dataset
from nasconv.data.task import balanced_accuracy, describe_task
from nasconv.errors import DataError, UnknownNameError
from nasconv.evaluate import EvalConfig
from nasconv.search.task import MAX_LENGTH_FACTOR, bind_task, proxy_length, proxy_too_short
from nasconv.spaces import load_space
from tests.test_data import save_image


def make(root, counts: dict[str, dict[str, int]]):
    """``{"train": {"cat": 3, ...}, "test": {...}}`` -> a folder of that many PNGs per class."""
    for split, classes in counts.items():
        for c, (name, n) in enumerate(classes.items()):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                save_image(root / split / name / f"{i}.png", (40 * c + 3 * i) % 256)
    return root


def test_test_folder_held_out_is_named_and_warned_about(tmp_path):
    root = make(tmp_path, {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2}})
    ds = load_dataset(f"imagefolder:{root}")
    s = describe_task(ds, f"imagefolder:{root}", train_resolution=28)
    assert (s.n_train, s.n_val, s.num_classes, s.test_split) == (8, 4, 2, True)
    line = s.line()
    assert "2 classes" in line and "8 train images" in line and "4 held out" in line
    assert "the folder test/ (the test split)" in line and "stored 8x8, trained at 28x28" in line
    assert s.metric == "accuracy" and "within 2x" in line
    (warning,) = s.warnings()
    assert "selected on the test split" in warning and "--holdout 0.1" in warning


def test_val_folder_wins_and_holdout_leaves_val_and_test_unread(tmp_path):
    root = make(tmp_path, {"train": {"a": 10, "b": 10}, "val": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    s = describe_task(load_dataset(f"imagefolder:{root}"), f"imagefolder:{root}")
    assert s.held_out == "the folder val/" and not s.warnings() and s.n_val == 4
    # test/ with a class train/ lacks would be refused; with --holdout it is never read
    make(tmp_path, {"test": {"zebra": 1}})
    ds = load_dataset(f"imagefolder:{root}", holdout=0.2)
    assert (len(ds.train_y), len(ds.val_y)) == (16, 4) and ds.classes == ("a", "b")
    s = describe_task(ds, f"imagefolder:{root}", holdout=0.2)
    assert s.held_out.startswith("0.2 of each class of train/") and not s.test_split


def test_unbalanced_held_out_classes_default_to_balanced_accuracy(tmp_path):
    root = make(tmp_path, {"train": {"a": 6, "b": 6, "c": 6}, "val": {"a": 7, "b": 3, "c": 2}})
    ds = load_dataset(f"imagefolder:{root}")
    s = describe_task(ds, f"imagefolder:{root}")
    assert s.metric == "balanced-accuracy" and "3.5x" in s.line()
    assert math.isclose(s.majority_rate, 7 / 12) and math.isclose(s.chance_rate, 1 / 3)
    assert describe_task(ds, f"imagefolder:{root}", metric="accuracy").metric == "accuracy"
    with pytest.raises(UnknownNameError):
        describe_task(ds, f"imagefolder:{root}", metric="f1")


def test_balanced_accuracy_and_its_standard_error():
    ba, se, (lo, hi) = balanced_accuracy([8, 1], [10, 2])
    assert math.isclose(ba, (0.8 + 0.5) / 2)
    p1, p2 = 9 / 12, 2 / 4  # add-one estimates in the variance
    assert math.isclose(se, math.sqrt(p1 * (1 - p1) / 10 + p2 * (1 - p2) / 2) / 2)
    assert lo < ba < hi
    # equal classes, recall 1/2: the pooled binomial SE of 1,000 images
    _, se, _ = balanced_accuracy([50] * 10, [100] * 10)
    assert math.isclose(se, math.sqrt(0.25 / 1000), rel_tol=1e-9)
    # a perfectly recalled small class still carries noise
    assert balanced_accuracy([3, 3], [3, 3])[1] > 0


@pytest.mark.parametrize("bad, message", [
    ({"train": {"a": 2, "b": 2}, "val": {"a": 1}}, "class 'b' has no image in the held-out folder"),
    ({"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1, "c": 1}}, "has classes not in"),
    ({"train": {"Cat": 2, "cat ": 2}, "val": {"Cat": 1, "cat ": 1}}, "same name after normalisation"),
])
def test_bad_folders_are_refused_in_one_line(tmp_path, bad, message):
    root = make(tmp_path / "d", bad)
    with pytest.raises(DataError, match=message):
        load_dataset(f"imagefolder:{root}")


@pytest.mark.parametrize("bad, argv, code", [
    ({"train": {"a": 2, "b": 2}, "val": {"a": 1}}, [], 1),
    ({"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}}, ["--metric", "f1"], 2),
    ({"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}}, ["--holdout", "1.5"], 2),  # parse time
])
def test_search_refuses_bad_input_in_one_line_and_stores_nothing(tmp_path, capsys, bad, argv, code):
    root = make(tmp_path / "d", bad)
    db = tmp_path / "s.db"
    assert main(["search", "--space", "resnet20", "--data", f"imagefolder:{root}", "--trials", "1", "--inline",
                 "--no-latency", "--objectives", "accuracy,params", "--storage", f"sqlite:///{db}", *argv]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nasconv: error:")
    assert not db.exists()


def test_proxy_length_keeps_the_10_class_exposure_per_class():
    assert proxy_length(8000, 2000, 10, 50_000).train_images == 8000
    assert proxy_length(8000, 2000, 2, 50_000).train_images == 8000  # never shorter than the default
    p = proxy_length(8000, 2000, 43, 39_000)
    assert (p.train_images, p.epochs, p.val_images) == (34_400, 1, 8600)
    p = proxy_length(8000, 2000, 43, 9_000)  # a small training split: epochs over it
    assert p.epochs == 4 and p.train_images == 8600 and p.train_images <= 9_000
    p = proxy_length(8000, None, 1000, 1_000_000)
    assert p.factor == MAX_LENGTH_FACTOR and p.train_images == 80_000 and p.val_images is None


def test_bind_task_fits_head_metric_and_length_to_the_data(tmp_path):
    counts = {f"c{i:02d}": 4 + (i % 3) * 4 for i in range(20)}
    root = make(tmp_path, {"train": counts, "val": {k: max(1, v // 4) for k, v in counts.items()}})
    cfg = EvalConfig(data=f"imagefolder:{root}")
    b = bind_task(cfg, load_space("resnet20"), choose_metric=True, size_proxy=True)
    assert b.space.num_classes == 20 and b.space.baseline().num_classes == 20
    assert b.eval.metric == "balanced-accuracy"  # held-out classes 1 to 3 images
    assert b.eval.train.train_images * b.eval.train.epochs >= 16_000 and b.proxy_length.factor == 2.0
    kept = bind_task(cfg, load_space("resnet20"), choose_metric=False, size_proxy=False)
    assert kept.eval.metric == "accuracy" and kept.eval.train == cfg.train
    # the settings key of a study made before the metric and the held-out fraction existed stays
    assert "metric" not in cfg.keyed_settings() and "holdout" not in cfg.keyed_settings()
    assert b.eval.keyed_settings()["metric"] == "balanced-accuracy"


def test_a_baseline_near_the_majority_rate_says_the_proxy_is_too_short(tmp_path):
    root = make(tmp_path, {"train": {"a": 4, "b": 4}, "val": {"a": 8, "b": 2}})
    s = describe_task(load_dataset(f"imagefolder:{root}"), f"imagefolder:{root}", metric="accuracy")
    cfg = EvalConfig(data=f"imagefolder:{root}")
    line = proxy_too_short({"accuracy": 0.82, "accuracy_se": 0.05}, s, cfg)
    assert "within 3 SE of the majority-class rate 0.800" in line and "--train-images 24000" in line
    assert proxy_too_short({"accuracy": 0.99, "accuracy_se": 0.01}, s, cfg) is None
    assert proxy_too_short(None, s, cfg) is None


@pytest.mark.slow
def test_evaluate_prints_what_it_read_and_the_interval(tmp_path, capsys):
    root = make(tmp_path, {"train": {"a": 12, "b": 12, "c": 12}, "test": {"a": 6, "b": 2, "c": 2}})
    assert main(["evaluate", "--space", "resnet20", "--data", f"imagefolder:{root}", "--train-images", "32",
                 "--no-latency"]) == 0
    captured = capsys.readouterr()
    first = captured.out.splitlines()[0]
    assert first.startswith(f"data: imagefolder:{root}: 3 classes") and "metric balanced-accuracy" in first
    assert "selected on the test split" in captured.err
    acc = next(line for line in captured.out.splitlines() if line.startswith("balanced acc."))
    assert "+-" in acc and "95% interval [" in acc and "on 10 held-out images" in acc
    shutil.rmtree(root / "test" / "c")
    assert main(["evaluate", "--space", "resnet20", "--data", f"imagefolder:{root}", "--no-latency"]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_a_class_left_without_held_out_images_is_refused(tmp_path):
    root = make(tmp_path, {".": {"a": 10, "b": 1}})  # no splits: one image cannot be split
    with pytest.raises(DataError, match="class 'b' has no image in the held-out split"):
        describe_task(load_dataset(f"imagefolder:{root}"), f"imagefolder:{root}")


def test_a_cluster_driver_fits_the_head_where_it_reads_the_data_and_says_so_where_not(tmp_path):
    from nasconv.search.config import SearchConfig
    from nasconv.search.driver import SearchDriver

    root = make(tmp_path / "d", {"train": {f"c{i}": 3 for i in range(12)}, "val": {f"c{i}": 1 for i in range(12)}})
    base = dict(space="resnet20", budget="1gflops", storage=f"sqlite:///{tmp_path}/s.db", address="auto",
                runner="ray", progress=False)
    here = SearchDriver(SearchConfig(**base, study_name="here", eval=EvalConfig(data=f"imagefolder:{root}")))
    here.tables.dispose()
    assert here.space.num_classes == 12 and here.task is not None and not here.notes
    away = SearchDriver(SearchConfig(**base, study_name="away",
                                     eval=EvalConfig(data=f"imagefolder:{tmp_path}/on-the-cluster")))
    away.tables.dispose()
    assert away.task is None and away.space.num_classes == 10
    (note,) = away.notes
    assert "not readable on this machine" in note and "10 classes" in note
