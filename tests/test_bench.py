"""Benchmarks: quick runs on tiny models, report files and schema, statistics, compare, bad input."""

import csv
import json
import pickle

import numpy as np
import pytest

from edgeclf.benchmarks import report as report_mod
from edgeclf.benchmarks.cli import main as bench_main
from edgeclf.benchmarks.data import evaluation_set
from edgeclf.benchmarks.stats import interleaved, summarize
from tests.conftest import ROOT

ROW_KEYS = {
    "model",
    "architecture",
    "quantization",
    "runtime",
    "threads",
    "invoke_ms",
    "frame_ms",
    "fps",
    "top1",
    "top5",
    "macro_f1",
    "agreement_vs_float32",
    "bytes",
    "rss_mb",
    "cold_start_s",
}
STAT_KEYS = {"p50", "p90", "p99", "mean", "std", "n"}


@pytest.fixture(scope="module")
def quick_report(converted, tmp_path_factory):
    from tests.conftest import write_image_folder

    root = tmp_path_factory.mktemp("bench")
    data = write_image_folder(root / "colours")
    out = root / "report"
    models = [str(converted[m]) for m in ("int8", "float32")]
    code = bench_main(
        [*models, "--data", str(data), "--quick", "--threads", "1,2", "--no-reference", "--out", str(out)]
    )
    assert code == 0
    return out


def test_quick_run_writes_all_four_reports(quick_report):
    assert sorted(p.name for p in quick_report.iterdir()) == [
        "latency_accuracy.png",
        "report.csv",
        "report.json",
        "report.md",
    ]
    assert (quick_report / "latency_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    md = (quick_report / "report.md").read_text()
    assert "| tiny_int8.tflite | int8 |" in md and "Against float32" in md and "Skipped:" in md
    with open(quick_report / "report.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["threads"] for r in rows} == {"1", "2"}


def test_report_json_schema(quick_report):
    report = json.loads((quick_report / "report.json").read_text())
    assert set(report["device"]) >= {"machine", "cpu", "cores", "os", "python", "numpy", "pi_model"}
    assert len(report["rows"]) == 4
    for row in report["rows"]:
        assert set(row) >= ROW_KEYS
        assert set(row["invoke_ms"]) == STAT_KEYS and row["invoke_ms"]["n"] >= 40
        assert set(row["frame_ms"]) >= {"p50", "p90", "p99"}
        assert 0 < row["invoke_ms"]["p50"] <= row["invoke_ms"]["p90"] <= row["invoke_ms"]["p99"]
        assert row["top1"] > 0.9 and row["rss_mb"] > 10 and row["cold_start_s"] > 0
        assert row["runtime"].startswith("ai_edge_litert")
    int8 = [r for r in report["rows"] if r["quantization"] == "int8"]
    assert all(r["agreement_vs_float32"] > 0.9 and r["vs_float32"]["size_ratio"] < 1 for r in int8)
    assert "skipped" in report["reference"]


def test_percentiles_on_known_inputs():
    stats = summarize(list(range(1, 101)))
    assert stats["p50"] == pytest.approx(50.5) and stats["p90"] == pytest.approx(90.1)
    assert stats["p99"] == pytest.approx(99.01) and stats["mean"] == pytest.approx(50.5)
    assert stats["std"] == pytest.approx(np.std(np.arange(1, 101))) and stats["n"] == 100
    assert summarize([])["n"] == 0


def test_interleaving_gives_every_task_its_share():
    order = []
    tasks = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    samples = interleaved(tasks, 0.0, 16, rounds=4, warmup_s=0)
    assert len(samples["a"]) >= 16 and len(samples["b"]) >= 16
    switches = sum(1 for x, y in zip(order, order[1:]) if x != y)
    assert switches >= 7  # a...b...a...b...: turns, not one block each


def test_compare(quick_report, capsys):
    path = quick_report / "report.json"
    assert bench_main(["--compare", str(path), str(path)]) == 0
    out = capsys.readouterr().out
    assert "| tiny_int8.tflite | int8 | 1 |" in out and "x1.00" in out
    other = json.loads(path.read_text())
    other["rows"] = [dict(r, model="other.tflite") for r in other["rows"]]
    (quick_report.parent / "other.json").write_text(json.dumps(other))
    assert bench_main(["--compare", str(path), str(quick_report.parent / "other.json")]) == 1
    assert "no model / quantization / threads row in common" in capsys.readouterr().err


def test_reference_row_skipped_cleanly_without_tensorflow(converted, monkeypatch, tmp_path):
    import importlib.util

    from edgeclf.benchmarks import bench

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"x")
    config = bench.BenchConfig(models=[converted["int8"]], keras=keras_file, mode=bench.QUICK)
    result = bench.run(config, log=open("/dev/null", "w"))
    assert "TensorFlow is not installed" in result["reference"]["skipped"]
    assert "Skipped: TensorFlow is not installed" in report_mod.to_markdown(result)


def test_cifar_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, size=(6, 3072), dtype=np.uint8)
    data[0, :1024] = 255  # image 0: red plane full -> RGB red channel
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": data, b"labels": [0, 1, 2, 0, 1, 2]}, fh)
    with open(tmp_path / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"cat", b"dog", b"ship"]}, fh)
    got = evaluation_set(tmp_path, ("ship", "cat", "dog"), (32, 32), "stretch")
    assert got.images.shape == (6, 32, 32, 3) and (got.images[0, :, :, 0] == 255).all()
    assert got.labels.tolist() == [1, 2, 0, 1, 2, 0]  # re-indexed to the model's label order


def test_bad_inputs(converted, tmp_path, capsys):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model" * 10)
    assert bench_main([str(junk), "--quick", "--out", str(tmp_path / "r")]) == 1
    assert "not a usable .tflite" in capsys.readouterr().err
    for name in ("cat", "dog", "red"):
        (tmp_path / "data" / name).mkdir(parents=True)
    assert (
        bench_main([str(converted["int8"]), "--data", str(tmp_path / "data"), "--quick", "--out", str(tmp_path / "r")])
        == 1
    )
    err = capsys.readouterr().err
    assert "classes do not match" in err and "only in data: ['cat', 'dog']" in err
    (tmp_path / "empty").mkdir()
    assert (
        bench_main([str(converted["int8"]), "--data", str(tmp_path / "empty"), "--quick", "--out", str(tmp_path / "r")])
        == 1
    )
    assert "no class sub-folders" in capsys.readouterr().err
    assert bench_main([str(tmp_path / "missing.tflite")]) == 1
    with pytest.raises(SystemExit):
        bench_main(["--threads", "0"])


def test_labels_for_a_model_without_metadata(foreign_model, tmp_path, capsys):
    foreign, labels = foreign_model
    out = tmp_path / "report"
    assert bench_main([str(foreign), "--quick", "--no-reference", "--out", str(out)]) == 1
    assert "pass --labels FILE" in capsys.readouterr().err  # and bench has that option:
    assert bench_main([str(foreign), "--labels", str(labels), "--quick", "--no-reference", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    (row,) = report["rows"]
    assert row["architecture"] == "foreign" and row["rss_mb"] > 0  # the probe process got the labels too
    assert bench_main([str(foreign), "--labels", str(tmp_path / "missing.txt"), "--quick", "--no-reference"]) == 1
    assert "labels file not found" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"garbage", b""], ids=["garbage", "empty"])
def test_a_corrupt_keras_reference_is_not_called_missing(content, converted, tmp_path, capsys):
    bad = tmp_path / "model.keras"
    bad.write_bytes(content)
    code = bench_main([str(converted["int8"]), "--quick", "--keras", str(bad), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and f"error: {bad} is not a readable Keras model" in err
    assert "not found" not in err.lower() and not (tmp_path / "r").exists()  # refused before measuring
    assert bench_main([str(converted["int8"]), "--quick", "--keras", str(tmp_path / "none.keras")]) == 1
    assert "Keras model" in capsys.readouterr().err


def test_probe_names_a_zip_that_is_no_keras_model(converted, tmp_path, capsys):
    import zipfile

    from edgeclf.benchmarks import probe

    fake = tmp_path / "model.keras"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("readme.txt", "not a model")
    with pytest.raises(SystemExit) as exc:
        probe.main(["--model", str(converted["int8"]), "--keras", str(fake), "--frames", "1"])
    assert str(exc.value).startswith(f"error: {fake} is not a readable Keras model")


def test_against_float32_rows_name_their_runtime():
    # two runtimes of one model gave two identical-looking ratio rows (no runtime column)
    from edgeclf.benchmarks.report import load, to_markdown

    report = load(ROOT / "benchmarks/results/x86_64-2core-2026-11-28-runtimes/report.json")
    section = to_markdown(report).split("## Against float32", 1)[1].split("##", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| airbench_whiten_int8")]
    assert len(rows) == 2
    assert "| runtime |" in section
    assert any("| ai_edge_litert " in r for r in rows) and any("| tflite_runtime " in r for r in rows)


def test_per_class_recall_with_data(quick_report):
    from tests.conftest import COLOURS

    report = json.loads((quick_report / "report.json").read_text())
    for row in report["rows"]:
        recall = row["recall_per_class"]
        assert list(recall) == list(COLOURS)
        assert np.mean(list(recall.values())) == pytest.approx(row["macro_recall"])
        assert min(recall.values()) > 0.8
    md = (quick_report / "report.md").read_text()
    section = md.split("## Recall per class")[1].split("\n## ")[0].strip().splitlines()
    assert section[2] == "| class | tiny_float32.tflite | tiny_int8.tflite |"  # one column per file, not per thread
    assert [line.split("|")[1].strip() for line in section[4:]] == list(COLOURS)


def test_recall_table_marks_each_models_weakest_class():
    rows = [
        {"model": "m/a_float32.tflite", "threads": 1, "recall_per_class": {"cat": 0.9, "dog": 0.5}},
        {"model": "m/a_float32.tflite", "threads": 2, "recall_per_class": {"cat": 0.9, "dog": 0.5}},
        {"model": "m/a_int8.tflite", "threads": 1, "recall_per_class": {"cat": 0.4, "dog": 0.55}},
    ]
    lines = report_mod.recall_table(rows)
    assert lines[3] == "| class | a_float32.tflite | a_int8.tflite |"
    assert lines[5:] == ["| cat | 90.00% | **40.00%** |", "| dog | **50.00%** | 55.00% |"]
    assert report_mod.recall_table([{"model": "x.tflite", "threads": 1}]) == []  # no --data: no section
