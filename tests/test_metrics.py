import numpy as np
import pytest

from edgeclf.edge_app import metrics

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def test_report_matches_hand_computation():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    probs = np.eye(3)[pred]
    r = metrics.classification_report(probs, y, ("a", "b", "c"))
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # a: P=1/2 R=1/2; b: P=2/3 R=1; c: P=1 R=1/2
    assert r["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert r["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert r["macro_precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert r["macro_recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert r["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert "top5" not in r


def test_top_k_and_agreement():
    probs = np.array([[0.1, 0.2, 0.3, 0.05, 0.05, 0.05, 0.25], [0.9, 0, 0, 0, 0, 0, 0.1]])
    assert metrics.top_k_accuracy(probs, np.array([6, 6]), 1) == 0.0
    assert metrics.top_k_accuracy(probs, np.array([6, 6]), 2) == 1.0
    assert metrics.classification_report(probs, np.array([2, 0]), tuple("abcdefg"))["top5"] == 1.0
    assert metrics.agreement(probs, probs[::-1]) == 0.0
