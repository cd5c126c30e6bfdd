"""The run folder: run.json, metrics.json, history.csv, curves.png, confusion.png, per_class.png, and the summary."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeclf.edge_app import files

if TYPE_CHECKING:
    from edgeclf.train.fit import TrainConfig, TrainResult

RUN_FILE = "run.json"
PER_CLASS_ROWS = 20  # the summary lists every class up to this many, else only the weakest


def write_started(out: Path, config: TrainConfig) -> None:
    """run.json at the start of a run: its config alone, so an interrupted run can be resumed (`--resume`);
    write_run replaces it with the full record at the end."""
    files.write_json(out / RUN_FILE, {"config": config.to_dict()})


def write_run(out: Path, config: TrainConfig, result: TrainResult, history: dict[str, list[float]]) -> None:
    """Write every artefact of a finished run into `out`, each atomically."""
    files.write_json(
        out / RUN_FILE,
        {
            "config": config.to_dict(),
            "model_info": result.info.to_dict(),
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
            "epochs_run": result.epochs_run,
            "train_seconds": round(result.train_seconds, 1),
            "images_per_second": round(result.images_per_second, 1),
            **({"init": result.init} if result.init is not None else {}),
        },
    )
    files.write_json(
        out / "metrics.json",
        {
            "split": "test",
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
            "checkpoint_metric": result.monitor,
            "balance": config.balance,
            **({"counts": result.counts} if result.counts is not None else {}),
            **({"init": result.init} if result.init is not None else {}),
            **result.test,
        },
    )
    files.write_text(out / "history.csv", history_csv(history))
    plot_curves(history, out / "curves.png")
    plot_confusion(result.test["confusion_matrix"], result.info.labels, out / "confusion.png")
    plot_per_class(result.test["per_class"], out / "per_class.png")


def with_balanced_accuracy(test: dict[str, Any]) -> dict[str, Any]:
    """`test` (metrics.classification_report's) with balanced accuracy: the mean recall over the classes
    that have test images, i.e. accuracy as if every class had as many (scikit-learn's definition)."""
    recalls = [m["recall"] for m in test["per_class"].values() if m["support"] > 0]
    return {**test, "balanced_accuracy": sum(recalls) / len(recalls) if recalls else 0.0}


def per_class_text(per_class: dict[str, dict[str, Any]]) -> str:
    """Precision, recall, F1 and support of each class as aligned text."""
    width = max(len("class"), *(len(name) for name in per_class))
    rows = [f"{'class':<{width}}{'precision':>11}{'recall':>9}{'F1':>9}{'support':>9}"]
    for name, m in per_class.items():
        rows.append(f"{name:<{width}}{m['precision']:>11.4f}{m['recall']:>9.4f}{m['f1']:>9.4f}{m['support']:>9,}")
    return "\n".join(rows)


def history_csv(history: dict[str, list[float]]) -> str:
    """One row per epoch: epoch, then every logged metric."""
    keys = sorted(history)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for i in range(len(history[keys[0]]) if keys else 0):
        writer.writerow([i + 1, *(f"{history[k][i]:.6g}" for k in keys)])
    return buf.getvalue()


def _pyplot() -> Any:
    from edgeclf.edge_app.errors import require

    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, path: Path) -> None:
    files.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy per epoch, training and validation."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=("validation " if prefix else "train ") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    _save_figure(fig, path)
    plt.close(fig)


def plot_confusion(matrix: list[list[int]], labels: tuple[str, ...], path: Path) -> None:
    """Confusion matrix heat map with counts (rows: true class, columns: predicted)."""
    plt = _pyplot()
    n = len(labels)
    size = max(4.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in matrix) or 1
    if n <= 30:
        for i in range(n):
            for j in range(n):
                colour = "white" if matrix[i][j] > peak / 2 else "black"
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=7, color=colour)
    _save_figure(fig, path)
    plt.close(fig)


def plot_per_class(per_class: dict[str, dict[str, Any]], path: Path) -> None:
    """Precision, recall and F1 of each class as grouped bars, the class's test support under its name."""
    plt = _pyplot()
    names = list(per_class)
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * n + 2), 4))
    for k, key in enumerate(("precision", "recall", "f1")):
        xs = [i + (k - 1) * 0.27 for i in range(n)]
        ax.bar(xs, [per_class[name][key] for name in names], width=0.27, label=key)
    ax.set_xticks(range(n), [f"{name}\n({per_class[name]['support']:,})" for name in names], rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test score")
    ax.set_title("per class (test images in brackets)", loc="left")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=3, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)  # above the bars, never on them
    _save_figure(fig, path)
    plt.close(fig)


def summary(result: TrainResult) -> str:
    """The one-screen summary printed at the end of a run."""
    t = result.test
    worst = sorted(t["per_class"].items(), key=lambda kv: kv[1]["f1"])[:3]
    lines = [
        f"run        {result.out}",
        f"model      {result.info.architecture}, {result.info.params:,} trainable params, "
        f"{result.info.metrics.get('macs', 0) / 1e6:.1f} M MACs per image, input "
        f"{result.info.input.height}x{result.info.input.width}",
        f"data       {result.info.dataset}",
        f"training   {result.epochs_run} epochs in {result.train_seconds:.0f} s "
        f"({result.images_per_second:.0f} images/s); best epoch {result.best_epoch} "
        f"({'balanced ' if result.monitor == 'val_balanced_accuracy' else ''}validation accuracy "
        f"{result.best_val_accuracy:.4f})",
        f"test       accuracy {t['accuracy']:.4f}"
        + (f", top-5 {t['top5']:.4f}" if "top5" in t else "")
        + f", macro precision {t['macro_precision']:.4f} recall {t['macro_recall']:.4f} F1 {t['macro_f1']:.4f}"
        + f" on {t['n']} images",
        f"balanced   accuracy {t['balanced_accuracy']:.4f} (the mean of the classes' recalls)",
        "weakest    " + ", ".join(f"{name} F1 {m['f1']:.3f}" for name, m in worst),
    ]
    if len(t["per_class"]) <= PER_CLASS_ROWS:
        lines += ["per class", *("  " + row for row in per_class_text(t["per_class"]).splitlines())]
    if not result.wrote:  # a non-chief worker: its --out stays empty
        lines[0] = "run        not written here: the chief writes the run folder"
        return "\n".join(lines)
    lines += [
        "files      model.keras run.json metrics.json history.csv curves.png confusion.png per_class.png",
        f"next       edgeclf convert {result.out} --quantize int8",
    ]
    return "\n".join(lines)
