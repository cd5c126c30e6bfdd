"""`edgeclf teach`: teach a model new classes from a few pictures, on the device, without TensorFlow.

The base model's embedding (the tensor that feeds its last layer) is exposed as a model output by
rewriting the flatbuffer (tflite_graph), each picture's embedding is computed with the TFLite runtime, and
a head imprinted from them (imprint) is stored in the new model's metadata. The taught file runs in
`run`, `serve`, `bench` and `doctor` like any model.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeclf.edge_app import imprint, metadata, preprocess, tflite_graph
from edgeclf.edge_app.argtypes import finite_float, rgb_triple
from edgeclf.edge_app.classifier import Classifier, foreign_info
from edgeclf.edge_app.cli import guarded
from edgeclf.edge_app.contract import ModelInfo
from edgeclf.edge_app.datasets import class_names, list_files
from edgeclf.edge_app.errors import MetadataError, TeachError
from edgeclf.edge_app.head import MODES, Head
from edgeclf.edge_app.labels import read_labels
from edgeclf.edge_app.memory import peak_rss_mb
from edgeclf.edge_app.runtime import RUNTIMES, load_interpreter
from edgeclf.edge_app.sources import read_image
from edgeclf.edge_app.tta import view_weights

OUTPUT_NAMES = ["embedding", "logits"]
# --base-data pictures a class. With the bias set by --base-cost, the count matters little: on the few-shot
# benchmark's validation split (10 pictures per new class, --base-cost 2) 200 and 500 cost the base classes 1.63
# and 1.61 points and won 34.7% and 34.5% of the new classes' pictures; fewer make the share less exact
BASE_SHOTS = 200


@dataclass(frozen=True)
class TeachConfig:
    """What `edgeclf teach` was asked to do."""

    base: Path
    data: Path
    out: Path
    shots: int | None = None
    mode: str = "replace"
    seed: int = 0
    labels: Path | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    runtime: str | None = None
    threads: int | None = None
    base_data: Path | None = None
    base_shots: int = BASE_SHOTS
    base_cost: float | None = None  # percent; None: imprint.COST when --base-data is given

    @property
    def share(self) -> float:
        """--base-cost as a share: of the --base-data pictures, what the taught classes may take."""
        return imprint.COST if self.base_cost is None else self.base_cost / 100


@dataclass(frozen=True)
class Shots:
    """The decoded pictures of each label (BGR uint8), and how many files could not be read."""

    images: dict[str, list[np.ndarray]]
    skipped: int = 0


@dataclass(frozen=True)
class TeachResult:
    """The taught model and what went into it."""

    out: Path
    labels: tuple[str, ...]
    shots: dict[str, int]
    skipped: int
    seconds: float
    taught_accuracy: float
    info: ModelInfo = field(repr=False)
    base_taken: float | None = None  # with --base-data: the share of its pictures the taught classes take


def pick_shots(data: Path, shots: int | None, seed: int, option: str = "--data") -> Shots:
    """Up to `shots` decodable pictures per label folder of `data`, drawn with `seed`; unreadable files are
    skipped (the next one is drawn) and counted. `option` names `data` in messages."""
    if not data.is_dir():
        raise TeachError(f"{option} {data} is not a folder of label folders (<dir>/<label>/<images>)")
    labels = class_names(data)
    rng = np.random.default_rng(seed)
    picked: dict[str, list[np.ndarray]] = {}
    skipped = 0
    for index, label in enumerate(labels):
        paths = [path for path, _ in list_files(data, (label,))]
        got: list[np.ndarray] = []
        for i in rng.permutation(len(paths)):
            if shots is not None and len(got) >= shots:
                break
            image = read_image(paths[i])
            if image is None:
                skipped += 1
                continue
            got.append(image)
        if not got:
            what = "no files" if not paths else f"none of its {len(paths)} file(s) is a readable image"
            raise TeachError(f"label folder {data / label} has {what}")
        picked[labels[index]] = got
    return Shots(picked, skipped)


def _base(config: TeachConfig) -> tuple[ModelInfo, bool]:
    """The base's contract, and whether its labels are real: its metadata, or for a third-party file the input
    size with --mean/--std and --labels (placeholder labels without --labels: replace mode needs none)."""
    has_metadata = metadata.read_embedded(config.base) is not None or metadata.read_sidecar(config.base) is not None
    if has_metadata:
        info = metadata.load_info(config.base)
        if config.labels is not None and info.head is None:
            info = info.with_changes(labels=read_labels(config.labels))
        known = True
    else:
        interpreter, _ = load_interpreter(config.base, config.runtime, 1)
        n_out = int(interpreter.get_output_details()[0]["shape"][-1])
        labels = read_labels(config.labels) if config.labels is not None else tuple(f"class{i}" for i in range(n_out))
        info = foreign_info(interpreter, labels, config.base)  # what `run --labels` would use for it
        known = config.labels is not None
    if config.mean is not None or config.std is not None:
        spec = info.input
        info = info.with_changes(input=replace(spec, mean=config.mean or spec.mean, std=config.std or spec.std))
    return info, known


def expose_base(base: Path, n_labels: int) -> tuple[bytes, imprint.BaseHead]:
    """The base's flatbuffer with [embedding, logits] as outputs, and its head's weight statistics."""
    try:
        data = metadata.strip_embedded(base.read_bytes())
    except OSError as exc:
        raise TeachError(f"cannot read {base}: {exc.strerror or exc}") from None
    model = tflite_graph.load(data)
    try:
        site = tflite_graph.find_head(model)
    except TeachError as exc:
        raise TeachError(f"{base} has no usable embedding: {exc}") from None
    if site.weights.shape[0] != n_labels:
        raise MetadataError(f"{base}: {n_labels} labels but its last layer has {site.weights.shape[0]} classes")
    return tflite_graph.expose(model, [site.embedding, site.logits], OUTPUT_NAMES), imprint.BaseHead.of(site)


def embed(cls: Classifier, images: list[np.ndarray], batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """BGR pictures -> embeddings (n, views, dim) and base logits (n, views, classes) of an exposed model."""
    x = np.stack([preprocess.prepare(image, cls.spec, "BGR") for image in images])
    emb, logits = cls.outputs(x, batch, per_view=True)
    return emb, logits


def teach(config: TeachConfig) -> TeachResult:
    """Teach `config.base` the label folders of `config.data`; write `config.out` (and its sidecar)."""
    start = time.perf_counter()
    if config.mode not in MODES:
        raise TeachError(f"--mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    if config.shots is not None and config.shots < 1:
        raise TeachError(f"--shots must be at least 1, got {config.shots}")
    if config.base_shots < 1:
        raise TeachError(f"--base-shots must be at least 1, got {config.base_shots}")
    if not config.base.is_file():
        raise TeachError(f"base model not found: {config.base}")
    if config.base_data is not None and config.mode != "extend":
        raise TeachError("--base-data calibrates extend mode; replace mode does not use it")
    if config.base_cost is not None and config.base_data is None:
        raise TeachError("--base-cost needs --base-data: it is a share of those pictures")
    if config.base_cost is not None and not 0 < config.base_cost < 100:
        raise TeachError(f"--base-cost must be above 0 and below 100, got {config.base_cost:g}")
    if config.out.resolve() == config.base.resolve():
        raise TeachError("--out must differ from the base model (the base is read while the new one is written)")
    info, known = _base(config)
    prior = info.head
    if prior is None:
        content, base_head = expose_base(config.base, len(info.labels))
        base_labels = info.labels if known else ()
    else:  # a taught model: its file already exposes the embedding, and its head keeps what the base was
        content = metadata.strip_embedded(config.base.read_bytes())
        base_head, base_labels = imprint.BaseHead.of_head(prior), prior.base_labels
    if config.mode == "extend" and not base_labels:
        raise TeachError(f"{config.base} has no metadata: extend mode needs its labels (--labels FILE)")
    shots = pick_shots(config.data, config.shots, config.seed)
    imprint.check_labels(list(shots.images), config.mode, base_labels, prior)
    exposed = Classifier(
        config.base, runtime=config.runtime, threads=config.threads, content=content, info=info.with_changes(head=None)
    )
    embeddings = {label: embed(exposed, images) for label, images in shots.images.items()}
    views = next(iter(embeddings.values()))[0].shape[1]
    weights = prior.view_weights if prior is not None else view_weights(info.metrics.get("tta"), views)
    references = _references(config, exposed, base_labels)
    head = imprint.fit(embeddings, config.mode, base_labels, base_head, weights, prior, references)
    taken = None if references is None else imprint.base_taken(head, references, list(embeddings))
    taught = info.with_changes(labels=head.all_labels, head=head, metrics=_metrics(info, head, config, taken))
    metadata.write_model(config.out, content, taught)
    check = Classifier(config.out, runtime=config.runtime, threads=config.threads)
    return TeachResult(
        out=config.out,
        labels=head.all_labels,
        shots={label: len(images) for label, images in shots.images.items()},
        skipped=shots.skipped,
        seconds=time.perf_counter() - start,
        taught_accuracy=_accuracy(check, shots.images),
        info=taught,
        base_taken=taken,
    )


def _references(config: TeachConfig, exposed: Classifier, base_labels: tuple[str, ...]) -> imprint.References | None:
    """Embeddings, base logits and folder of --base-data's pictures (folders named as base classes), or None."""
    if config.base_data is None:
        return None
    pictures = pick_shots(config.base_data, config.base_shots, config.seed, "--base-data")
    unknown = [label for label in pictures.images if label not in base_labels]
    if unknown:
        raise TeachError(f"--base-data folder(s) {', '.join(unknown)} are not classes of the base model")
    parts = [embed(exposed, images) for images in pictures.images.values()]
    folder = np.concatenate([np.full(len(images), i) for i, images in enumerate(pictures.images.values())])
    return imprint.References(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), folder, config.share
    )


def _metrics(info: ModelInfo, head: Head, config: TeachConfig, taken: float | None) -> dict[str, object]:
    """The base's measured accuracy no longer applies; its graph facts (views, MACs, ops) still do."""
    kept = {k: v for k, v in info.metrics.items() if k in ("tta", "macs", "io", "ops", "op_types", "float_ops")}
    taught = {"taught_from": config.base.name, "taught_shots": dict(zip(head.labels, head.shots))}
    if taken is not None:
        taught["taught_base_data_taken"] = round(taken, 4)
    return {**kept, **taught}


def _accuracy(cls: Classifier, images: dict[str, list[np.ndarray]]) -> float:
    right = total = 0
    for label, pictures in images.items():
        x = np.stack([preprocess.prepare(image, cls.spec, "BGR") for image in pictures])
        predicted = cls.predict(x).argmax(axis=1)
        right += int(sum(cls.labels[i] == label for i in predicted))
        total += len(pictures)
    return right / total


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edgeclf.edge_app.teach",
        description="Teach a .tflite image classifier new classes from a few pictures per class, on the device "
        "(TFLite runtime and numpy only). The base's embedding, the input of its last layer, is exposed as an "
        "output and a head imprinted from the pictures is stored in the new model's metadata; the new model works "
        "in run, serve, bench and doctor like any other.",
    )
    parser.add_argument("base", type=Path, help="the model to teach: ours, a third-party classifier, or a taught one")
    parser.add_argument("--data", type=Path, required=True, help="folder of <label>/<images>, one folder per class")
    parser.add_argument("--out", type=Path, required=True, help="the taught .tflite to write (its .json beside it)")
    parser.add_argument("--shots", type=int, help="use at most N pictures per label, drawn with --seed (default all)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="replace",
        help="replace: the model knows only the taught classes (default); extend: the base's classes plus the "
        "taught ones, on one scale. Teaching onto a taught model keeps its taught classes; a label it already has "
        "gets more shots",
    )
    parser.add_argument("--seed", type=int, default=0, help="which pictures --shots draws (default 0)")
    parser.add_argument(
        "--base-data",
        type=Path,
        help="extend mode: pictures of the base's own classes (<dir>/<base label>/<images>, e.g. its training "
        "folder); the new classes are then fitted against them (a logistic regression beside the base's own "
        "logits), which tells a new class from a similar base class. Without them a taught class takes many "
        "pictures of a similar base class",
    )
    parser.add_argument(
        "--base-shots",
        type=int,
        default=BASE_SHOTS,
        help=f"--base-data pictures per class, drawn with --seed (default {BASE_SHOTS})",
    )
    parser.add_argument(
        "--base-cost",
        type=finite_float,
        metavar="PERCENT",
        help=f"with --base-data: the classes taught now may take at most this percent of the --base-data pictures "
        f"(each folder weighing the same; default {imprint.COST * 100:g}). Higher wins more of the new classes' "
        "pictures and loses more of the base classes'; pictures the fit has not seen are taken somewhat more often",
    )
    parser.add_argument("--labels", type=Path, help="the base's labels file, for a model without metadata (extend)")
    parser.add_argument("--mean", type=rgb_triple, help="input mean for a model without metadata (default 127.5)")
    parser.add_argument("--std", type=rgb_triple, help="input std for a model without metadata (default 127.5)")
    parser.add_argument("--runtime", choices=list(RUNTIMES), help="force a TFLite runtime")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: all cores)")
    return parser


def _main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    config = TeachConfig(**{k: v for k, v in vars(args).items()})
    result = teach(config)
    shots = ", ".join(f"{label} {n}" for label, n in result.shots.items())
    skipped = f"; skipped {result.skipped} unreadable file(s)" if result.skipped else ""
    print(
        f"taught {len(result.shots)} label(s) ({shots} picture(s)) in {config.mode} mode onto {config.base.name}: "
        f"{config.out} knows {len(result.labels)} classes{skipped}"
    )
    if result.base_taken is not None:
        print(
            f"the taught classes take {result.base_taken:.1%} of the --base-data pictures (at most {config.share:.1%})"
        )
    print(
        f"accuracy on the taught pictures {result.taught_accuracy:.1%}; {result.seconds:.2f} s, "
        f"peak RSS {peak_rss_mb():.0f} MB"
    )
    return 0


main = guarded(_main)

if __name__ == "__main__":
    raise SystemExit(main())
