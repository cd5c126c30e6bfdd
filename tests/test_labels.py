import pytest

from edgeclf.edge_app.errors import MetadataError
from edgeclf.edge_app.labels import read_labels

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def test_plain_and_indexed(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("cat\ndog\n\nbird\n")
    assert read_labels(plain) == ("cat", "dog", "bird")
    indexed = tmp_path / "indexed.txt"
    indexed.write_text("1 dog\n0 cat\n2 sea lion\n")
    assert read_labels(indexed) == ("cat", "dog", "sea lion")


@pytest.mark.parametrize(
    "text, message", [("", "empty"), ("0 a\n2 b\n", "without gaps"), ("0 a\n0 b\n", "without gaps")]
)
def test_bad_label_files(tmp_path, text, message):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(MetadataError, match=message):
        read_labels(path)


def test_missing_file(tmp_path):
    with pytest.raises(MetadataError, match="not found"):
        read_labels(tmp_path / "nope.txt")
