"""Model metadata: embedded in the .tflite, mirrored in the sidecar, the --labels fallback. On the shipped models,
so that these `device` tests run where only the edge extra is installed (no Keras to build a model)."""

import json
from pathlib import Path

import pytest

from edgeclf.edge_app import imagedecode, metadata, shipped
from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.errors import MetadataError, ModelLoadError
from tests.conftest import CIFAR10_LABELS

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it

OTHER_LABELS = tuple(label.upper() for label in CIFAR10_LABELS)  # ten labels that are not the embedded ones


def test_embedded_and_sidecar_match(shipped_models):
    checked = []
    for stem, path in shipped_models.items():
        if stem == "default":
            continue  # another name for one of the others
        embedded = metadata.read_embedded(path)
        sidecar = metadata.read_sidecar(path)
        assert embedded is not None and embedded == sidecar, stem
        assert embedded.labels == CIFAR10_LABELS, stem
        assert stem.endswith(f"_{embedded.quantization}"), (stem, embedded.quantization)
        assert json.loads(metadata.sidecar_path(path).read_text()) == embedded.to_dict(), stem
        checked.append(stem)
    assert shipped.DEFAULT_MODEL.stem in checked and "airbench_tiny_float32" in checked, checked


def test_lone_tflite_is_self_describing(shipped_models, tmp_path):
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(shipped_models["default"].read_bytes())
    assert not metadata.sidecar_path(lone).exists()
    info = metadata.load_info(lone)
    assert info.quantization == "int8" and info.labels == CIFAR10_LABELS
    clf = Classifier(lone)  # the appended archive does not disturb the interpreter
    samples = sorted(shipped.SAMPLES_DIR.glob("*.jpg"))  # each named for its class
    assert sorted(sample.stem for sample in samples) == sorted(CIFAR10_LABELS)
    tops = {sample.stem: clf.classify(imagedecode.load(sample), color="BGR")[0][0] for sample in samples}
    right = [stem for stem, top in tops.items() if stem == top]
    assert len(right) >= 9, tops  # 10/10 measured; chance is 1 in 10


def test_re_embedding_replaces_old_metadata(shipped_models, tmp_path):
    model = shipped_models["airbench_tiny_float32"]
    data = model.read_bytes()
    assert data.count(metadata.MEMBER.encode()) == 2  # shipped with its metadata embedded
    info = metadata.load_info(model)
    again = metadata.embed(data, info.with_changes(labels=OTHER_LABELS))
    assert metadata.strip_embedded(again) == metadata.strip_embedded(data)
    assert again.count(metadata.MEMBER.encode()) == 2  # one local header + one central directory entry
    renamed = tmp_path / "renamed.tflite"
    renamed.write_bytes(again)
    assert metadata.read_embedded(renamed) == info.with_changes(labels=OTHER_LABELS)


def labels_file(path: Path, labels: tuple[str, ...]) -> Path:
    path.write_text("\n".join(labels) + "\n")
    return path


def test_missing_metadata_names_the_fallback(shipped_models, tmp_path):
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(metadata.strip_embedded(shipped_models["default"].read_bytes()))
    assert metadata.read_embedded(bare) is None
    with pytest.raises(MetadataError, match="--labels FILE"):
        metadata.load_info(bare)
    with pytest.raises(MetadataError, match="--labels FILE"):
        Classifier(bare)
    clf = Classifier(bare, labels_file=labels_file(tmp_path / "labels.txt", OTHER_LABELS))
    assert clf.labels == OTHER_LABELS
    assert clf.info.architecture == "foreign"


def test_malformed_embedded_metadata(shipped_models, tmp_path):
    import io
    import zipfile

    raw = metadata.strip_embedded(shipped_models["default"].read_bytes())
    buf = io.BytesIO(raw)
    buf.seek(0, 2)
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr(metadata.MEMBER, "{not json")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(buf.getvalue())
    with pytest.raises(MetadataError, match="not valid JSON"):
        metadata.read_embedded(broken)
    with pytest.raises(MetadataError, match="not valid JSON.*--labels FILE"):
        metadata.load_info(broken)
    assert Classifier(broken, labels_file=labels_file(tmp_path / "labels.txt", OTHER_LABELS)).labels == OTHER_LABELS


def test_label_count_must_match_outputs(shipped_models, tmp_path):
    labels = labels_file(tmp_path / "labels.txt", ("a", "b"))
    with pytest.raises(MetadataError, match="2 labels but the model outputs 10"):
        Classifier(shipped_models["default"], labels_file=labels)


def test_not_a_model(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer at all" * 10)
    with pytest.raises(ModelLoadError, match="not a usable .tflite"):
        Classifier(junk)
    with pytest.raises(ModelLoadError, match="not found"):
        Classifier(tmp_path / "missing.tflite")


def test_atomic_writes_leave_no_temp_files_and_normal_modes(tmp_path):
    import os

    from edgeclf.edge_app import files
    from edgeclf.edge_app.errors import EdgeClfError

    target = files.write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask

    def fail(tmp):
        tmp.write_text("partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(EdgeClfError, match="cannot write .*No space left on device"):
        files.atomic_write(tmp_path / "x.json", fail)
    assert json.loads(target.read_text()) == {"a": 1}  # the old file survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
