"""`--strategy`: training on several devices or hosts with tf.distribute.

The global batch is `--batch-size` per replica times the number of replicas, and the learning
rate is scaled by the same factor (the linear scaling rule), so a run keeps its recipe when it
moves to more devices.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError

STRATEGIES = ("none", "auto", "mirrored", "multiworker")


def strategy_for(tf: Any, name: str) -> Any | None:
    """None (the default strategy), or the tf.distribute strategy `name` asks for."""
    if name not in STRATEGIES:
        raise EdgeClfError(f"--strategy must be one of {', '.join(STRATEGIES)}")
    if name == "none":
        return None
    if name == "multiworker":
        config = tf_config(os.environ)  # a one-line error for a missing or malformed TF_CONFIG
        task, cluster = config["task"], config["cluster"]
        others = [
            host
            for kind, hosts in cluster.items()
            for i, host in enumerate(hosts)
            if (kind, i) != (task["type"], task["index"])
        ]
        # TensorFlow blocks here, deaf to Ctrl-C, until every task has started: say so
        print(
            f"{task['type']} {task['index']}: waiting for {', '.join(others) or 'no other task'} to join the cluster "
            "(Ctrl-\\ stops the wait)",
            file=sys.stderr,
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if not chief_task(config):
            print(
                f"{task['type']} {task['index']} is not the chief: it trains, and leaves writing the run folder "
                "to the chief",
                file=sys.stderr,
            )
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)


def replicas(strategy: Any | None) -> int:
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def tf_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """The cluster description in TF_CONFIG, checked: {"cluster": {type: [host:port, ...]},
    "task": {"type": type, "index": i}} with the task one of the cluster's."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        raise EdgeClfError("--strategy multiworker needs TF_CONFIG describing the cluster (see the README)")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EdgeClfError(f"TF_CONFIG is not valid JSON: {exc}") from None
    shape = 'TF_CONFIG needs {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}'
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise EdgeClfError(shape)
    if not all(isinstance(hosts, list) and hosts for hosts in cluster.values()):
        raise EdgeClfError(f"{shape}: every cluster entry must be a non-empty list of host:port")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise EdgeClfError(f"{shape}: task type {kind!r} is not in the cluster {sorted(cluster)}")
    if not isinstance(index, int) or isinstance(index, bool):
        raise EdgeClfError(f"{shape}: task index must be a whole number, got {index!r}")
    if not 0 <= index < len(cluster[kind]):
        raise EdgeClfError(f"{shape}: task index {index} is outside the {len(cluster[kind])} {kind} addresses")
    return config


def chief_task(config: dict[str, Any]) -> bool:
    """Whether TF_CONFIG's task is the cluster's chief: the "chief" task, or worker 0 when there is none
    (TensorFlow's own rule)."""
    kind, index = config["task"]["type"], config["task"]["index"]
    if "chief" in config["cluster"]:
        return kind == "chief"
    return kind == "worker" and index == 0


def is_chief(strategy: Any | None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process writes the run folder: always, except on the non-chief workers of a cluster."""
    if strategy is None or getattr(strategy, "cluster_resolver", None) is None:
        return True  # one host
    return chief_task(tf_config(os.environ if environ is None else environ))
