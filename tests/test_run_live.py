"""`edgeclf run` end to end on files the tests create, and on scripted failing sources."""

import json
import os
import re
import signal

import cv2
import numpy as np
import pytest

from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.run import main as run_main
from edgeclf.edge_app.shipped import DEFAULT_MODEL, MODELS_DIR
from tests.conftest import COLOURS, colour_images
from tests.fakes import ScriptedSource


def colour_video(path, per_class=4, size=(64, 48)):
    """A clip of solid-ish red, green and blue frames (BGR), `per_class` frames each."""
    images, labels = colour_images(60, 16, seed=11)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    order = []
    for cls in range(3):
        for img in images[labels == cls][:per_class]:
            writer.write(cv2.resize(img[:, :, ::-1], size, interpolation=cv2.INTER_NEAREST))
            order.append(COLOURS[cls])
    writer.release()
    return path, order


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_headless_video_json_lines(converted, tmp_path, capsys):
    video, truth = colour_video(tmp_path / "clip.avi")
    assert run_main(["--model", str(converted["int8"]), "--source", str(video), "--no-display"]) == 0
    captured = capsys.readouterr()
    records = json_lines(captured.out)
    assert [r["frame"] for r in records] == list(range(len(truth)))
    assert set(records[0]) >= {"time", "frame", "source", "label", "top", "inference_ms", "fps"}
    assert sum(r["top"][0]["label"] == t for r, t in zip(records, truth)) >= len(truth) - 1
    assert "summary: 12 frames" in captured.err and "end of source" in captured.err


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic", "int8"])
def test_every_quantization_runs_live(mode, converted, tmp_path, capsys):
    video, _ = colour_video(tmp_path / "clip.avi", per_class=2)
    assert run_main(["--model", str(converted[mode]), "--source", str(video), "--max-frames", "3"]) == 0
    assert len(json_lines(capsys.readouterr().out)) == 3


def test_collect_and_save_video(converted, tmp_path, capsys):
    video, truth = colour_video(tmp_path / "clip.avi")
    out_video = tmp_path / "out" / "annotated.mp4"
    argv = [
        "--model",
        str(converted["int8"]),
        "--source",
        str(video),
        "--threshold",
        "1.0",
        "--collect",
        str(tmp_path / "collected"),
        "--collect-every",
        "0",
        "--save-video",
        str(out_video),
    ]
    assert run_main(argv) == 0
    saved = sorted((tmp_path / "collected").glob("*/*.jpg"))
    assert len(saved) == len(truth)  # every frame is below a threshold of 1.0
    assert {p.parent.name for p in saved} <= set(COLOURS)
    assert cv2.imread(str(saved[0])).shape == (48, 64, 3)
    assert all(r["label"] == "uncertain" for r in json_lines(capsys.readouterr().out))
    cap = cv2.VideoCapture(str(out_video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(truth)
    ok, first = cap.read()
    assert ok and first.shape[1] >= 320  # small frames are enlarged so the overlay fits
    assert not list(out_video.parent.glob(".*partial*"))


def test_collect_defaults_to_one_frame_per_label_every_two_seconds(converted, tmp_path):
    video, truth = colour_video(tmp_path / "clip.avi")
    argv = ["--model", str(converted["int8"]), "--source", str(video), "--threshold", "1.0"]
    assert run_main([*argv, "--collect", str(tmp_path / "collected")]) == 0
    saved = sorted((tmp_path / "collected").glob("*/*.jpg"))
    labels = [p.parent.name for p in saved]
    assert 1 <= len(saved) < len(truth) and all(labels.count(name) <= 2 for name in labels)  # 12 frames in < 4 s


def test_a_full_disk_while_collecting_warns_once_and_the_run_goes_on(converted, tmp_path, monkeypatch, capsys):
    def full(path, data, **kwargs):
        raise EdgeClfError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr("edgeclf.edge_app.files.write_bytes", full)
    video, truth = colour_video(tmp_path / "clip.avi")
    argv = ["--model", str(converted["int8"]), "--source", str(video), "--threshold", "1.0", "--collect-every", "0"]
    assert run_main([*argv, "--collect", str(tmp_path / "collected")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("No space left on device") == 1 and "collecting stopped" in captured.err
    assert len(json_lines(captured.out)) == len(truth) and f"summary: {len(truth)} frames" in captured.err


@pytest.mark.parametrize("option", ["--collect-every", "--collect-max-mb", "--collect-min-free-mb", "--json-every"])
def test_negative_rates_and_limits_are_usage_errors(option, converted, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(["--model", str(converted["int8"]), "--collect", str(tmp_path / "c"), option, "-1"])
    assert exc.value.code == 2 and f"{option} must be 0 or more" in capsys.readouterr().err


def frames_in(err):
    return int(re.search(r"summary: (\d+) frames", err).group(1))


def test_json_every_still_prints_each_change_of_label_at_once(converted, tmp_path, capsys):
    video, truth = colour_video(tmp_path / "clip.avi")  # 4 red, 4 green, 4 blue frames
    argv = ["--model", str(converted["int8"]), "--source", str(video), "--json-every", "100"]
    assert run_main(argv) == 0
    captured = capsys.readouterr()
    records = json_lines(captured.out)
    labels = [r["label"] for r in records]
    assert records[0]["frame"] == 0 and set(labels) == set(COLOURS) and 3 <= len(records) <= 5
    assert all(a != b for a, b in zip(labels, labels[1:]))  # a line only when the label changed
    assert frames_in(captured.err) == len(truth)


def test_live_sources_print_one_json_line_a_second_by_default(converted, monkeypatch, capsys):
    monkeypatch.setattr("edgeclf.edge_app.run.parse_source", lambda spec, size: ScriptedSource(delay=0.002))
    argv = ["--model", str(converted["int8"]), "--source", "0", "--threshold", "1.0", "--duration", "0.7"]
    assert run_main(argv) == 0  # every frame 'uncertain': no change of label to print
    captured = capsys.readouterr()
    assert len(json_lines(captured.out)) == 1 and frames_in(captured.err) > 20


def test_json_every_on_a_live_source(converted, monkeypatch, capsys):
    monkeypatch.setattr("edgeclf.edge_app.run.parse_source", lambda spec, size: ScriptedSource(delay=0.002))
    argv = ["--model", str(converted["int8"]), "--source", "0", "--threshold", "1.0", "--duration"]
    assert run_main([*argv, "1.0", "--json-every", "0.3"]) == 0
    captured = capsys.readouterr()
    lines, frames = len(json_lines(captured.out)), frames_in(captured.err)
    assert 2 <= lines <= 4 and frames > 10 * lines
    assert run_main([*argv, "0.3", "--json-every", "0"]) == 0  # 0: every frame, live or not
    captured = capsys.readouterr()
    assert len(json_lines(captured.out)) == frames_in(captured.err) > 10


def test_source_failing_mid_run_retries_then_exits_cleanly(converted, monkeypatch, capsys):
    source = ScriptedSource(frames=4, fail_opens=100)
    monkeypatch.setattr("edgeclf.edge_app.run.parse_source", lambda spec, size: source)
    monkeypatch.setattr("edgeclf.edge_app.capture.Grabber.__init__.__defaults__", (2, 0.01, 0.02))
    code = run_main(["--model", str(converted["int8"]), "--source", "0", "--retries", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: camera unplugged; gave up after 2 retries" in err
    assert source.closes >= 1 and source.opens == 3


def test_sigterm_stops_cleanly_with_a_summary(converted, monkeypatch, capsys):
    source = ScriptedSource(delay=0.005)
    read = source.read

    def read_then_terminate():  # the signal comes mid-run, as the 6th frame is delivered, not after a guessed delay
        frame = read()
        if source.delivered == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return frame

    source.read = read_then_terminate
    monkeypatch.setattr("edgeclf.edge_app.run.parse_source", lambda spec, size: source)
    code = run_main(["--model", str(converted["int8"]), "--source", "0", "--duration", "20"])
    err = capsys.readouterr().err
    assert code == 143 and "(SIGTERM)" in err and source.closes >= 1, err
    # the 6 frames before the signal, and at most the one in hand when it came: the loop stopped, --duration did not
    assert frames_in(err) <= 7, err
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler restored


def test_duration_bound(converted, monkeypatch, capsys):
    monkeypatch.setattr("edgeclf.edge_app.run.parse_source", lambda spec, size: ScriptedSource(delay=0.002))
    assert run_main(["--model", str(converted["int8"]), "--duration", "0.3", "--smooth", "3"]) == 0
    assert "(--duration 0.3)" in capsys.readouterr().err


def test_logits_model_background_class_and_mean_std(tmp_path, capsys):
    import keras

    from edgeclf.convert import modes
    from edgeclf.convert.tflite import to_tflite

    keras.utils.set_random_seed(0)
    # 4 outputs, no softmax (logits); labels file has 3 lines -> index 0 is a background class
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    model.set_weights(
        [np.array([[0, 5, 0, 0], [0, 0, 5, 0], [0, 0, 0, 5]], np.float32), np.array([9, 0, 0, 0], np.float32)]
    )
    path = tmp_path / "foreign.tflite"
    path.write_bytes(to_tflite(model, modes.QUANT_MODES["float32"], "float32"))
    labels = tmp_path / "labels.txt"
    labels.write_text("0 red\n1 green\n2 blue\n")
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    cv2.imwrite(str(tmp_path / "red.png"), image)
    argv = ["--model", str(path), "--labels", str(labels), "--source", str(tmp_path / "red.png"), "--top-k", "3"]
    assert run_main([*argv, "--mean", "0", "--std", "1"]) == 0  # raw 0..255 inputs: red logit 5*255 wins
    rec = json_lines(capsys.readouterr().out)[0]
    assert rec["label"] == "red" and rec["top"][0]["score"] > 0.99
    assert "background" not in [t["label"] for t in rec["top"]]
    assert run_main(argv) == 0  # default foreign normalisation maps to [-1, 1]: red logit 5 < background 9
    rec = json_lines(capsys.readouterr().out)[0]
    assert rec["label"] == "uncertain" and 0 < sum(t["score"] for t in rec["top"]) < 0.5


def test_bad_run_arguments(converted, capsys):
    for argv in (["--top-k", "0"], ["--threshold", "2"], ["--size", "big"], ["--mean", "1,2"], ["--smooth", "0"]):
        with pytest.raises(SystemExit) as exc:
            run_main(["--model", str(converted["int8"]), *argv])
        assert exc.value.code == 2


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="no shipped default model")
def test_shipped_default_model_on_the_samples(capsys):
    samples = sorted((MODELS_DIR / "samples").glob("*.jpg"))
    assert run_main(["--source", str(MODELS_DIR / "samples" / "*.jpg"), "--top-k", "1", "--threshold", "0"]) == 0
    records = json_lines(capsys.readouterr().out)
    correct = sum(r["label"] == os.path.basename(r["source"])[:-4] for r in records)
    assert len(records) == len(samples) == 10 and correct >= 8


def test_display_mode_draws_and_q_quits(converted, tmp_path, monkeypatch, capsys):
    """The window path with OpenCV's GUI calls stubbed (this machine's OpenCV is headless)."""
    import edgeclf.edge_app.run

    shown, keys = [], iter([0xFF, 0xFF, ord("q")])
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(cv2, "destroyWindow", lambda title: None)
    monkeypatch.setattr(edgeclf.edge_app.run, "gui_available", lambda: (True, ""))
    video, _ = colour_video(tmp_path / "clip.avi")
    assert run_main(["--model", str(converted["int8"]), "--source", str(video)]) == 0  # display chosen automatically
    captured = capsys.readouterr()
    assert len(shown) == 3 and shown[0].shape[1] >= 320
    assert captured.out == ""  # display mode prints no JSON unless --json
    assert "(q pressed)" in captured.err
    monkeypatch.setattr(edgeclf.edge_app.run, "gui_available", lambda: (False, "no display"))
    code = run_main(["--model", str(converted["int8"]), "--source", str(video), "--display"])
    assert code == 1 and "cannot --display: no display" in capsys.readouterr().err
