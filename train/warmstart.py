"""`edgeclf train --init RUN_OR_KERAS`: start from a trained model's weights instead of random ones.

The run keeps the init model's architecture and input contract (size, colour order, mean/std, resize), so
the new model reads camera frames exactly as the old one did. The model is built by its architecture's
own function and the init's weights are copied in layer by layer: a run with an init therefore has the
same structure as any other run of that architecture, and `--resume` needs nothing from the init file
(the weights come from the resume state; the init is applied at the start only).

The classifier (the last layer with weights) depends on the labels: the same set of labels keeps it
whole, its per-class columns re-ordered to the data's class order; a different set gets the
architecture's own fresh head, with the columns of the labels both sets share copied over.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeclf.edge_app.contract import InputSpec, ModelInfo
from edgeclf.edge_app.errors import EdgeClfError, MetadataError
from edgeclf.train import architectures, kerasfile, lonecontract
from edgeclf.train.jsonfile import read_json

if TYPE_CHECKING:
    from edgeclf.train.fit import TrainConfig


@dataclass(frozen=True)
class InitSource:
    """The model a run starts from: where it is, what its outputs mean and how its inputs are made
    (stored in run.json's config, so a resumed run needs no second look at the file)."""

    path: str
    labels: tuple[str, ...]
    color: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def input_spec(self, size: int, resize: str) -> InputSpec:
        return InputSpec(size, size, self.color, self.mean, self.std, resize)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InitSource:
        return cls(
            path=str(raw["path"]),
            labels=tuple(raw["labels"]),
            color=str(raw["color"]),
            mean=tuple(raw["mean"]),  # type: ignore[arg-type]
            std=tuple(raw["std"]),  # type: ignore[arg-type]
        )


def model_file(path: str | Path) -> tuple[Path, Path | None]:
    """(the Keras file, the run.json beside it or None) for --init's run folder or Keras file."""
    return kerasfile.locate(path, "--init")


def load_model(path: Path) -> Any:
    """The Keras model in `path`, or one line saying why it is not one."""
    try:
        return kerasfile.load_keras(path)
    except EdgeClfError as exc:
        raise EdgeClfError(f"--init {exc}") from None


def _run_contract(run_file: Path) -> tuple[ModelInfo, str | None]:
    """(model_info, config.arch) of an init run's run.json."""
    record = read_json(run_file)
    try:
        info = ModelInfo.from_dict(record["model_info"])
    except (KeyError, TypeError, MetadataError) as exc:
        raise EdgeClfError(f"--init: {run_file} has no usable model_info ({exc}); is the run finished?") from None
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    arch = config.get("arch")
    return info, arch if isinstance(arch, str) else None


def configure(
    config: TrainConfig, init: str | Path, given: Collection[str] = (), contract: dict[str, Any] | None = None
) -> TrainConfig:
    """`config` set up to start from `init`: its architecture, input size, resize mode and contract.

    `given` names the options the user stated (a stated --arch, --image-size or --resize that differs from
    the init model's is refused, as is --weights); `contract` holds --mean/--std/--color/--labels, which a
    lone Keras file needs (or a <stem>.json sidecar) and a run folder must not be given.
    """
    model_path, run_file = model_file(init)
    model = load_model(model_path)  # a file that is no model says so before options are asked for
    stated = {k: v for k, v in (contract or {}).items() if v is not None}
    if config.weights != "none":
        raise EdgeClfError("--weights and --init both give the starting weights: choose one")
    if run_file is not None:
        if stated:
            named = ", ".join(f"--{k}" for k in stated)
            raise EdgeClfError(f"{named}: only for a lone Keras file; {run_file} already records the model's contract")
        info, arch = _run_contract(run_file)
        labels, spec, resize = info.labels, info.input, info.input.resize
        arch = arch or info.architecture
    else:
        lone = lonecontract.resolve(model_path, stated, has_data=True)
        labels, resize, arch = lone.labels, config.data.resize, None
        spec = lone.input_spec(1, 1, resize)
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise EdgeClfError(f"--init {model_path}: its input {shape[1:]} is not a square RGB image")
    size = int(shape[1])
    if int(model.output_shape[-1]) != len(labels):
        raise EdgeClfError(f"--init {model_path}: {len(labels)} labels but the model outputs {model.output_shape[-1]}")
    arch = arch or (model.name if model.name in architectures.names() else None)
    if "arch" in given and arch is not None and config.arch != arch:
        raise EdgeClfError(
            f"--arch {config.arch}: the --init model is a {arch}, and a warm start keeps its architecture "
            "(leave --arch out, or train from scratch)"
        )
    if arch is None and "arch" not in given:
        raise EdgeClfError(
            f"--init {model_path}: a Keras model named {model.name!r}, not one of the architectures train builds; "
            f"if it is one, name it with --arch ({', '.join(architectures.names())})"
        )
    if "image_size" in given and config.data.image_size != size:
        raise EdgeClfError(
            f"--image-size {config.data.image_size}: the --init model takes {size}x{size} inputs, and a warm "
            "start keeps them (leave --image-size out, or train from scratch)"
        )
    if "resize" in given and config.data.resize != resize:
        raise EdgeClfError(
            f"--resize {config.data.resize}: the --init model was trained with {resize} (leave --resize out)"
        )
    # the architecture's own model must take the init's weights: a mismatch is found before any data is read
    _matched_layers(architectures.build(arch or config.arch, (size, size, 3), len(labels)), model, model_path)
    source = InitSource(str(Path(init).resolve()), tuple(labels), spec.color, spec.mean, spec.std)
    data = replace(config.data, image_size=size, resize=resize)
    return replace(config, arch=arch or config.arch, data=data, init=source)


def outcome(init: InitSource, classes: tuple[str, ...]) -> dict[str, Any]:
    """What the warm start keeps, for the data's `classes` (run.json's and metrics.json's "init")."""
    same = sorted(init.labels) == sorted(classes)
    return {
        "path": init.path,
        "head": "kept" if same else "new",
        "copied_labels": [c for c in classes if c in init.labels],
        "new_labels": [c for c in classes if c not in init.labels],
        "dropped_labels": [c for c in init.labels if c not in classes],
    }


def describe(record: dict[str, Any]) -> str:
    """The one line a run prints about its warm start."""
    if record["head"] == "kept":
        return f"init: {record['path']}: the same {len(record['copied_labels'])} labels, the whole model kept"
    copied = ", ".join(record["copied_labels"]) or "none"
    return (
        f"init: {record['path']}: a new head for {len(record['copied_labels']) + len(record['new_labels'])} "
        f"labels, the layers before it kept; the old head's rows copied for {copied}; new: "
        f"{', '.join(record['new_labels']) or 'none'}; dropped: {', '.join(record['dropped_labels']) or 'none'}"
    )


def _matched_layers(model: Any, source: Any, path: str | Path) -> tuple[list[Any], list[Any]]:
    """The layers with weights of `model` and of the init model `source`, checked to pair up one to one
    with the same weight shapes (all but the classifier, the last of them)."""
    ours = [layer for layer in model.layers if layer.weights]
    theirs = [layer for layer in source.layers if layer.weights]
    if len(ours) != len(theirs):
        raise EdgeClfError(
            f"--init {path}: {len(theirs)} layers with weights, {model.name} has {len(ours)}: not this architecture"
        )
    for mine, old in zip(ours[:-1], theirs[:-1]):
        have, wanted = [tuple(w.shape) for w in old.weights], [tuple(w.shape) for w in mine.weights]
        if have != wanted:
            raise EdgeClfError(
                f"--init {path}: layer {old.name} holds {have}, {model.name}'s {mine.name} needs {wanted}: "
                "not this architecture"
            )
    return ours, theirs


def apply(model: Any, init: InitSource, classes: tuple[str, ...]) -> dict[str, Any]:
    """Copy the init model's weights into `model` (freshly built, same architecture, one output per class);
    the returned record says what was kept."""
    source = load_model(model_file(init.path)[0])
    ours, theirs = _matched_layers(model, source, init.path)
    for mine, old in zip(ours[:-1], theirs[:-1]):
        mine.set_weights(old.get_weights())
    head, old_head = ours[-1], theirs[-1]
    fresh, arrays = head.get_weights(), old_head.get_weights()
    if [a.shape[:-1] for a in arrays] != [a.shape[:-1] for a in fresh]:
        raise EdgeClfError(f"--init {init.path}: its classifier {old_head.name} does not fit {model.name}'s")
    # the class is the last axis of the kernel and the bias: column j of ours is column `index` of theirs
    for j, name in enumerate(classes):
        if name in init.labels:
            index = init.labels.index(name)
            for new, old in zip(fresh, arrays):
                new[..., j] = old[..., index]
    head.set_weights(fresh)
    record = outcome(init, classes)
    print(describe(record), file=sys.stderr)
    return record
