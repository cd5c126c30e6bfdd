import configparser

from edge_app.doctor import main as doctor_main
from tests.conftest import ROOT


def test_doctor_on_this_machine(capsys):
    code = doctor_main([])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in (
        "machine:",
        "python:",
        "numpy:",
        "ai_edge_litert:",
        "opencv:",
        "display:",
        "model:",
        "classification:",
    ):
        assert name in out
    assert out.strip().splitlines()[-1].endswith("0 failed")


def test_doctor_reports_a_broken_model_with_a_fix(tmp_path, capsys):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"garbage" * 20)
    assert doctor_main(["--model", str(junk)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] model:" in out and "fix: pass --model" in out and "1 failed" in out


def test_systemd_unit_runs_headless_and_restarts():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "edge_app" / "systemd" / "edgeclf.service")
    service = unit["Service"]
    assert "edgeclf run" in service["ExecStart"] and "--no-display" in service["ExecStart"]
    assert service["Restart"] == "on-failure" and unit["Install"]["WantedBy"] == "multi-user.target"


def test_doctor_takes_labels_for_a_model_without_metadata(foreign_model, capsys):
    foreign, labels = foreign_model
    assert doctor_main(["--model", str(foreign)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] model:" in out and "pass --labels FILE" in out and "--labels" in out.split("fix:")[1]
    doctor_main(["--model", str(foreign), "--labels", str(labels)])  # classification may fail: foreign normalisation
    out = capsys.readouterr().out
    assert f"[ ok ] model: {foreign} loads" in out and "sample images classified" in out
