import json

import pytest

from edgeclf.edge_app.contract import InputSpec, ModelInfo
from edgeclf.edge_app.errors import MetadataError

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def make_info(**changes):
    base = dict(labels=("a", "b"), input=InputSpec(32, 32), quantization="int8", architecture="x", params=12)
    base.update(changes)
    return ModelInfo(**base)


def test_round_trip_through_json():
    info = make_info(metrics={"test_accuracy": 0.5})
    data = json.loads(json.dumps(info.to_dict()))
    assert list(data) == [
        "schema",
        "task",
        "labels",
        "input",
        "quantization",
        "architecture",
        "params",
        "dataset",
        "metrics",
    ]
    assert data["input"] == {
        "height": 32,
        "width": 32,
        "color": "RGB",
        "mean": [0.0, 0.0, 0.0],
        "std": [255.0, 255.0, 255.0],
        "resize": "stretch",
    }
    assert ModelInfo.from_dict(data) == info


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("labels"), "lacks required key"),
        (lambda d: d.update(labels="abc"), "labels must be a list"),
        (lambda d: d.update(labels=[]), "non-empty list"),
        (lambda d: d.update(schema=3), "unsupported metadata schema"),
        (lambda d: d.update(quantization="int4"), "quantization must be one of"),
        (lambda d: d["input"].update(std=[0, 1, 1]), "std must not contain zero"),
        (lambda d: d["input"].update(mean=[1, 2]), "mean must be three numbers"),
        (lambda d: d["input"].update(resize="squash"), "resize must be one of"),
        (lambda d: d["input"].update(color="YUV"), "color must be one of"),
        (lambda d: d["input"].pop("height"), "height and width"),
        (lambda d: d["input"].update(height="32"), "must be integers"),
        (lambda d: d.update(params=-1), "params must be"),
        (lambda d: d.update(task="detection"), "task"),
    ],
)
def test_malformed_metadata_is_a_clear_error(mutate, message):
    data = make_info().to_dict()
    mutate(data)
    with pytest.raises(MetadataError, match=message):
        ModelInfo.from_dict(data)


def test_not_an_object():
    with pytest.raises(MetadataError, match="not a JSON object"):
        ModelInfo.from_dict([1, 2])


def test_value_range_follows_mean_and_std():
    assert InputSpec(8, 8).value_range == (0.0, 1.0)
    assert InputSpec(8, 8, mean=(127.5,) * 3, std=(127.5,) * 3).value_range == (-1.0, 1.0)
