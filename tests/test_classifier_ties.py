"""Ties in a quantised output: the reported top-1 is the lowest class index, as argmax (and the metrics) pick."""

import numpy as np
import pytest

from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.shipped import DEFAULT_MODEL

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def test_top_1_on_a_tie_is_argmax():
    # An int8 output has 256 levels, so exact ties are common (deer/0064.jpg: 0.3771 and 0.3771); numpy's
    # default argsort is not stable, and the label the app showed could differ from the one scored.
    clf = Classifier(DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        probs = rng.integers(0, 20, len(clf.labels)).astype(np.float32) / 20
        ranked = clf.top_k(probs, 3)
        assert ranked[0][0] == clf.labels[int(np.argmax(probs))], probs
        assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
