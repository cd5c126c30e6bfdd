"""`edgeclf bench --recommend`: ranking measured variants for this device, and the Against-float32 table's
reasons why an int8 row is not faster."""

import json

import pytest

from edgeclf.benchmarks import recommend
from edgeclf.benchmarks import report as report_mod
from edgeclf.benchmarks.cli import main as bench_main
from edgeclf.edge_app.errors import EdgeClfError

DEVICE = {"machine": "x86_64", "cpu": "Test CPU", "cores": 2, "os": "Linux", "python": "3.11", "numpy": "2"}


def row(model, frame_ms, size, top1=None, quant="int8", threads=1, runtime="ai_edge_litert 2.3.0", invoke_ms=None):
    r = {
        "model": model,
        "architecture": model.split("_")[0],
        "quantization": quant,
        "runtime": runtime,
        "threads": threads,
        "invoke_ms": {"p50": invoke_ms or frame_ms * 0.8, "p90": 1.0, "p99": 1.0, "mean": 1.0, "std": 0.1, "n": 40},
        "frame_ms": {"p50": frame_ms, "p90": frame_ms, "p99": frame_ms},
        "fps": 1000 / frame_ms,
        "bytes": size,
        "rss_mb": 50.0,
        "cold_start_s": 0.5,
    }
    if top1 is not None:
        r.update(top1=top1, eval_n=300)
    return r


def no_metadata(model):
    return None


ROWS = [
    row("big_float32.tflite", 9.0, 8_000_000, 0.90, quant="float32"),
    row("big_int8.tflite", 4.0, 2_000_000, 0.90),
    row("big_int8.tflite", 2.5, 2_000_000, 0.90, threads=2),
    row("small_int8.tflite", 1.0, 100_000, 0.86),
    row("mid_int8.tflite", 3.0, 300_000, 0.88),
]


def names(ranked):
    return [(c.model, c.threads) for c in ranked]


def test_rank_by_accuracy_then_size_then_speed():
    ranked = recommend.rank(ROWS, None, accuracy_lookup=no_metadata)
    # 0.90 tie: the int8 file is 4x smaller; its two thread counts: the faster frame first
    assert names(ranked) == [
        ("big_int8.tflite", 2),
        ("big_int8.tflite", 1),
        ("big_float32.tflite", 1),
        ("mid_int8.tflite", 1),
        ("small_int8.tflite", 1),
    ]
    assert ranked[0].command() == "edgeclf run --model big_int8.tflite --runtime ai_edge_litert --threads 2"
    assert all(c.accuracy_source == recommend.MEASURED for c in ranked)


def test_an_accuracy_tie_goes_to_the_smaller_file_even_when_slower():
    rows = [row("x_float32.tflite", 1.0, 400_000, 0.9, quant="float32"), row("x_int8.tflite", 2.0, 100_000, 0.9)]
    assert names(recommend.rank(rows, None, accuracy_lookup=no_metadata)) == [
        ("x_int8.tflite", 1),
        ("x_float32.tflite", 1),
    ]


def test_accuracies_within_the_tie_go_to_the_smaller_file():
    # 0.07 points apart is noise (one accuracy on 10,000 images has a standard error of about 0.4 points)
    rows = [row("r_float32.tflite", 1.0, 400_000, 0.8090, quant="float32"), row("r_int8.tflite", 1.0, 100_000, 0.8083)]
    assert names(recommend.rank(rows, None, accuracy_lookup=no_metadata))[0] == ("r_int8.tflite", 1)
    # beyond the tie, accuracy decides whatever the size
    rows[0] = row("r_float32.tflite", 1.0, 400_000, 0.8150, quant="float32")
    assert names(recommend.rank(rows, None, accuracy_lookup=no_metadata))[0] == ("r_float32.tflite", 1)


def test_budget_excludes_the_most_accurate():
    ranked = recommend.rank(ROWS, 2.0, accuracy_lookup=no_metadata)
    assert names(ranked) == [("small_int8.tflite", 1)]
    # the limit is inclusive: a frame p50 of exactly the budget fits
    assert names(recommend.rank(ROWS, 2.5, accuracy_lookup=no_metadata)) == [
        ("big_int8.tflite", 2),
        ("small_int8.tflite", 1),
    ]


def test_nothing_within_budget():
    assert recommend.rank(ROWS, 0.5, accuracy_lookup=no_metadata) == []
    with pytest.raises(EdgeClfError, match=r"nothing fits --budget-ms 0.5: the fastest .*small_int8.tflite.* 1.00 ms"):
        recommend.advice({"device": DEVICE, "rows": ROWS}, 0.5, accuracy_lookup=no_metadata)


def test_metadata_accuracy_when_not_measured_and_the_source_is_named():
    rows = [row("a_int8.tflite", 2.0, 100), row("b_int8.tflite", 2.0, 100), row("c_int8.tflite", 2.0, 50)]
    lookup = {"a_int8.tflite": 0.80, "b_int8.tflite": 0.85}.get
    ranked = recommend.rank(rows, None, accuracy_lookup=lookup)
    assert [(c.model, c.accuracy, c.accuracy_source) for c in ranked] == [
        ("b_int8.tflite", 0.85, recommend.METADATA),
        ("a_int8.tflite", 0.80, recommend.METADATA),
        ("c_int8.tflite", None, recommend.UNKNOWN),  # unknown accuracy ranks last, however small
    ]
    text = recommend.advice({"device": DEVICE, "rows": rows}, None, accuracy_lookup=lookup)
    assert "85.00% (model metadata: test_accuracy)" in text
    assert "accuracy unknown" in text
    assert text.splitlines()[-1] == "edgeclf run --model b_int8.tflite --runtime ai_edge_litert --threads 1"


def test_measured_accuracy_wins_over_metadata():
    lookup = {"big_int8.tflite": 0.10}.get  # a measurement on --data beats what the file claims
    ranked = recommend.rank(ROWS[1:2], None, accuracy_lookup=lookup)
    assert (ranked[0].accuracy, ranked[0].accuracy_source) == (0.90, recommend.MEASURED)
    text = recommend.advice({"device": DEVICE, "rows": ROWS[1:2]}, None, accuracy_lookup=lookup)
    assert "90.00% (measured on --data, 300 images)" in text


def test_shipped_model_metadata_is_read(shipped_models):
    r = row(str(shipped_models["resnet8_int8"]), 1.0, 95_808)
    (c,) = recommend.rank([r], None)
    assert (c.accuracy, c.accuracy_source) == (0.8083, recommend.METADATA)


def with_ratio(r, base_invoke_ms, invoke_speedup, frame_speedup):
    r = dict(r, invoke_ms={**r["invoke_ms"], "p50": base_invoke_ms / invoke_speedup})
    r["vs_float32"] = {
        "invoke_speedup": invoke_speedup,
        "frame_speedup": frame_speedup,
        "size_ratio": 0.25,
        "top1_delta_points": None,
        "rss_ratio": 1.0,
    }
    return r


@pytest.mark.parametrize(
    ("dot_product", "base_ms", "invoke_x", "frame_x", "reason"),
    [
        (False, 6.29, 1.09, 0.95, "no int8 dot-product instructions"),  # faster invoke, slower frame: still marked
        (False, 0.30, 0.72, 0.80, "no int8 dot-product instructions; model too small to gain"),
        (True, 0.30, 0.72, 1.20, "model too small to gain"),
        (True, 6.00, 0.90, 0.90, "unexplained"),
        (None, 6.00, 0.90, 0.90, "unexplained (int8 dot-product support not recorded)"),
        ("missing", 6.00, 1.00, 1.10, "unexplained (int8 dot-product support not recorded)"),  # x1.00 is not faster
        (False, 6.00, 3.40, 2.10, None),  # faster: no mark whatever the device
    ],
)
def test_not_faster_reason(dot_product, base_ms, invoke_x, frame_x, reason):
    device = dict(DEVICE) if dot_product == "missing" else dict(DEVICE, int8_dot_product=dot_product)
    r = with_ratio(row("m_int8.tflite", 5.0, 100), base_ms, invoke_x, frame_x)
    assert report_mod.not_faster(r, device) == reason


def test_not_faster_marks_int8_rows_only():
    r = with_ratio(row("m_float16.tflite", 5.0, 100, quant="float16"), 6.0, 0.9, 0.9)
    assert report_mod.not_faster(r, dict(DEVICE, int8_dot_product=False)) is None


def synthetic_report(dot_product="missing"):
    device = dict(DEVICE) if dot_product == "missing" else dict(DEVICE, int8_dot_product=dot_product)
    rows = [
        row("m_float32.tflite", 6.0, 400, quant="float32", invoke_ms=6.0),
        with_ratio(row("m_int8.tflite", 6.5, 100), 6.0, 0.9, 0.92),
        row("t_float32.tflite", 1.0, 400, quant="float32", invoke_ms=0.3),
        with_ratio(row("t_int8.tflite", 1.0, 100), 0.3, 1.5, 1.3),
    ]
    return {"device": device, "mode": "quick", "thermal": {"before": {}, "after": {}}, "rows": rows,
            "reference": {"skipped": "test"}}  # fmt: skip


def test_against_float32_table_names_the_reason():
    md = report_mod.to_markdown(synthetic_report(False))
    lines = [line for line in md.splitlines() if line.startswith("| m_int8.tflite | ai_edge_litert")]
    assert len(lines) == 1 and lines[0].endswith(
        "| x0.90 | x0.92 | x0.250 | - | x1.00 | no int8 dot-product instructions |"
    )
    faster = [line for line in md.splitlines() if line.startswith("| t_int8.tflite | ai_edge_litert")]
    assert faster[0].endswith("| x1.50 | x1.30 | x0.250 | - | x1.00 | - |")
    # an old report (no int8_dot_product key) still renders, as unknown
    assert "unexplained (int8 dot-product support not recorded)" in report_mod.to_markdown(synthetic_report())


def test_reason_is_carried_into_json_and_csv(tmp_path):
    rep = synthetic_report(False)
    report_mod.explain(rep)
    assert rep["rows"][1]["vs_float32"]["not_faster"] == "no int8 dot-product instructions"
    assert rep["rows"][3]["vs_float32"]["not_faster"] is None
    assert "not_faster" not in rep["rows"][0].get("vs_float32", {})
    csv_text = report_mod.to_csv(rep)
    header, *lines = csv_text.splitlines()
    assert "vs_float32.not_faster" in header.split(",")
    assert lines[1].endswith(",no int8 dot-product instructions")


def test_recommend_from_a_saved_report(tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"device": DEVICE, "mode": "full", "rows": ROWS}))
    assert bench_main(["--recommend", "--from", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "edgeclf run --model big_int8.tflite --runtime ai_edge_litert --threads 2"
    assert "measured on --data, 300 images" in out

    assert bench_main(["--recommend", "--from", str(path), "--budget-ms", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("edgeclf run --model small_int8.tflite ")

    assert bench_main(["--recommend", "--from", str(path), "--budget-ms", "0.5"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip().startswith("error: nothing fits --budget-ms 0.5") and "edgeclf run" not in captured.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget-ms", "5"], "--budget-ms needs --recommend"),
        (["--from", "x.json"], "--from needs --recommend"),
        (["--recommend", "--budget-ms", "0"], "the budget must be more than 0 ms"),
        (["--recommend", "--budget-ms", "nan"], "expected a finite number, got 'nan'"),
        (["--recommend", "--budget-ms", "inf"], "expected a finite number, got 'inf'"),
        (["--recommend", "--budget-ms", "fast"], "expected a number, got 'fast'"),
        # models and --data are measured; a saved report is not
        (["--recommend", "--from", "x.json", "m.tflite"], "--from ranks a saved report: it takes no models"),
        (["--recommend", "--from", "x.json", "--data", "d"], "--from ranks a saved report: it takes no models"),
        (["--recommend", "--compare", "a.json", "b.json"], "--recommend ranks one report: use it with --from"),
    ],
)
def test_recommend_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_recommend_from_a_missing_report(tmp_path, capsys):
    assert bench_main(["--recommend", "--from", str(tmp_path / "none.json")]) == 1
    assert "cannot read report" in capsys.readouterr().err


def test_recommend_after_a_quick_run(shipped_models, tmp_path, capsys):
    models = [str(shipped_models[m]) for m in ("resnet8_int8", "resnet8_float32")]
    out = tmp_path / "report"
    assert bench_main([*models, "--quick", "--no-reference", "--recommend", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # no --data: accuracies from the metadata; float32's 80.90% against int8's 80.83% is within the tie, so the
    # int8 file (3.3x smaller) is the one to deploy
    assert "80.90% (model metadata: test_accuracy)" in text and "80.83% (model metadata: test_accuracy)" in text
    assert text.splitlines()[-1] == f"edgeclf run --model {models[0]} --runtime ai_edge_litert --threads 1"
    saved = json.loads((out / "report.json").read_text())
    int8 = next(r for r in saved["rows"] if r["quantization"] == "int8")
    assert "not_faster" in int8["vs_float32"]
