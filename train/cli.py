"""`edgeclf train` / `python -m edgeclf.train`: parse options, train, print the summary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from edgeclf.edge_app.argtypes import finite_float, rgb_triple
from edgeclf.edge_app.cli import guarded
from edgeclf.edge_app.contract import COLORS
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.train import architectures, augment, balance, lonecontract, resume, warmstart
from edgeclf.train.data import DataSpec
from edgeclf.train.distribute import STRATEGIES
from edgeclf.train.fit import DISTILL_TARGETS, OPTIMIZERS, SCHEDULES, TrainConfig


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edgeclf.train",
        description="Train an image classifier on CIFAR-10 or on a folder of images (<root>/<class>/*.jpg, "
        "optionally under train/ and test/). Writes a run folder for `edgeclf convert`.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="cifar10", help="'cifar10' or a path to an image folder (default cifar10)")
    data.add_argument(
        "--data-dir", help="offline CIFAR-10 copy as an image folder, e.g. ../shared/datasets/cifar10-jpeg"
    )
    data.add_argument("--image-size", type=int, default=32, help="model input side in pixels (default 32)")
    data.add_argument("--resize", choices=["stretch", "center_crop"], default="stretch", help="how images are fitted")
    data.add_argument("--val-split", type=finite_float, default=0.1, help="fraction of training data for validation")
    data.add_argument("--test-split", type=finite_float, default=0.2, help="test fraction when the folder has no test/")
    data.add_argument("--limit", type=int, help="use at most N training and N test images (smoke runs)")
    data.add_argument("--cache-dir", help="where decoded arrays are cached (default ~/.cache/edgeclf)")
    model = parser.add_argument_group("model and optimisation")
    model.add_argument("--arch", default="tutorial_cnn", choices=architectures.names(), help="architecture")
    model.add_argument("--epochs", type=int, default=20)
    model.add_argument("--batch-size", type=int, default=64)
    model.add_argument("--learning-rate", type=finite_float, default=1e-3)
    model.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    model.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="constant",
        help="learning-rate schedule: constant, cosine (after the warm-up), or onecycle (linear from lr/5 "
        "up to lr over the warm-up epochs, then linear down to 0.07 x lr)",
    )
    model.add_argument("--warmup-epochs", type=int, default=0, help="linear warm-up (cosine and onecycle)")
    model.add_argument("--weight-decay", type=finite_float, default=0.0)
    model.add_argument("--label-smoothing", type=finite_float, default=0.0)
    model.add_argument(
        "--augment",
        default=",".join(augment.DEFAULT_AUGMENT),
        help=f"comma list of {','.join(augment.AUGMENTATIONS)}, or 'none' (default flip,crop)",
    )
    model.add_argument("--mixup", type=finite_float, default=0.0, help="mixup alpha (e.g. 0.2; default 0 = off)")
    model.add_argument(
        "--ema",
        type=finite_float,
        default=0.0,
        help="EMA of weights, e.g. 0.999 (default 0 = off; not with --lookahead)",
    )
    model.add_argument(
        "--lookahead",
        action="store_true",
        help="from 30%% of the run, every 5 steps average the weights and copy the average back (airbench; "
        "--strategy none only; not with --ema)",
    )
    model.add_argument(
        "--bias-lr-scale",
        type=finite_float,
        default=1.0,
        help="SGD only: batch-norm shifts get this many times the learning rate (airbench uses 64; default 1)",
    )
    model.add_argument("--teacher", help="distil from this trained run folder or .keras file")
    model.add_argument(
        "--weights",
        default="none",
        help="mobilenet_v2 / efficientnet_b0 only: imagenet (needs the internet), PATH to a weights "
        "file, or none (default)",
    )
    model.add_argument(
        "--fine-tune-epochs",
        type=int,
        default=5,
        help="with pretrained weights: epochs with the backbone's top unfrozen at lr/10 (default 5)",
    )
    model.add_argument(
        "--distill-alpha", type=finite_float, default=0.7, help="weight of the teacher term (default 0.7)"
    )
    model.add_argument(
        "--distill-temperature", type=finite_float, default=4.0, help="softening temperature (default 4)"
    )
    model.add_argument(
        "--distill-targets",
        choices=DISTILL_TARGETS,
        default="live",
        help="live: the teacher runs on every augmented batch (default); fixed: once per image, "
        "averaged with its mirror image, before training (far cheaper with a large teacher)",
    )
    model.add_argument(
        "--patience", type=int, default=5, help="early-stop after N epochs without validation gain (0: off)"
    )
    model.add_argument(
        "--bn-recalibrate",
        type=int,
        default=0,
        help="after training, recompute batch-norm statistics as the average over N batches of 500 "
        "training images with the final weights (precise BN; default 0 = off)",
    )
    model.add_argument(
        "--balance",
        choices=balance.MODES,
        default="auto",
        help="uneven classes: weights (each image's loss times n_images / (n_classes x its class's images)), "
        "sampling (batches draw every class equally often; an epoch keeps its number of steps), none, or auto "
        "(default: weights when the largest class has more than twice the smallest's training images, else none)",
    )
    model.add_argument("--seed", type=int, default=0)
    model.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="none",
        help="tf.distribute: mirrored (GPUs of one host), multiworker (hosts in TF_CONFIG), auto; "
        "--batch-size is per replica and the learning rate scales with the replicas",
    )
    start = parser.add_argument_group(
        "warm start (--init): fine-tune a trained model on the data; its architecture, input size, colour order, "
        "normalisation and resize mode carry over"
    )
    start.add_argument(
        "--init",
        metavar="RUN_OR_KERAS",
        help="start from this run folder's model.keras (or a lone .keras / .h5 file) instead of random weights. "
        "The same labels (in any order): the whole model is kept; other labels: a new classifier head, the "
        "layers before it kept and the old head's rows copied for the labels both share. A stated --arch, "
        "--image-size or --resize must match the model's; not with --weights or --resume",
    )
    start.add_argument("--mean", type=rgb_triple, help="lone --init file: what its training subtracted from pixels")
    start.add_argument("--std", type=rgb_triple, help="lone --init file: what its training divided by after the mean")
    start.add_argument("--color", choices=COLORS, help="lone --init file: the channel order it was trained on")
    start.add_argument(
        "--labels",
        type=Path,
        help="lone --init file: labels file, one class name per line in its output order (these four may come "
        "from a <stem>.json sidecar beside it instead, as for `edgeclf convert`)",
    )
    parser.add_argument("--out", default=None, help="run folder (default runs/<arch>)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the interrupted run in RUN_DIR from its last finished epoch, with the options in its "
        "run.json (weights, optimiser, schedule, EMA, lookahead, best checkpoint and history go on). Only "
        "--epochs may be given with it, to extend a run (a cosine / onecycle schedule is then stretched; a "
        "--lookahead run cannot be extended). "
        "A finished run: nothing to do, exit 0. Not for --strategy multiworker runs (yet)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Turn parsed options into a TrainConfig (option names are the dataclass field names)."""
    opts = vars(args)
    data = {name: opts[name] for name in DataSpec.__dataclass_fields__}
    # absolute paths in run.json, so `edgeclf convert` finds the data from any directory
    if data["data"] != "cifar10":
        data["data"] = str(Path(data["data"]).resolve())
    if data["data_dir"]:
        data["data_dir"] = str(Path(data["data_dir"]).resolve())
    skip = ("data", "augment", "out", "init")  # init: warmstart.configure resolves it
    fields = {name: opts[name] for name in TrainConfig.__dataclass_fields__ if name not in skip}
    return TrainConfig(
        data=DataSpec(**data),
        augment=augment.parse(args.augment),
        out=args.out or f"runs/{args.arch}",
        **fields,
    )


def _given(parser: argparse.ArgumentParser, argv: Sequence[str] | None, names: Sequence[str]) -> set[str]:
    """The options the command line names itself: argparse sets defaults only on attributes the
    namespace lacks, so the ones still holding the marker were not given."""
    unset = object()
    parsed = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(names, unset)))
    return {name for name, value in vars(parsed).items() if value is not unset}


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Train a model and write its run folder, or continue an interrupted one (--resume)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    from edgeclf.train.fit import train_model, validate
    from edgeclf.train.report import summary

    if args.resume is not None:
        given = _given(parser, argv, list(vars(args))) - {"resume"}
        if given - {"epochs"}:
            others = ", ".join("--" + name.replace("_", "-") for name in sorted(given - {"epochs"}))
            parser.error(f"--resume goes on with the run's own options; only --epochs may go with it, not {others}")
        config = resume.resume_config(args.resume, args.epochs if "epochs" in given else None)
        if config is None:
            print(f"run folder {args.resume} is already complete; nothing to resume", file=sys.stderr)
            return 0
        validate(config)
        print(summary(train_model(config, resume=True)))
        return 0
    config = config_from_args(args)
    contract = {name: getattr(args, name) for name in lonecontract.CONTRACT_OPTIONS}
    if args.init is not None:
        given = _given(parser, argv, list(vars(args)))
        config = warmstart.configure(config, args.init, given, contract)
        if args.out is None:
            config = replace(config, out=f"runs/{config.arch}")
    elif any(value is not None for value in contract.values()):
        named = ", ".join(f"--{name}" for name, value in contract.items() if value is not None)
        parser.error(f"{named}: only with --init (the contract of a lone Keras file to start from)")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise EdgeClfError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not args.force:
        if resume.has_state(out):
            raise EdgeClfError(
                f"run folder {out} holds an interrupted run: `--resume {out}` continues it, --force starts over"
            )
        raise EdgeClfError(f"run folder {out} already exists; pass --force to overwrite or choose --out")
    validate(config)
    result = train_model(config)
    print(summary(result))
    return 0
