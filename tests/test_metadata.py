import json

import numpy as np
import pytest

from edge_app import metadata
from edge_app.classifier import Classifier
from edge_app.errors import MetadataError, ModelLoadError
from tests.conftest import COLOURS, colour_images

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def test_embedded_and_sidecar_match(converted):
    path = converted["int8"]
    embedded = metadata.read_embedded(path)
    sidecar = metadata.read_sidecar(path)
    assert embedded is not None and embedded == sidecar
    assert embedded.labels == COLOURS
    assert json.loads(metadata.sidecar_path(path).read_text()) == embedded.to_dict()


def test_lone_tflite_is_self_describing(converted, tmp_path):
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(converted["int8"].read_bytes())
    assert not metadata.sidecar_path(lone).exists()
    info = metadata.load_info(lone)
    assert info.quantization == "int8" and info.labels == COLOURS
    clf = Classifier(lone)  # the appended archive does not disturb the interpreter
    x, y = colour_images(50, 16, seed=5)
    pred = np.array([clf.labels.index(clf.classify(img, color="RGB")[0][0]) for img in x])
    assert np.mean(pred == y) > 0.8


def test_re_embedding_replaces_old_metadata(converted):
    data = converted["float32"].read_bytes()
    info = metadata.load_info(converted["float32"])
    again = metadata.embed(data, info.with_changes(labels=("x", "y", "z")))
    assert metadata.strip_embedded(again) == metadata.strip_embedded(data)
    assert again.count(metadata.MEMBER.encode()) == 2  # one local header + one central directory entry


def test_missing_metadata_names_the_fallback(converted, tmp_path):
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(metadata.strip_embedded(converted["int8"].read_bytes()))
    assert metadata.read_embedded(bare) is None
    with pytest.raises(MetadataError, match="--labels FILE"):
        metadata.load_info(bare)
    with pytest.raises(MetadataError, match="--labels FILE"):
        Classifier(bare)
    labels = tmp_path / "labels.txt"
    labels.write_text("r\ng\nb\n")
    clf = Classifier(bare, labels_file=labels)
    assert clf.labels == ("r", "g", "b")
    assert clf.info.architecture == "foreign"


def test_malformed_embedded_metadata(converted, tmp_path):
    import io
    import zipfile

    raw = metadata.strip_embedded(converted["int8"].read_bytes())
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
    labels = tmp_path / "labels.txt"
    labels.write_text("r\ng\nb\n")
    assert Classifier(broken, labels_file=labels).labels == ("r", "g", "b")


def test_label_count_must_match_outputs(converted, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    with pytest.raises(MetadataError, match="2 labels but the model outputs 3"):
        Classifier(converted["int8"], labels_file=labels)


def test_not_a_model(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer at all" * 10)
    with pytest.raises(ModelLoadError, match="not a usable .tflite"):
        Classifier(junk)
    with pytest.raises(ModelLoadError, match="not found"):
        Classifier(tmp_path / "missing.tflite")


def test_atomic_writes_leave_no_temp_files_and_normal_modes(tmp_path):
    import os

    from edge_app import files
    from edge_app.errors import EdgeClfError

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
