"""Does `--quick` tell the same story as a full run? `python -m edgeclf.benchmarks.quick_check`

Benchmarks the shipped int8 / float32 pairs in quick mode (several times) and once in full mode, and checks
that every int8 / float32 invoke and frame speed-up of a quick run is within the tolerance of the full run's.
Ratios, not times: the machine may be shared, and interleaving makes ratios survive load. Writes
quick_check.json and quick_check.md into the results folder.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeclf.benchmarks import bench, device
from edgeclf.edge_app import files
from edgeclf.edge_app.cli import guarded
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.shipped import MODELS_DIR

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RATIOS = ("invoke_speedup", "frame_speedup")


def shipped_pairs(models_dir: Path = MODELS_DIR) -> list[tuple[Path, Path]]:
    """(float32, int8) for every architecture shipped in both modes, by file name."""
    pairs = []
    for f32 in sorted(models_dir.glob("*_float32.tflite")):
        int8 = f32.with_name(f32.name.replace("_float32.tflite", "_int8.tflite"))
        if int8.is_file():
            pairs.append((f32, int8))
    return pairs


def ratios(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per int8 row (by model file name): its invoke and frame speed-up against float32."""
    return {
        Path(r["model"]).name: {k: r["vs_float32"][k] for k in RATIOS}
        for r in report["rows"]
        if r["quantization"] == "int8" and "vs_float32" in r
    }


def agreement(quick: dict[str, dict[str, float]], full: dict[str, dict[str, float]], tolerance: float) -> list[dict]:
    """One entry per int8 model and ratio: quick, full, quick/full - 1, and whether it is within tolerance."""
    out = []
    for name, f in full.items():
        for k in RATIOS:
            q = quick.get(name, {}).get(k)
            diff = None if q is None else q / f[k] - 1
            out.append(
                {
                    "model": name,
                    "ratio": k,
                    "quick": q,
                    "full": f[k],
                    "diff": diff,
                    "ok": diff is not None and abs(diff) <= tolerance,
                }
            )
    return out


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed_run(models: list[Path], mode: bench.Mode, log: Any) -> tuple[dict[str, Any], float, list[float]]:
    start = time.perf_counter()
    report = bench.run(bench.BenchConfig(models=models, mode=mode), log=log)
    return report, time.perf_counter() - start, _load()


def to_markdown(result: dict[str, Any]) -> str:
    """The check as a table: one line per int8 model, ratio and quick run."""
    tol = result["tolerance"]
    lines = [
        f"# Quick against full mode: {result['device']['cpu']}, {result['device']['cores']} cores",
        "",
        f"int8 / float32 speed-ups (float32 p50 / int8 p50, threads 1) from {len(result['quick_runs'])} quick run(s) "
        f"and one full run; each quick ratio must be within {100 * tol:.0f}% of the full one.",
        "",
        "| model | ratio | full | " + " | ".join(f"quick {i + 1}" for i in range(len(result["quick_runs"]))) + " |",
        "|---|---|---:|" + "---:|" * len(result["quick_runs"]),
    ]
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in result["quick_runs"]:
        for a in run["agreement"]:
            by_key.setdefault((a["model"], a["ratio"]), []).append(a)
    for (model, ratio), entries in by_key.items():
        cells = [
            "-" if a["quick"] is None else f"x{a['quick']:.2f} ({100 * a['diff']:+.0f}%){'' if a['ok'] else ' ✗'}"
            for a in entries
        ]
        lines.append(f"| {model} | {ratio.replace('_speedup', '')} | x{entries[0]['full']:.2f} | {' | '.join(cells)} |")
    lines += ["", "| run | wall s | variants | s per variant | flagged rows | load average after (1, 5, 15 min) |"]
    lines += ["|---|---:|---:|---:|---|---|"]
    for i, run in enumerate(result["quick_runs"], 1):
        lines.append(_run_line(f"quick {i}", run))
    lines.append(_run_line("full", result["full_run"]))
    verdict = "all agree" if result["all_agree"] else f"{result['disagreements']} ratio(s) outside the tolerance (✗)"
    lines += ["", f"Result: {verdict}."]
    return "\n".join(lines) + "\n"


def _run_line(name: str, run: dict[str, Any]) -> str:
    flagged = ", ".join(f"{m}: {' '.join(f)}" for m, f in run["flags"].items() if f) or "none"
    return (
        f"| {name} | {run['wall_s']:.1f} | {run['variants']} | {run['wall_s'] / run['variants']:.2f} | {flagged} | "
        f"{' / '.join(str(x) for x in run['load_after'])} |"
    )


def _summary(report: dict[str, Any], wall: float, load: list[float]) -> dict[str, Any]:
    return {
        "wall_s": round(wall, 2),
        "variants": len(report["rows"]),
        "load_after": load,
        "flags": {Path(r["model"]).name: r.get("flags", []) for r in report["rows"]},
        "rows": [
            {
                "model": Path(r["model"]).name,
                "invoke_p50_ms": r["invoke_ms"]["p50"],
                "invoke_n": r["invoke_ms"]["n"],
                "frame_p50_ms": r["frame_ms"]["p50"],
                "frame_n": r["frame_ms"]["n"],
                "warmup": r.get("warmup"),
            }
            for r in report["rows"]
        ],
        "ratios": ratios(report),
    }


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edgeclf.benchmarks.quick_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick-runs", type=int, default=3, help="quick runs to compare with the full one")
    parser.add_argument("--tolerance", type=float, default=0.15, help="largest |quick / full - 1| allowed")
    parser.add_argument(
        "--out", type=Path, help="results folder (default benchmarks/results/<device>-<date>-quick-check/)"
    )
    return parser


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the check, print its table, write it; 0 when every ratio agrees, 1 when one does not."""
    args = build_parser(prog).parse_args(argv)
    if args.quick_runs < 1 or args.tolerance <= 0:
        raise EdgeClfError("--quick-runs must be at least 1 and --tolerance above 0")
    pairs = shipped_pairs()
    if not pairs:
        raise EdgeClfError(f"no int8 / float32 pairs in {MODELS_DIR}")
    models = [m for pair in pairs for m in pair]  # float32 before its int8, as `edgeclf bench` orders them
    load_before = _load()
    full, full_wall, full_load = _timed_run(models, bench.FULL, sys.stderr)
    full_ratios = ratios(full)
    quick_runs = []
    for _ in range(args.quick_runs):
        quick, wall, load = _timed_run(models, bench.QUICK, sys.stderr)
        run = _summary(quick, wall, load)
        run["agreement"] = agreement(run["ratios"], full_ratios, args.tolerance)
        quick_runs.append(run)
    bad = [a for run in quick_runs for a in run["agreement"] if not a["ok"]]
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            ["python -m edgeclf.benchmarks.quick_check", *(argv if argv is not None else sys.argv[1:])]
        ),
        "device": full["device"],
        "tolerance": args.tolerance,
        "load_before": load_before,
        "full_run": _summary(full, full_wall, full_load),
        "quick_runs": quick_runs,
        "all_agree": not bad,
        "disagreements": len(bad),
    }
    slug = device.slug(full["device"])
    out = args.out or RESULTS_DIR / f"{slug}-{datetime.date.today().isoformat()}-quick-check"
    md = to_markdown(result)
    files.write_json(out / "quick_check.json", result)
    files.write_text(out / "quick_check.md", md)
    print(md)
    print(f"wrote {out / 'quick_check.json'}, {out / 'quick_check.md'}", file=sys.stderr)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
