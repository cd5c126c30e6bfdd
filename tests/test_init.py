"""`edgeclf train --init RUN_OR_KERAS`: a warm start from a trained model, its head kept or replaced by label,
a lone Keras file with its contract, --resume of such a run, and the refusals."""

import json
import shutil

import keras
import numpy as np
import pytest

from edgeclf.train.cli import main
from tests.conftest import colour_images, write_image_folder

TINY_LR = "1e-12"  # one epoch at this rate moves no weight measurably: the run's model is the init's


def args(data, out, *extra):
    return [
        "--data", str(data), "--val-split", "0.25", "--epochs", "1", "--batch-size", "8",
        "--cache-dir", str(out.parent / "cache"), "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(colour folder with red/green/blue, a tutorial_cnn run trained on it at 16 px)."""
    root = tmp_path_factory.mktemp("init")
    folder = write_image_folder(root / "colours")
    run = root / "base"
    argv = args(folder, run, "--arch", "tutorial_cnn", "--image-size", "16", "--learning-rate", "3e-3")
    assert main([*argv, "--epochs", "3"]) == 0
    return folder, run


def probe():
    return colour_images(24, 16, seed=5)[0].astype(np.float32) / 255.0


def model_of(run):
    return keras.models.load_model(run / "model.keras", compile=False)


def test_same_labels_keep_the_whole_model(base, tmp_path, capsys):
    folder, run = base
    out = tmp_path / "warm"
    capsys.readouterr()
    assert main(args(folder, out, "--init", str(run), "--learning-rate", TINY_LR)) == 0
    err = capsys.readouterr().err
    assert f"init: {run.resolve()}: the same 3 labels, the whole model kept" in err
    before, after = model_of(run).predict(probe(), verbose=0), model_of(out).predict(probe(), verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-5)
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["arch"] == "tutorial_cnn" and record["config"]["data"]["image_size"] == 16
    assert record["init"] == {
        "path": str(run.resolve()),
        "head": "kept",
        "copied_labels": ["blue", "green", "red"],
        "new_labels": [],
        "dropped_labels": [],
    }
    assert json.loads((out / "metrics.json").read_text())["init"] == record["init"]
    assert record["model_info"]["labels"] == ["blue", "green", "red"]


def test_a_lone_file_with_reordered_outputs_is_mapped_by_name(base, tmp_path, capsys):
    """A lone .keras whose outputs are in another order (its sidecar says which): the head's columns are put
    back in the data's order, so the warm-started model answers exactly as the original did."""
    folder, run = base
    model = model_of(run)
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([kernel[:, ::-1], bias[::-1]])  # outputs: red, green, blue
    lone = tmp_path / "lone" / "reversed.keras"
    lone.parent.mkdir()
    model.save(lone)
    sidecar = {"labels": ["red", "green", "blue"], "input": {"color": "RGB", "mean": [0, 0, 0], "std": [255] * 3}}
    (lone.parent / "reversed.json").write_text(json.dumps(sidecar))
    out = tmp_path / "warm"
    assert main(args(folder, out, "--init", str(lone), "--learning-rate", TINY_LR)) == 0
    assert "the whole model kept" in capsys.readouterr().err
    np.testing.assert_allclose(
        model_of(out).predict(probe(), verbose=0), model_of(run).predict(probe(), verbose=0), atol=1e-5
    )


def test_other_labels_get_a_new_head_and_keep_the_layers_before_it(base, tmp_path, capsys):
    folder, run = base
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    for split in ("train", "test"):
        (other / split / "blue").rename(other / split / "navy")  # classes: green, navy, red
    out = tmp_path / "warm"
    assert main(args(other, out, "--init", str(run), "--learning-rate", TINY_LR)) == 0
    err = capsys.readouterr().err
    assert "a new head for 3 labels, the layers before it kept; the old head's rows copied for green, red; " in err
    assert "new: navy; dropped: blue" in err
    old, new = model_of(run), model_of(out)
    for a, b in zip(old.layers[:-1], new.layers[:-1]):
        for x, y in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_allclose(y, x, atol=1e-6)
    (old_kernel, old_bias), (kernel, bias) = old.layers[-1].get_weights(), new.layers[-1].get_weights()
    np.testing.assert_allclose(kernel[:, [0, 2]], old_kernel[:, [1, 2]], atol=1e-6)  # green, red
    np.testing.assert_allclose(bias[[0, 2]], old_bias[[1, 2]], atol=1e-6)
    assert np.max(np.abs(kernel[:, 1] - old_kernel[:, 0])) > 0.01  # navy: the fresh head's column, not blue's
    record = json.loads((out / "run.json").read_text())["init"]
    assert record["head"] == "new" and record["copied_labels"] == ["green", "red"]
    assert record["new_labels"] == ["navy"] and record["dropped_labels"] == ["blue"]


class Crash(Exception):
    pass


def test_an_init_run_resumes_without_its_init(base, tmp_path, capsys, monkeypatch):
    """The init is applied at the start only: a killed --init run resumes from its own state even after the
    init model has gone, and its run.json still says what the warm start kept."""
    from edgeclf.train import resume

    folder, run = base
    init = tmp_path / "init-copy"
    shutil.copytree(run, init)
    commit = resume.commit

    def crashing(run_dir, staged, state, *rest):
        commit(run_dir, staged, state, *rest)
        if state["epochs"] == 1:
            raise Crash

    monkeypatch.setattr(resume, "commit", crashing)
    out = tmp_path / "warm"
    with pytest.raises(Crash):
        main([*args(folder, out, "--init", str(init), "--learning-rate", "1e-3"), "--epochs", "2"])
    monkeypatch.undo()
    shutil.rmtree(init)
    capsys.readouterr()
    assert main(["--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"resuming {out} after epoch 1 of 2" in err and "init:" not in err
    record = json.loads((out / "run.json").read_text())
    assert record["epochs_run"] == 2 and record["init"]["head"] == "kept"
    assert record["config"]["init"]["labels"] == ["blue", "green", "red"]


def test_refusals(base, tmp_path, capsys):
    folder, run = base
    junk = tmp_path / "junk.keras"
    junk.write_text("not a model")
    empty = tmp_path / "empty"
    empty.mkdir()
    lone = tmp_path / "lone.keras"
    shutil.copy(run / "model.keras", lone)
    unfinished = tmp_path / "unfinished"  # killed before its end: run.json holds the config alone
    unfinished.mkdir()
    shutil.copy(run / "model.keras", unfinished / "model.keras")
    (unfinished / "run.json").write_text(json.dumps({"config": {"arch": "tutorial_cnn"}}))
    custom = tmp_path / "custom.keras"
    keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3)], name="custom").save(
        custom
    )
    contract = ["--mean", "0", "--std", "255", "--color", "RGB", "--labels", str(tmp_path / "labels.txt")]
    (tmp_path / "labels.txt").write_text("blue\ngreen\nred\n")
    out = tmp_path / "out"
    cases = [
        (["--init", str(unfinished)], 1, "has no usable model_info"),
        (["--init", str(custom), *contract], 1, "a Keras model named 'custom', not one of the architectures"),
        (["--init", str(custom), *contract, "--arch", "tutorial_cnn"], 1, "not this architecture"),
        (["--init", str(run), "--image-size", "24"], 1, "--image-size 24: the --init model takes 16x16 inputs"),
        (["--init", str(run), "--arch", "resnet8"], 1, "--arch resnet8: the --init model is a tutorial_cnn"),
        (["--init", str(run), "--resize", "center_crop"], 1, "the --init model was trained with stretch"),
        (["--init", str(run), "--weights", "x.h5"], 1, "--weights and --init both give the starting weights"),
        (["--init", str(tmp_path / "nowhere")], 1, "no such run folder or Keras file"),
        (["--init", str(junk)], 1, f"--init {junk} is not a readable Keras model (not a zip archive"),
        (["--init", str(empty)], 1, "no model.keras in it, so not a run folder"),
        (["--init", str(lone)], 1, "has no run.json beside it; pass --mean, --std, --color and --labels"),
        (["--init", str(lone), "--mean", "0", "--std", "255"], 1, "pass --color and --labels"),
        (["--init", str(run), "--mean", "0"], 1, "--mean: only for a lone Keras file"),
        (["--mean", "0"], 2, "--mean: only with --init"),
        (["--resume", str(run), "--init", str(run)], 2, "only --epochs may go with it, not --init"),
    ]
    capsys.readouterr()
    for extra, code, message in cases:
        argv = extra if "--resume" in extra else args(folder, out, *extra)
        if code == 2:
            with pytest.raises(SystemExit) as exc:
                main(argv)
            assert exc.value.code == 2, extra
        else:
            assert main(argv) == 1, extra
        err = capsys.readouterr().err
        assert message in err, (extra, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1 or code == 2, (extra, err)
    assert not out.exists()


def test_a_whitened_net_keeps_its_stem_and_gets_its_own_kind_of_head(base, tmp_path, capsys):
    """airbench_tiny: a frozen whitening stem set from the first run's data (not re-set from the new data) and a
    bias-free head; a different label set gets a bias-free head with the shared labels' columns."""
    folder, _ = base
    first = tmp_path / "first"
    assert main(args(folder, first, "--arch", "airbench_tiny", "--image-size", "16", "--learning-rate", "1e-3")) == 0
    other = tmp_path / "other"
    shutil.copytree(folder / "train" / "red", other / "train" / "red")
    shutil.copytree(folder / "test" / "red", other / "test" / "red")
    for split in ("train", "test"):  # a new class of dark images: whitening them would give another stem
        (other / split / "dark").mkdir()
        for i in range(12):
            shutil.copy(folder / split / "blue" / f"{i:03d}.png", other / split / "dark" / f"{i:03d}.png")
    out = tmp_path / "warm"
    capsys.readouterr()
    assert main(args(other, out, "--init", str(first), "--learning-rate", TINY_LR)) == 0
    err = capsys.readouterr().err
    assert "whitening stem set" not in err and "training airbench_tiny" in err
    old, new = model_of(first), model_of(out)
    for a, b in zip(old.get_layer("whiten").get_weights(), new.get_layer("whiten").get_weights()):
        np.testing.assert_array_equal(b, a)
    old_head, head = old.layers[-3].get_weights(), new.layers[-3].get_weights()
    assert len(head) == 1 and head[0].shape == (56, 2)  # bias-free, one column per class: dark, red
    np.testing.assert_allclose(head[0][:, 1], old_head[0][:, 2], atol=1e-6)  # red
    assert json.loads((out / "run.json").read_text())["init"]["copied_labels"] == ["red"]
