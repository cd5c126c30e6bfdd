import json

from benchmarks.cli import main as bench_main


def test_quick_bench_on_converted_models(converted, colour_folder, tmp_path, capsys):
    out = tmp_path / "report.json"
    models = [str(converted[m]) for m in ("int8", "float32")]
    assert bench_main([*models, "--data", str(colour_folder), "--quick", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "tiny_int8.tflite" in table and "tiny_float32.tflite" in table
    report = json.loads(out.read_text())
    rows = {r["quantization"]: r for r in report["rows"]}
    assert rows["int8"]["invoke_ms"]["n"] >= 20 and rows["int8"]["invoke_ms"]["p50"] > 0
    assert rows["int8"]["top1"] > 0.9 and rows["int8"]["agreement_vs_float32"] > 0.9
    assert rows["float32"]["bytes"] > rows["int8"]["bytes"]
    assert report["device"]["cores"] >= 1


def test_bench_class_mismatch(converted, tmp_path, capsys):
    for name in ("cat", "dog", "red"):
        (tmp_path / "data" / name).mkdir(parents=True)
    assert bench_main([str(converted["int8"]), "--data", str(tmp_path / "data"), "--quick"]) == 1
    err = capsys.readouterr().err
    assert "classes do not match" in err and "only in data: ['cat', 'dog']" in err
