"""`edgeclf bench --recommend`: which measured variant to deploy on this device, within a frame-latency budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError, MetadataError
from edgeclf.edge_app.metadata import load_info
from edgeclf.edge_app.shipped import MODELS_DIR

MEASURED = "measured"  # top-1 on the --data images of this run
METADATA = "metadata"  # the test_accuracy the model file carries (measured where it was made)
UNKNOWN = "unknown"
# Accuracies this close count as equal and the smaller file wins: one accuracy on 10,000 images has a standard
# error of about 0.4 points, so a float32 file 0.1 points ahead of its int8 twin is not shown to be better.
ACCURACY_TIE = 0.005


@dataclass(frozen=True)
class Candidate:
    """One measured variant: a model file on one runtime and thread count."""

    model: str
    runtime: str
    threads: int
    frame_p50_ms: float
    bytes: int
    accuracy: float | None
    accuracy_source: str
    eval_n: int | None = None

    def command(self) -> str:
        """The `edgeclf run` line that deploys this variant."""
        return f"edgeclf run --model {self.model} --runtime {self.runtime} --threads {self.threads}"

    def accuracy_text(self) -> str:
        if self.accuracy is None:
            return "accuracy unknown (no --data, no test_accuracy in the model's metadata)"
        if self.accuracy_source == MEASURED:
            where = f"measured on --data, {self.eval_n} images" if self.eval_n else "measured on --data"
        else:
            where = "model metadata: test_accuracy"
        return f"{100 * self.accuracy:.2f}% ({where})"


def locate(model: str) -> Path | None:
    """The model file a report row names: as written (relative to the working directory, as the benchmark
    wrote it), else the shipped copy of that name (a committed report read from an installed package)."""
    for path in (Path(model), MODELS_DIR / Path(model).name):
        if path.is_file():
            return path
    return None


def metadata_accuracy(model: str) -> float | None:
    """The test_accuracy in the model's edgeclf metadata, None when the file or the number is missing."""
    path = locate(model)
    if path is None:
        return None
    try:
        value = load_info(path).metrics.get("test_accuracy")
    except MetadataError:
        return None
    return float(value) if isinstance(value, (int, float)) else None


def candidate(row: dict[str, Any], accuracy_lookup: Callable[[str], float | None] = metadata_accuracy) -> Candidate:
    """A report row as a candidate, its accuracy measured on --data when the run had it, else from metadata."""
    model = str(row["model"])
    if row.get("top1") is not None:
        accuracy, source = float(row["top1"]), MEASURED
    elif (meta := accuracy_lookup(model)) is not None:
        accuracy, source = meta, METADATA
    else:
        accuracy, source = None, UNKNOWN
    return Candidate(
        model=str(locate(model) or model),
        # the report records "ai_edge_litert 2.3.0"; `edgeclf run --runtime` takes the name
        runtime=str(row["runtime"]).split()[0],
        threads=int(row["threads"]),
        frame_p50_ms=float(row["frame_ms"]["p50"]),
        bytes=int(row["bytes"]),
        accuracy=accuracy,
        accuracy_source=source,
        eval_n=row.get("eval_n") if source == MEASURED else None,
    )


def rank(
    report_rows: Sequence[dict[str, Any]],
    budget_ms: float | None = None,
    accuracy_lookup: Callable[[str], float | None] = metadata_accuracy,
) -> list[Candidate]:
    """The variants whose frame p50 is within `budget_ms` (all without one), best first: most accurate (those
    within ACCURACY_TIE of the best left count as equally accurate), then the smaller file, then the faster
    frame. Unknown accuracy ranks last: it cannot be shown to be better."""
    found = [candidate(r, accuracy_lookup) for r in report_rows]
    left = [c for c in found if budget_ms is None or c.frame_p50_ms <= budget_ms]
    ranked: list[Candidate] = []
    while left:
        known = [c.accuracy for c in left if c.accuracy is not None]
        top = max(known) if known else None
        tied = [c for c in left if top is None or (c.accuracy is not None and c.accuracy >= top - ACCURACY_TIE)]
        pick = min(tied, key=lambda c: (c.bytes, c.frame_p50_ms, -(c.accuracy or 0.0)))
        ranked.append(pick)
        left.remove(pick)
    return ranked


def advice(
    report: dict[str, Any],
    budget_ms: float | None = None,
    accuracy_lookup: Callable[[str], float | None] = metadata_accuracy,
) -> str:
    """The ranking as text, ending with the `edgeclf run` line to use; EdgeClfError when nothing fits."""
    rows = report.get("rows") or []
    if not rows:
        raise EdgeClfError("the report has no measured rows to recommend from")
    ranked = rank(rows, budget_ms, accuracy_lookup)
    if not ranked:
        fastest = min((candidate(r, lambda _m: None) for r in rows), key=lambda c: c.frame_p50_ms)
        raise EdgeClfError(
            f"nothing fits --budget-ms {budget_ms:g}: the fastest variant, {Path(fastest.model).name} "
            f"({fastest.runtime}, {fastest.threads} thread(s)), takes {fastest.frame_p50_ms:.2f} ms per frame (p50)"
        )
    d = report.get("device", {})
    budget = f"frame p50 within {budget_ms:g} ms" if budget_ms is not None else "no latency budget"
    lines = [
        f"Recommendation for {d.get('pi_model') or d.get('cpu', 'this device')} ({budget}; "
        f"{len(ranked)} of {len(rows)} variant(s) fit): most accurate first (within {100 * ACCURACY_TIE:g} points "
        "counts as equal), then smaller, then faster",
    ]
    for i, c in enumerate(ranked, start=1):
        lines.append(
            f"  {i}. {Path(c.model).name}  {c.runtime}  {c.threads} thread(s)  {c.accuracy_text()}  "
            f"frame p50 {c.frame_p50_ms:.2f} ms  {c.bytes:,} B"
        )
    best = ranked[0]
    if locate(best.model) is None:
        lines.append(f"note: {best.model} is not found from here; the path is as the benchmark recorded it")
    lines.append(best.command())
    return "\n".join(lines)
