"""One benchmark run: every model x runtime x thread count, interleaved, plus accuracy, memory,
cold start and the tutorial's Keras deployment as a reference row."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.benchmarks import device
from edgeclf.benchmarks.data import evaluation_set, limit
from edgeclf.benchmarks.probe import frame_640x480
from edgeclf.benchmarks.report import ordered
from edgeclf.benchmarks.stats import Settled, interleaved, summarize
from edgeclf.edge_app import metrics, preprocess
from edgeclf.edge_app.classifier import FOREIGN, Classifier
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.live import FrameStep
from edgeclf.edge_app.quantmodes import MODES, REFERENCE


@dataclass(frozen=True)
class Mode:
    """How long to measure: `quick` takes about 2 s per variant (tests, CI), `full` about a minute per model.

    `rounds` blocks per variant, each after a warm-up until its timings settle (at most `warmup_s`)."""

    invoke_s: float
    invoke_n: int
    frame_s: float
    frame_n: int
    eval_limit: int | None
    probe_frames: int
    rounds: int
    warmup_s: float


# quick: 8 short blocks, each after its own warm-up, so a burst of load on a shared machine lands in one of many.
# On a shared 2-core EPYC, 3 blocks of 0.1 s once put resnet8's frame ratio 21% off a full run's; with these,
# 3 quick runs gave all 24 int8/float32 ratios within 10% of the full run's, at ~1.7 s per variant including
# the probe process (benchmarks/results/x86_64-2core-2026-11-28-quick-check/)
QUICK = Mode(invoke_s=0.4, invoke_n=40, frame_s=0.6, frame_n=20, eval_limit=300, probe_frames=5, rounds=8, warmup_s=0.2)
FULL = Mode(
    invoke_s=15.0, invoke_n=300, frame_s=10.0, frame_n=200, eval_limit=None, probe_frames=50, rounds=5, warmup_s=0.5
)


@dataclass(frozen=True)
class BenchConfig:
    models: list[Path]
    threads: list[int] = field(default_factory=lambda: [1])
    runtimes: list[str | None] = field(default_factory=lambda: [None])
    data: Path | None = None
    keras: Path | None = None
    mode: Mode = FULL
    eval_limit: int | None = None
    labels: Path | None = None  # labels file for models without metadata (third-party models)


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def keras_problem(path: Path) -> str | None:
    """Why `path` cannot be a Keras model file, found without TensorFlow; None when it may be one."""
    if not path.exists():
        return f"Keras model {path} not found"
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(HDF5_SIGNATURE))
    except OSError as exc:
        return f"cannot read the Keras model {path}: {exc.strerror or exc}"
    if head == HDF5_SIGNATURE or zipfile.is_zipfile(path):
        return None
    return f"{path} is not a readable Keras model (neither a .keras zip archive nor an HDF5 .h5 file)"


def _probe(
    model: Path,
    runtime: str | None,
    threads: int,
    frames: int,
    keras: Path | None = None,
    labels: Path | None = None,
) -> dict[str, Any]:
    """Run edgeclf.benchmarks.probe in a fresh process: cold start (spawn to first result), frame times, peak RSS."""
    cmd = [
        sys.executable,
        "-m",
        "edgeclf.benchmarks.probe",
        "--model",
        str(model),
        "--threads",
        str(threads),
        "--frames",
        str(frames),
    ]
    if runtime:
        cmd += ["--runtime", runtime]
    if keras:
        cmd += ["--keras", str(keras)]
    if labels:
        cmd += ["--labels", str(labels)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stdout.readline() if proc.stdout else ""
    cold = time.perf_counter() - start
    rest, err = proc.communicate(timeout=600)
    if proc.returncode != 0 or not first.startswith("{"):
        last = (err.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
        raise EdgeClfError(f"probe of {(keras or model).name} failed: {last}")
    result = json.loads(rest.strip().splitlines()[-1])
    return {"cold_start_s": round(cold, 3), "rss_mb": result["rss_mb"], "probe_frame_ms": result["frame_ms"]}


def shown_path(path: Path) -> str:
    """Relative to the working directory when below it (reports are shared), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _invoke_task(clf: Classifier) -> Any:
    """interpreter.invoke on a fixed, already set input: nothing else inside the timed call."""
    x = np.zeros((1, clf.spec.height, clf.spec.width, 3), np.float32)
    clf.predict(x)  # sets batch 1 and the input tensor once
    return clf.interpreter.invoke


def run(config: BenchConfig, log: Any = sys.stderr) -> dict[str, Any]:
    """Measure every variant; returns the report dict (device, rows, reference, notes)."""
    if not config.models:
        raise EdgeClfError("no models to benchmark")
    mode = config.mode
    info = device.describe()
    thermal_before = device.thermal_state()
    variants: dict[str, tuple[Path, str | None, int, Classifier]] = {}
    for model in config.models:
        for runtime in config.runtimes:
            for threads in config.threads:
                clf = Classifier(model, config.labels, runtime=runtime, threads=threads)
                variants[f"{model.name}|{clf.runtime}|{threads}"] = (model, runtime, threads, clf)
    print(f"benchmarking {len(variants)} variant(s) on {info['cpu']} ({info['cores']} cores)", file=log)
    invoke_warm: dict[str, list[Settled]] = {}
    frame_warm: dict[str, list[Settled]] = {}
    invoke = interleaved(
        {k: _invoke_task(v[3]) for k, v in variants.items()},
        mode.invoke_s,
        mode.invoke_n,
        mode.rounds,
        mode.warmup_s,
        invoke_warm,
    )
    frame = frame_640x480()
    steps = {k: FrameStep(v[3]) for k, v in variants.items()}
    frames = interleaved(
        {k: (lambda s=s: s(frame)) for k, s in steps.items()},
        mode.frame_s,
        mode.frame_n,
        mode.rounds,
        mode.warmup_s,
        frame_warm,
    )
    accuracy = _accuracy(config, variants, mode)
    rows = []
    for key, (model, runtime, threads, clf) in variants.items():
        print(f"  probing {key}", file=log)
        frame_stats = summarize(frames[key])
        row = {
            "model": shown_path(model),
            "architecture": clf.info.architecture,
            "quantization": clf.info.quantization,
            "runtime": str(clf.runtime),
            "threads": threads,
            "input": f"{clf.spec.height}x{clf.spec.width} {np.dtype(clf.input_quant.dtype).name}",
            "invoke_ms": summarize(invoke[key]),
            "frame_ms": frame_stats,
            "fps": round(1000.0 / frame_stats["mean"], 1) if frame_stats["mean"] else None,
            **accuracy.get(str(model), {}),
            "bytes": model.stat().st_size,
            **_probe(model, runtime, threads, mode.probe_frames, labels=config.labels),
            "warmup": _warmup_record(invoke_warm.get(key, []), frame_warm.get(key, [])),
        }
        row["flags"] = row_flags(row)
        rows.append(row)
    rows = ordered(rows)
    _add_ratios(rows)
    report: dict[str, Any] = {
        "device": info,
        "mode": "quick" if mode is QUICK else "full",
        "thermal": {"before": thermal_before, "after": device.thermal_state()},
        "rows": rows,
    }
    report["reference"] = _reference(config, rows, mode, log)
    return report


def _warmup_record(invoke: list[Settled], frame: list[Settled]) -> dict[str, Any]:
    """Warm-up calls before each timed block, and how many blocks a cap started before the timings settled."""
    return {
        "invoke_calls": [w.calls for w in invoke],
        "frame_calls": [w.calls for w in frame],
        "unsettled_blocks": sum(not w.settled for w in invoke + frame),
    }


def row_flags(row: dict[str, Any]) -> list[str]:
    """What makes a row's timings suspect.

    frame_below_invoke: a frame runs preprocessing, invoke and post-processing, so its p50 below the invoke p50
    means one of the two was measured cold or unsettled. warmup_capped: a block began before its warm-up
    settled (a loaded machine, or a model whose timings drift)."""
    flags = []
    inv, fr = (row.get("invoke_ms") or {}).get("p50"), (row.get("frame_ms") or {}).get("p50")
    if inv is not None and fr is not None and fr < inv:
        flags.append("frame_below_invoke")
    if (row.get("warmup") or {}).get("unsettled_blocks"):
        flags.append("warmup_capped")
    return flags


def _accuracy(config: BenchConfig, variants: dict[str, Any], mode: Mode) -> dict[str, dict[str, Any]]:
    """Top-1 / top-5 / macro F1 / each class's recall per model (threads do not change the outputs), and
    agreement with float32."""
    if config.data is None:
        return {}
    n = config.eval_limit if config.eval_limit is not None else mode.eval_limit
    results: dict[str, dict[str, Any]] = {}
    probs: dict[str, np.ndarray] = {}
    by_model = {}
    for model, _runtime, _threads, clf in variants.values():
        by_model.setdefault(str(model), clf)
    for name, clf in by_model.items():
        data = limit(evaluation_set(config.data, clf.labels, (clf.spec.height, clf.spec.width), clf.spec.resize), n)
        p = clf.predict(preprocess.normalize_rgb(data.images, clf.spec))
        report = metrics.classification_report(p, data.labels, clf.labels)
        results[name] = {
            "top1": report["accuracy"],
            "top5": report.get("top5"),
            "macro_precision": report["macro_precision"],
            "macro_recall": report["macro_recall"],
            "macro_f1": report["macro_f1"],
            "recall_per_class": {name: m["recall"] for name, m in report["per_class"].items()},
            "eval_n": report["n"],
        }
        probs[name] = p
    for name, clf in by_model.items():
        ref = [
            m
            for m, c in by_model.items()
            if c.info.architecture == clf.info.architecture
            and c.info.quantization == REFERENCE
            and len(probs[m]) == len(probs[name])
        ]
        if ref:
            results[name]["agreement_vs_float32"] = metrics.agreement(probs[ref[0]], probs[name])
    return results


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    """Per row, ratios against the float32 row of the same architecture, runtime and threads."""
    for row in rows:
        base = next(
            (
                r
                for r in rows
                if r["quantization"] == REFERENCE
                and r["architecture"] == row["architecture"]
                and r["runtime"] == row["runtime"]
                and r["threads"] == row["threads"]
            ),
            None,
        )
        if base is None:
            continue
        row["vs_float32"] = {
            "invoke_speedup": base["invoke_ms"]["p50"] / row["invoke_ms"]["p50"],
            "frame_speedup": base["frame_ms"]["p50"] / row["frame_ms"]["p50"],
            "size_ratio": row["bytes"] / base["bytes"],
            "top1_delta_points": (100 * (row["top1"] - base["top1"])) if "top1" in row and "top1" in base else None,
            "rss_ratio": row["rss_mb"] / base["rss_mb"],
        }


def _reference(config: BenchConfig, rows: list[dict[str, Any]], mode: Mode, log: Any) -> dict[str, Any]:
    """The tutorial's deployment (Keras, model.predict per image) against the best int8 edge row."""
    if config.keras is None:
        return {"skipped": "no Keras model given (--keras)"}
    if importlib.util.find_spec("tensorflow") is None:
        return {"skipped": "TensorFlow is not installed here (the edge install has none); reference row not measured"}
    problem = keras_problem(config.keras)
    if problem:
        return {"skipped": problem}
    # the probe takes the Keras model's input spec from an edge model's metadata
    rows = [r for r in rows if r["architecture"] != FOREIGN]
    if not rows:
        return {"skipped": "no model with edgeclf metadata to compare the Keras model with"}
    # the integer-only model of the same architecture (named like the Keras file), else every integer-only row
    integer = [r for r in rows if r["quantization"] in MODES and MODES[r["quantization"]].integer_only] or rows
    same = [r for r in integer if r["architecture"] == config.keras.stem]
    edge = min(same or integer, key=lambda r: r["frame_ms"]["p50"])
    print(f"  probing the Keras reference {config.keras}", file=log)
    try:
        probe = _probe(Path(edge["model"]), None, 0, max(10, mode.probe_frames // 2), keras=config.keras)
    except EdgeClfError as exc:  # the edge rows are measured: keep them, say why the reference is missing
        return {"skipped": str(exc)}
    from importlib import metadata as md

    keras_ms = probe["probe_frame_ms"]
    row = {
        "model": shown_path(config.keras),
        "path": "Keras model.predict, one image at a time (the tutorial's deployment)",
        "runtime": f"tensorflow {md.version('tensorflow-cpu') if _has('tensorflow-cpu') else md.version('tensorflow')}",
        "frame_ms": keras_ms,
        "fps": round(1000.0 / keras_ms["mean"], 1),
        "rss_mb": probe["rss_mb"],
        "cold_start_s": probe["cold_start_s"],
    }
    edge_ms = edge["probe_frame_ms"]
    return {
        "row": row,
        "edge_row": {"model": edge["model"], "threads": edge["threads"], "runtime": edge["runtime"]},
        "ratios": {
            "latency_keras_over_edge": keras_ms["p50"] / edge_ms["p50"],
            "rss_keras_over_edge": probe["rss_mb"] / edge["rss_mb"],
            "cold_start_keras_over_edge": probe["cold_start_s"] / edge["cold_start_s"],
        },
    }


def _has(dist: str) -> bool:
    from importlib import metadata as md

    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False
