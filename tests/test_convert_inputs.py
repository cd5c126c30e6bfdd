"""Hostile input to `edgeclf convert`: malformed run.json files and corrupt Keras files (issue 12 items 5 and 13)."""

from __future__ import annotations

import copy
import json
import shutil
import zipfile

import pytest

from edgeclf.convert.cli import main as convert_main

# What `edgeclf train` writes (trimmed to the parts convert reads).
GOOD_RUN = {
    "config": {
        "data": {
            "data": "/nowhere/colours",
            "data_dir": None,
            "image_size": 16,
            "resize": "stretch",
            "val_split": 0.25,
            "test_split": 0.2,
            "limit": None,
            "seed": 0,
            "cache_dir": None,
        },
        "arch": "tiny",
    },
    "model_info": {
        "schema": 1,
        "task": "image_classification",
        "labels": ["blue", "green", "red"],
        "input": {"height": 16, "width": 16, "color": "RGB", "mean": [0, 0, 0], "std": [255, 255, 255]},
        "quantization": "float32",
        "architecture": "tiny",
        "params": 0,
    },
}


def _with(path: str, value: object) -> dict:
    """GOOD_RUN with the dotted key set to `value` (or deleted when value is DELETE)."""
    run = copy.deepcopy(GOOD_RUN)
    *parents, last = path.split(".")
    node = run
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return run


DELETE = object()

# (id, run.json text, what the one error line must name besides run.json)
MALFORMED = [
    ("invalid-json", '{"config": ', "not valid JSON"),
    ("empty-file", "", "not valid JSON"),
    ("nested-too-deep", "[" * 100_000 + "]" * 100_000, "JSON"),
    ("number-too-long", json.dumps(_with("config.data.seed", 0)).replace('"seed": 0', '"seed": ' + "9" * 5000), "JSON"),
    ("array", "[]", "not a JSON object"),
    ("string", '"run"', "not a JSON object"),
    ("empty-object", "{}", "'config'"),
    ("config-array", json.dumps(_with("config", [])), "'config'"),
    ("config-string", json.dumps(_with("config", "cifar10")), "'config'"),
    ("no-config-data", json.dumps(_with("config.data", DELETE)), "'config.data'"),
    ("data-as-string", json.dumps(_with("config.data", "cifar10")), "'config.data'"),
    ("data-null", json.dumps(_with("config.data", None)), "'config.data'"),
    ("no-data-source", json.dumps(_with("config.data.data", DELETE)), "'config.data.data'"),
    ("data-source-number", json.dumps(_with("config.data.data", 5)), "'config.data.data'"),
    ("data-dir-number", json.dumps(_with("config.data.data_dir", 5)), "'config.data.data_dir'"),
    ("image-size-string", json.dumps(_with("config.data.image_size", "16")), "'config.data.image_size'"),
    ("image-size-zero", json.dumps(_with("config.data.image_size", 0)), "'config.data.image_size'"),
    ("image-size-bool", json.dumps(_with("config.data.image_size", True)), "'config.data.image_size'"),
    ("image-size-float", json.dumps(_with("config.data.image_size", 16.5)), "'config.data.image_size'"),
    ("resize-unknown", json.dumps(_with("config.data.resize", "zoom")), "'config.data.resize'"),
    ("resize-list", json.dumps(_with("config.data.resize", ["stretch"])), "'config.data.resize'"),
    ("val-split-string", json.dumps(_with("config.data.val_split", "0.1")), "'config.data.val_split'"),
    ("val-split-nan", json.dumps(_with("config.data.val_split", float("nan"))), "'config.data.val_split'"),
    ("test-split-above-one", json.dumps(_with("config.data.test_split", 1.5)), "'config.data.test_split'"),
    ("limit-zero", json.dumps(_with("config.data.limit", 0)), "'config.data.limit'"),
    ("limit-string", json.dumps(_with("config.data.limit", "all")), "'config.data.limit'"),
    ("seed-string", json.dumps(_with("config.data.seed", "0")), "'config.data.seed'"),
    ("seed-negative", json.dumps(_with("config.data.seed", -1)), "'config.data.seed'"),
    ("cache-dir-list", json.dumps(_with("config.data.cache_dir", [])), "'config.data.cache_dir'"),
    ("no-model-info", json.dumps(_with("model_info", DELETE)), "'model_info'"),
    ("model-info-string", json.dumps(_with("model_info", "tiny")), "'model_info'"),
    ("model-info-no-labels", json.dumps(_with("model_info.labels", DELETE)), "'model_info'"),
    ("model-info-bad-input", json.dumps(_with("model_info.input", "16x16")), "'model_info'"),
    ("model-info-bad-mean", json.dumps(_with("model_info.input.mean", 5)), "'model_info'"),
]


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A small untrained 3-class model saved as .keras: loads fine, so only run.json can be at fault."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="tiny",
    )
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


@pytest.fixture()
def contract(tmp_path):
    """The input contract options a lone Keras file needs, so a refusal can only be about the file itself."""
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n", encoding="utf-8")
    return ["--mean", "0", "--std", "255", "--color", "RGB", "--labels", str(labels)]


def one_error_line(capsys, code: int) -> str:
    """Exit 1 and exactly one stderr line, `error: ...`; returns it."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 1, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.mark.parametrize(("text", "key"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_run_json_is_one_error_line_naming_file_and_key(text, key, keras_file, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(keras_file, run / "model.keras")
    (run / "run.json").write_text(text, encoding="utf-8")
    line = one_error_line(capsys, convert_main([str(run), "--quantize", "float32"]))
    assert str(run / "run.json") in line
    assert key in line


def test_run_json_that_is_not_utf8(keras_file, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(keras_file, run / "model.keras")
    (run / "run.json").write_bytes(b'{"config": "\xff\xfe"}')
    line = one_error_line(capsys, convert_main([str(run)]))
    assert str(run / "run.json") in line and "UTF-8" in line


def test_image_size_override_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        convert_main([str(tmp_path), "--image-size", "0"])
    assert exit_.value.code == 2 and "--image-size must be at least 1" in capsys.readouterr().err


def test_a_well_formed_run_json_is_read_as_written(tmp_path):
    from edgeclf.convert.runfile import read_run

    path = tmp_path / "run.json"
    path.write_text(json.dumps(GOOD_RUN), encoding="utf-8")
    run = read_run(path)
    assert run.data.data == "/nowhere/colours" and run.data.image_size == 16 and run.data.val_split == 0.25
    assert run.info.labels == ("blue", "green", "red") and run.info.input.height == 16
    # keys convert does not read, and DataSpec fields an older run.json lacks, are no error
    older = _with("config.data", {"data": "cifar10", "image_size": 32, "future_option": 1})
    path.write_text(json.dumps(older), encoding="utf-8")
    assert read_run(path).data.data == "cifar10" and read_run(path).data.val_split == 0.1


def _zip(path, members: dict[str, str], compression: int = zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def _config_json_damaged(path, compression: int, at: int, fill: bytes):
    """A .keras whose zip directory reads but whose compressed config.json does not inflate: `fill` written `at`
    bytes into its data (deflate: a stored block whose length check fails; LZMA: a corrupt stream)."""
    _zip(path, {"config.json": json.dumps(GOOD_RUN) * 20, "metadata.json": "{}"}, compression)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("config.json")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + at
    data[start : start + len(fill)] = fill
    path.write_bytes(bytes(data))
    return path


def _config_json_header(path, field: int, value: bytes):
    """A .keras with `value` written into a field of config.json's local header and its central directory entry
    (6: the flags, where bit 0 says encrypted; 8: the compression method). Offsets are the local header's; the
    central entry has the 'version made by' field first, so the same field sits 2 bytes further on."""
    _zip(path, {"config.json": "{}", "metadata.json": "{}"})
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")  # config.json was written first: the first central directory entry
    for offset in (field, central + field + 2):
        data[offset : offset + len(value)] = value
    path.write_bytes(bytes(data))
    return path


CORRUPT_KERAS = [
    ("garbage-bytes", lambda p: p.write_bytes(b"\x00garbage\xff" * 3), "not a zip archive"),
    ("empty-file", lambda p: p.write_bytes(b""), "not a zip archive"),
    ("zip-header-only", lambda p: p.write_bytes(b"PK\x03\x04 definitely not a keras archive"), "not a zip archive"),
    ("other-zip", lambda p: _zip(p, {"hello.txt": "hi"}), "no config.json"),
    ("bad-config", lambda p: _zip(p, {"config.json": "{not json", "metadata.json": "{}"}), "config.json"),
    ("config-deflate-damaged", lambda p: _config_json_damaged(p, zipfile.ZIP_DEFLATED, 0, b"\x01" + bytes(4)), "zip"),
    ("config-lzma-damaged", lambda p: _config_json_damaged(p, zipfile.ZIP_LZMA, 6, b"\x55" * 12), "zip"),
    ("config-unknown-compression", lambda p: _config_json_header(p, 8, (99).to_bytes(2, "little")), "config.json"),
    ("config-encrypted", lambda p: _config_json_header(p, 6, b"\x01\x00"), "config.json"),
]


@pytest.mark.parametrize(("make", "reason"), [c[1:] for c in CORRUPT_KERAS], ids=[c[0] for c in CORRUPT_KERAS])
def test_corrupt_keras_file_is_not_a_readable_keras_model(make, reason, tmp_path, capsys, contract):
    path = tmp_path / "x.keras"
    make(path)
    line = one_error_line(capsys, convert_main([str(path), "--data", str(tmp_path), *contract]))
    assert line.startswith(f"error: {path} is not a readable Keras model")
    assert reason in line
    assert "File not found" not in line


def _damaged_member(data: bytes) -> bytes:
    """The archive with bytes in the middle of its largest member overwritten: the zip directory still reads."""
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = max(zf.infolist(), key=lambda i: i.compress_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    return data[:start] + b"\x00" * 64 + data[start + 64 :]


@pytest.mark.parametrize("damage", ["truncated", "damaged-member"])
def test_damaged_copy_of_a_keras_file_is_not_a_readable_keras_model(damage, keras_file, tmp_path, capsys, contract):
    path = tmp_path / "x.keras"
    data = keras_file.read_bytes()
    path.write_bytes(data[:-200] if damage == "truncated" else _damaged_member(data))
    line = one_error_line(capsys, convert_main([str(path), "--data", str(tmp_path), *contract]))
    assert line.startswith(f"error: {path} is not a readable Keras model")
    assert "File not found" not in line


def test_corrupt_h5_file_is_not_a_readable_keras_model(tmp_path, capsys, contract):
    path = tmp_path / "x.h5"
    path.write_bytes(b"garbage, not HDF5")
    line = one_error_line(capsys, convert_main([str(path), "--data", str(tmp_path), *contract]))
    assert line.startswith(f"error: {path} is not a readable Keras model")
