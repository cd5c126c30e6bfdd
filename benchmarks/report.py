"""Benchmark reports: report.md (for people), report.json (every number), report.csv, and
latency_accuracy.png; and `--compare` of two report.json files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.edge_app import files, preprocess, quantmodes
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.quantmodes import REFERENCE

CSV_COLUMNS = (
    "model", "architecture", "quantization", "runtime", "threads", "input",
    "invoke_ms.p50", "invoke_ms.p90", "invoke_ms.p99", "invoke_ms.mean", "invoke_ms.std", "invoke_ms.n",
    "frame_ms.p50", "frame_ms.p90", "frame_ms.p99", "fps",
    "top1", "top5", "macro_precision", "macro_recall", "macro_f1", "agreement_vs_float32", "bytes", "rss_mb",
    "cold_start_s", "vs_float32.not_faster",
)  # fmt: skip


UNKNOWN_COLOUR = (90, 90, 90)  # BGR, a mode the table does not know (a third-party model's)


def colour(quantization: str) -> tuple[int, int, int]:
    """The plot colour (BGR) of a mode, from the table of modes."""
    mode = quantmodes.MODES.get(quantization)
    return mode.colour if mode else UNKNOWN_COLOUR


def ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by architecture (in first-seen order), modes in table order within each group; otherwise
    as given (runtimes and threads keep the order they were measured in)."""
    first_seen: dict[str, int] = {}
    for row in rows:
        first_seen.setdefault(row["architecture"], len(first_seen))
    return sorted(rows, key=lambda r: (first_seen[r["architecture"]], quantmodes.order(r["quantization"])))


def _get(row: dict[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _f(value: Any, digits: int = 2, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if pct else f"{value:.{digits}f}"


# Under this float32 invoke p50 a model has too little compute for int8 to save much against the fixed cost of
# every call (quantizing the input, dequantizing the output, the interpreter's own dispatch).
SMALL_MODEL_MS = 0.5
NO_DOT_PRODUCT = "no int8 dot-product instructions"
TOO_SMALL = "model too small to gain"
UNEXPLAINED = "unexplained"


def not_faster(row: dict[str, Any], device: dict[str, Any]) -> str | None:
    """Why an int8 row is not faster than its float32 twin (invoke or frame speed-up <= 1), None when it is
    faster or is no int8 row. Reads the device's `int8_dot_product` (True / False / None); a report from before
    it was recorded lacks the key and counts as unknown."""
    v = row.get("vs_float32")
    if row.get("quantization") != "int8" or not v:
        return None
    if v["invoke_speedup"] > 1.0 and v["frame_speedup"] > 1.0:
        return None
    reasons = []
    dot_product = device.get("int8_dot_product")
    if dot_product is False:
        reasons.append(NO_DOT_PRODUCT)
    if v["invoke_speedup"] * row["invoke_ms"]["p50"] < SMALL_MODEL_MS:  # the float32 row's invoke p50
        reasons.append(TOO_SMALL)
    if reasons:
        return "; ".join(reasons)
    return UNEXPLAINED if dot_product is True else f"{UNEXPLAINED} (int8 dot-product support not recorded)"


def explain(report: dict[str, Any]) -> None:
    """Record `not_faster` (the reason, or None) in every row compared with float32, for report.json and .csv."""
    for row in report["rows"]:
        if "vs_float32" in row:
            row["vs_float32"]["not_faster"] = not_faster(row, report["device"])


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report["rows"]:
        writer.writerow(["" if (v := _get(row, c)) is None else v for c in CSV_COLUMNS])
    return buf.getvalue()


FLAG_NOTES = {
    "frame_below_invoke": "frame p50 {frame:.3f} ms below invoke p50 {invoke:.3f} ms (a frame includes an invoke: "
    "one of them was measured cold or unsettled)",
    "warmup_capped": "a timed block began before its warm-up settled (a loaded machine, or timings that drift)",
}


def _flag_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per flagged row (⚠ in the table), saying why its timings are suspect."""
    notes = []
    for r in rows:
        for flag in r.get("flags") or []:
            text = FLAG_NOTES.get(flag, flag).format(invoke=r["invoke_ms"]["p50"], frame=r["frame_ms"]["p50"])
            notes.append(f"- ⚠ {Path(r['model']).name} (threads {r['threads']}, {r['runtime']}): {text}.")
    return ["", "Timings to distrust (rerun without `--quick`, on an idle machine):", "", *notes] if notes else []


DOT_PRODUCT = {
    True: "yes (VNNI on x86, SDOT/UDOT on Arm: int8 can run well ahead of float32)",
    False: "no (int8 gains come only from smaller data; it may be no faster than float32)",
    None: "unknown (the kernel lists no CPU features)",
}


def cpu_line(device: dict[str, Any]) -> str:
    """Top frequency, the int8-relevant features and the dot-product verdict; reports from before these were
    recorded (no `cpu_features` key) say so instead of guessing."""
    if "cpu_features" not in device:
        return "max MHz, features and int8 dot-product not recorded (report made before edgeclf recorded them)"
    mhz = device.get("max_mhz")
    features = " ".join(device["cpu_features"]) or "none of the int8-relevant ones"
    return (
        f"{'max MHz not readable' if mhz is None else f'{mhz:.0f} MHz'}; features: {features}; "
        f"int8 dot-product: {DOT_PRODUCT[device.get('int8_dot_product')]}"
    )


def recall_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: each class's recall (a row) for each model measured on --data (a column; threads and
    runtimes give the same outputs, so one column per model file), the lowest of each column in bold."""
    models: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("recall_per_class"):
            models.setdefault(Path(r["model"]).name, r["recall_per_class"])
    if not models:
        return []
    classes = list(next(iter(models.values())))
    lowest = {name: min(recall.values()) for name, recall in models.items()}
    lines = ["", "## Recall per class (on `--data`; the lowest of each model in bold)", ""]
    lines += ["| class | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for c in classes:
        cells = []
        for name, recall in models.items():
            value = recall.get(c)
            text = _f(value, pct=True)
            cells.append(f"**{text}**" if value is not None and value == lowest[name] else text)
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    d = report["device"]
    lines = [
        f"# Benchmark: {d.get('pi_model') or d['cpu']}",
        "",
        f"- Device: {d['cpu']}, {d['cores']} cores, {d['machine']}, {d['os']}"
        + (f", {d['pi_model']}" if d.get("pi_model") else ""),
        f"- CPU: {cpu_line(d)}",
        f"- Python {d['python']}, numpy {d['numpy']}; mode `{report['mode']}`",
        f"- Thermal before / after: {report['thermal']['before']} / {report['thermal']['after']}",
        "",
        "invoke = `interpreter.invoke()` alone; frame = a 640x480 BGR frame through the app's own preprocessing, "
        "invoke and post-processing (`edgeclf.edge_app.live.FrameStep`, as `edgeclf run` does). Variants were timed in "
        "turns (A, B, A, B, ...). RSS and cold start (process start to first result) come from a fresh process "
        "per row.",
        "",
        "| model | quant | runtime | threads | invoke p50 / p90 / p99 ms | frame p50 / p90 ms | FPS | top-1 | top-5 "
        "| macro F1 | agree f32 | bytes | RSS MB | cold start s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        inv, fr = r["invoke_ms"], r["frame_ms"]
        lines.append(
            f"| {Path(r['model']).name}{' ⚠' if r.get('flags') else ''} | {r['quantization']} | {r['runtime']} | "
            f"{r['threads']} | "
            f"{_f(inv['p50'], 3)} / {_f(inv['p90'], 3)} / {_f(inv['p99'], 3)} | {_f(fr['p50'], 3)} / "
            f"{_f(fr['p90'], 3)} | {_f(r['fps'], 1)} | {_f(r.get('top1'), pct=True)} | "
            f"{_f(r.get('top5'), pct=True)} | {_f(r.get('macro_f1'), 4)} | "
            f"{_f(r.get('agreement_vs_float32'), pct=True)} | "
            f"{r['bytes']:,} | {_f(r['rss_mb'], 1)} | {_f(r['cold_start_s'], 2)} |"
        )
    lines += _flag_notes(report["rows"])
    lines += recall_table(report["rows"])
    ratio_rows = [r for r in report["rows"] if "vs_float32" in r and r["quantization"] != REFERENCE]
    if ratio_rows:
        lines += [
            "",
            f"## Against {REFERENCE} (same architecture, runtime and threads)",
            "",
            "| model | runtime | threads | invoke speed-up | frame speed-up | size | top-1 change | RSS "
            "| int8 not faster because |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in ratio_rows:
            v = r["vs_float32"]
            delta = "-" if v["top1_delta_points"] is None else f"{v['top1_delta_points']:+.2f} pt"
            lines.append(
                f"| {Path(r['model']).name} | {r['runtime']} | {r['threads']} | x{v['invoke_speedup']:.2f} | "
                f"x{v['frame_speedup']:.2f} | "
                f"x{v['size_ratio']:.3f} | {delta} | x{v['rss_ratio']:.2f} | "
                f"{not_faster(r, report['device']) or '-'} |"
            )
        if any(not_faster(r, report["device"]) for r in ratio_rows):
            lines += [
                "",
                "An int8 row is marked when its invoke or frame speed-up is x1.00 or less. int8 gains need the "
                "CPU's int8 dot-product instructions (x86 VNNI, Arm `asimddp`; see the device line), and a model "
                f"whose float32 invoke takes under {SMALL_MODEL_MS} ms has little compute to save against the "
                "per-call overhead of quantizing its input and dequantizing its output.",
            ]
    ref = report.get("reference", {})
    lines += ["", "## The tutorial's deployment as a reference", ""]
    if "row" in ref:
        k, ratios, edge = ref["row"], ref["ratios"], ref["edge_row"]
        lines += [
            f"{k['path']}: `{k['model']}` on {k['runtime']}; against `{Path(edge['model']).name}` "
            f"({edge['runtime']}, threads {edge['threads']}), both measured per 640x480 frame in a fresh process.",
            "",
            "| path | frame p50 ms | FPS | RSS MB | cold start s |",
            "|---|---:|---:|---:|---:|",
            f"| Keras model.predict | {_f(k['frame_ms']['p50'], 2)} | {_f(k['fps'], 1)} | {_f(k['rss_mb'], 1)} "
            f"| {_f(k['cold_start_s'], 2)} |",
            "",
            f"Keras / edge: latency x{ratios['latency_keras_over_edge']:.1f}, "
            f"memory x{ratios['rss_keras_over_edge']:.1f}, "
            f"cold start x{ratios['cold_start_keras_over_edge']:.1f}.",
        ]
    else:
        lines.append(f"Skipped: {ref.get('skipped', 'not measured')}.")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Accuracy against frame latency, one marker per row, marker area proportional to file size."""
    cv2 = preprocess._cv2()
    rows = [r for r in report["rows"] if r.get("top1") is not None]
    w, h, left, right, top, bottom = 900, 560, 80, 30, 50, 70
    img = np.full((h, w, 3), 255, np.uint8)

    def text(s: str, xy: tuple[int, int], scale: float = 0.4, colour: tuple[int, int, int] = (0, 0, 0)) -> None:
        cv2.putText(img, s, xy, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)

    text("accuracy vs 640x480 frame latency (marker area = file size)", (left, 30), 0.6)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    if not rows:
        text("no accuracy measured (run with --data)", (left + 20, h // 2), 0.7, (0, 0, 200))
    else:
        xs = [r["frame_ms"]["p50"] for r in rows]
        ys = [100 * r["top1"] for r in rows]
        x0, x1 = 0.0, max(xs) * 1.15
        y0, y1 = max(0.0, min(ys) - 5), min(100.0, max(ys) + 5)

        def at(x: float, y: float) -> tuple[int, int]:
            px = left + (x - x0) / (x1 - x0) * (w - left - right)
            py = h - bottom - (y - y0) / max(y1 - y0, 1e-9) * (h - top - bottom)
            return int(px), int(py)

        for i in range(6):
            xv, yv = x0 + (x1 - x0) * i / 5, y0 + (y1 - y0) * i / 5
            text(f"{xv:.2f}", (at(xv, y0)[0] - 15, h - bottom + 20))
            text(f"{yv:.1f}", (left - 45, at(x0, yv)[1] + 4))
        text("frame latency p50 (ms)", (w // 2 - 80, h - 25), 0.5)
        text("top-1 %", (10, top - 10), 0.5)
        biggest = max(r["bytes"] for r in rows)
        for i, (r, x, y) in enumerate(zip(rows, xs, ys), start=1):
            radius = max(4, int(22 * np.sqrt(r["bytes"] / biggest)))
            centre = at(x, y)
            marker = colour(r["quantization"])
            cv2.circle(img, centre, radius, marker, 2, cv2.LINE_AA)
            # numbers beside the markers, names in a legend: nearby variants would overprint
            text(str(i), (centre[0] - 4, centre[1] - radius - 4 - 12 * (i % 2)), 0.45, marker)
            text(
                f"{i}  {Path(r['model']).stem}, {r['threads']} thread(s), {r['bytes']:,} B",
                (left + 10, top + 18 * i),
                0.45,
                marker,
            )
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise EdgeClfError("could not encode the plot")
    files.write_bytes(path, data.tobytes())


def write(report: dict[str, Any], out: Path) -> list[Path]:
    """All four report files into `out`, each written atomically."""
    paths = [
        files.write_json(out / "report.json", report),
        files.write_text(out / "report.md", to_markdown(report)),
        files.write_text(out / "report.csv", to_csv(report)),
    ]
    plot(report, out / "latency_accuracy.png")
    return paths + [out / "latency_accuracy.png"]


def load(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgeClfError(f"cannot read report {path}: {exc}") from None
    if not isinstance(data, dict) or "rows" not in data or "device" not in data:
        raise EdgeClfError(f"{path} is not an edgeclf benchmark report.json")
    return data


def compare(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str] = ("A", "B")) -> str:
    """Rows present in both reports, side by side (matched by model file name, quantization, threads)."""

    def key(r: dict[str, Any]) -> tuple[str, str, int]:
        return Path(r["model"]).name, r["quantization"], r["threads"]

    b_rows = {key(r): r for r in b["rows"]}
    da, db = a["device"], b["device"]
    lines = [
        f"{names[0]}: {da.get('pi_model') or da['cpu']} ({da['cores']} cores)",
        f"{names[1]}: {db.get('pi_model') or db['cpu']} ({db['cores']} cores)",
        "",
        f"| model | quant | threads | invoke p50 ms {names[0]} | {names[1]} | {names[1]}/{names[0]} "
        f"| FPS {names[0]} | {names[1]} | top-1 {names[0]} | {names[1]} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    matched = 0
    for ra in a["rows"]:
        rb = b_rows.get(key(ra))
        if rb is None:
            continue
        matched += 1
        pa, pb = ra["invoke_ms"]["p50"], rb["invoke_ms"]["p50"]
        lines.append(
            f"| {key(ra)[0]} | {ra['quantization']} | {ra['threads']} | {pa:.3f} | {pb:.3f} | x{pb / pa:.2f} | "
            f"{_f(ra.get('fps'), 1)} | {_f(rb.get('fps'), 1)} | {_f(ra.get('top1'), pct=True)} | "
            f"{_f(rb.get('top1'), pct=True)} |"
        )
    if not matched:
        raise EdgeClfError("the two reports have no model / quantization / threads row in common")
    return "\n".join(lines)
