"""`convert()`: load a run or Keras file, convert, verify against Keras, write .tflite + sidecar."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.convert import lonefile, modes, tta
from edgeclf.convert.lonefile import LoneContract
from edgeclf.convert.runfile import RUN_FILE, RunRecord, read_run
from edgeclf.convert.tflite import to_tflite
from edgeclf.convert.verify import Verification, class_change_lines, verify
from edgeclf.edge_app import metadata, preprocess
from edgeclf.edge_app.contract import InputSpec, ModelInfo
from edgeclf.edge_app.datasets import ImageSet
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.train.data import DataSpec, Splits, load_splits, stratified_split
from edgeclf.train.kerasfile import check_archive as _check_keras_archive
from edgeclf.train.kerasfile import load_keras, locate
from edgeclf.train.macs import count_macs


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    info: ModelInfo
    verification: Verification
    keras_bytes: int
    tflite_bytes: int


def resolve_source(source: str | Path) -> tuple[Path, RunRecord | None]:
    """(Keras file, its checked run.json or None) for a run folder or a Keras file."""
    model, run_file = locate(source)
    return model, None if run_file is None else read_run(run_file)


def _base_info(model: Any, run: RunRecord | None, data: DataSpec, lone: LoneContract | None) -> ModelInfo:
    if run is not None:
        return run.info
    assert lone is not None  # convert() resolves the contract of every file without run.json
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None:
        raise EdgeClfError(f"model input {shape} is not a fixed-size RGB image")
    params = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    spec = lone.input_spec(int(shape[1]), int(shape[2]), data.resize)
    return ModelInfo(labels=lone.labels, input=spec, architecture=model.name, params=params, dataset=str(data.data))


def _data_spec(model: Any, run: RunRecord | None, overrides: dict[str, Any]) -> DataSpec:
    """The run's data and splits with the user's overrides; for a lone Keras file, defaults + overrides."""
    if run is not None:
        return replace(run.data, **overrides)
    shape = tuple(model.input_shape)
    size = overrides.get("image_size") or (shape[1] if len(shape) == 4 and shape[1] else 32)
    return DataSpec(**{**overrides, "image_size": int(size)})


def default_out(model_path: Path, info: ModelInfo, mode: str) -> Path:
    """`<run>/<arch>_<mode>.tflite` for a run, `<stem>_<mode>.tflite` beside a lone Keras file."""
    stem = info.architecture if model_path.name == "model.keras" else model_path.stem
    return model_path.parent / f"{stem}_{mode}.tflite"


def convert(
    source: str | Path,
    mode_name: str = "int8",
    out: str | Path | None = None,
    io: str | None = None,
    calibration: int = 300,
    data: dict[str, Any] | None = None,
    eval_limit: int | None = None,
    max_drop: float = 1.0,
    allow_drop: bool = False,
    force: bool = False,
    tta_mode: str = "none",
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    color: str | None = None,
    labels: str | Path | Sequence[str] | None = None,
) -> ConvertResult:
    """Convert, verify and write a .tflite with its contract. Raises EdgeClfError on any refusal.

    A run folder's run.json gives the input contract. A lone Keras file needs `mean`, `std`, `color` and
    `labels` (a labels file, or the labels themselves, in output order) or a `<stem>.json` sidecar beside it;
    an option wins over the sidecar, and the Keras model must score at least twice chance with them.
    """
    mode, io = modes.get(mode_name, io)
    if calibration < 1:
        raise EdgeClfError("--calibration must be at least 1")
    model_path, run = resolve_source(source)
    given = {"mean": mean, "std": std, "color": color, "labels": labels}
    lone = None
    if run is not None:
        named = [f"--{k}" for k, v in given.items() if v is not None]
        if named:
            raise EdgeClfError(
                f"{', '.join(named)}: only for a lone Keras file; {model_path.parent / RUN_FILE} already records "
                "how this model was trained"
            )
    else:
        _check_keras_archive(model_path)  # a file that is no model at all says so before options are asked for
        lone = lonefile.resolve(model_path, given, has_data=bool((data or {}).get("data")))
    base = load_keras(model_path)
    model = tta.wrap(base, tta_mode)
    spec = _data_spec(base, run, data or {})
    info = _base_info(base, run, spec, lone)
    n_out = int(model.output_shape[-1])
    if lone is not None and n_out != len(info.labels):
        raise EdgeClfError(f"{lone.origin}: {len(info.labels)} labels but the model outputs {n_out} scores")
    target = Path(out) if out else default_out(model_path, info, mode.name)
    if target.suffix != ".tflite":
        raise EdgeClfError(f"--out must end in .tflite, got {target}")
    if target.exists() and not force:
        raise EdgeClfError(f"{target} exists; pass --force to overwrite")
    splits = load_splits(spec)
    if lone is None and tuple(info.labels) != splits.classes:
        raise EdgeClfError(
            f"the data's classes {list(splits.classes)} differ from the model's labels {list(info.labels)}"
        )
    if n_out != len(info.labels):
        raise EdgeClfError(f"the model outputs {n_out} scores but the data has {len(info.labels)} classes")
    calib, test = _calibration_and_test(
        splits, info.input, spec.seed, calibration if mode.calibrated else 0, eval_limit
    )
    y_test = test.labels if lone is None else lonefile.relabel(test.labels, splits.classes, lone)
    x_test = preprocess.normalize_rgb(test.images, info.input)
    keras_probs = model.predict(x_test, batch_size=256, verbose=0)
    if lone is not None:  # before the conversion: a wrong contract costs no converter run
        lonefile.check_above_chance(keras_probs, y_test, lone)
    n_calib = 0 if calib is None else len(calib)
    print(
        f"converting {model_path} -> {mode.name} (io {io})" + (f", {n_calib} calibration images" if n_calib else ""),
        file=sys.stderr,
    )
    tflite_bytes = to_tflite(model, mode, io, calib)
    info = info.with_changes(quantization=mode.name, metrics={})
    check = verify(tflite_bytes, info, keras_probs, x_test, y_test)
    keras_bytes = model_path.stat().st_size
    info = info.with_changes(
        metrics={
            **_metrics(check, len(tflite_bytes), keras_bytes, io, n_calib),
            "macs": count_macs(base) * tta.VIEWS[tta_mode],
            **({"tta": tta_mode} if tta_mode != "none" else {}),
        }
    )
    if mode.row.integer_only and check.ops["float_ops"]:
        raise EdgeClfError(
            f"the {mode.name} model still computes in float32: {', '.join(sorted(set(check.ops['float_ops'])))} "
            "(use ReLU/ReLU6 and ops with int8 kernels); nothing written"
        )
    if check.drop_points > max_drop and not allow_drop:
        raise EdgeClfError(
            f"{mode.name} accuracy {check.tflite['accuracy']:.4f} is {check.drop_points:.2f} points below Keras "
            f"{check.keras['accuracy']:.4f} (more than --max-drop {max_drop}); "
            "nothing written, pass --allow-drop to keep it"
        )
    floor = mode.row.min_agreement
    if floor is not None and check.agreement < floor and not allow_drop:
        raise EdgeClfError(
            f"{mode.name} top-1 agreement with Keras {check.agreement:.4f} is under the {floor:g} {mode.name} "
            "requires (a broken conversion, whatever the accuracy); nothing written, pass --allow-drop to keep it"
        )
    metadata.write_model(target, tflite_bytes, info)
    return ConvertResult(target, info, check, keras_bytes, target.stat().st_size)


def _calibration_and_test(
    splits: Splits, spec: InputSpec, seed: int, calibration: int, eval_limit: int | None
) -> tuple[np.ndarray | None, ImageSet]:
    """Normalised calibration images drawn from the training split, and the (stratified) test subset."""
    images = splits.train.images
    if (images.shape[1], images.shape[2]) != (spec.height, spec.width):
        raise EdgeClfError(f"data images are {images.shape[1:3]}, the model wants {spec.height}x{spec.width}")
    calib = None
    if calibration:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(images), size=min(calibration, len(images)), replace=False))
        calib = preprocess.normalize_rgb(images[pick], spec)
    test = splits.test
    if eval_limit is not None and eval_limit < len(test):
        test = test.subset(stratified_split(test.labels, eval_limit / len(test), seed)[1])
    return calib, test


def _metrics(check: Verification, tflite_bytes: int, keras_bytes: int, io: str, calibration: int) -> dict[str, Any]:
    t, k = check.tflite, check.keras
    out = {
        "split": "test",
        "n": check.n,
        "test_accuracy": round(t["accuracy"], 5),
        "macro_precision": round(t["macro_precision"], 5),
        "macro_recall": round(t["macro_recall"], 5),
        "macro_f1": round(t["macro_f1"], 5),
    }
    if "top5" in t:
        out["top5"] = round(t["top5"], 5)
    out.update(
        {
            "keras_accuracy": round(k["accuracy"], 5),
            "keras_macro_f1": round(k["macro_f1"], 5),
            "accuracy_drop_points": round(check.drop_points, 3),
            "agreement_vs_keras": round(check.agreement, 5),
            "tflite_bytes": tflite_bytes,
            "keras_bytes": keras_bytes,
            "io": io,
            "calibration_images": calibration,
            "runtime": check.runtime,
            "ops": check.ops["count"],
            "op_types": check.ops["types"],
            "float_ops": len(check.ops["float_ops"]),
        }
    )
    return out


def report(result: ConvertResult) -> str:
    """The accuracy / size report printed after a conversion."""
    m = result.info.metrics
    q = result.info.quantization
    lines = [
        f"wrote      {result.path} (+ {metadata.sidecar_path(result.path).name})",
        f"model      {result.info.architecture}, {q}, io {m['io']}, {len(result.info.labels)} labels",
        f"{'':16}{'accuracy':>10}{'macro F1':>10}{'bytes':>12}",
        f"{'keras file':<16}{m['keras_accuracy']:>10.4f}{m['keras_macro_f1']:>10.4f}{m['keras_bytes']:>12,}",
        f"{q + ' tflite':<16}{m['test_accuracy']:>10.4f}{m['macro_f1']:>10.4f}{result.tflite_bytes:>12,}",
        f"change     {0.0 - m['accuracy_drop_points'] + 0.0:+.2f} points accuracy, "
        f"top-1 agreement {m['agreement_vs_keras']:.4f}, "
        f"size x{result.tflite_bytes / max(1, m['keras_bytes']):.2f} ({m['n']} {m['split']} images, {m['runtime']})",
        f"ops        {m['ops']} ({', '.join(m['op_types'])}); {m['float_ops']} compute in float32",
        *class_change_lines(result.verification, q),
    ]
    return "\n".join(lines)
