"""Derived figures (GFLOP/s, % of sgemm) and the printed comparison table.

Each cell of the table is a median; "(r)" after it is the ratio
baseline / column for that metric (the baseline column itself shows no ratio).
Throughput and GFLOP/s: r > 1 means the baseline is faster.
Latency and peak RSS: r < 1 means the baseline is better.
The last row, "other CPU load", is the largest share of the machine's CPU time
that other processes took while one of the column's metrics was timed: a
noise indicator (a metric is re-measured when it exceeds --max-other-load).
"""

from bench import models as spec

# (row label, metric key, field) in display order
ROWS = [
    ("train b32   ex/s", "train_b32", "per_s"),
    ("train b128  ex/s", "train_b128", "per_s"),
    ("infer b32   ex/s", "infer_b32", "per_s"),
    ("latency b1  ms", "latency_b1", "ms"),
    ("peak RSS    MB", "peak_rss", "mb"),
    ("train b128  GFLOP/s", "train_b128", "gflops"),
    ("train b128  % sgemm", "train_b128", "pct"),
    ("infer b32   GFLOP/s", "infer_b32", "gflops"),
    ("infer b32   % sgemm", "infer_b32", "pct"),
    ("other CPU load %", "other_load", "pct"),   # noise indicator, no ratio
]


def add_derived(cell, sgemm_gflops):
    """Add gflops and pct (of the sgemm yardstick) to each timed metric of a cell."""
    for key, m in cell.get("metrics", {}).items():
        per_example = spec.train_flops(cell["model"]) if key.startswith("train") \
            else spec.forward_flops(cell["model"])
        m["gflops"] = m["per_s"]["median"] * per_example / 1e9
        m["pct_sgemm"] = 100.0 * m["gflops"] / sgemm_gflops if sgemm_gflops else None
        m["ms"] = m["time_s"]["median"] * 1e3


def value(cell, key, field):
    """The displayed number of one row for one cell, or None."""
    if cell is None or cell.get("status") != "ok":
        return None
    if key == "peak_rss":
        return cell.get("peak_rss", {}).get("peak_rss_mb")
    if key == "other_load":
        load = other_load(cell)
        return None if load is None else 100.0 * load
    m = cell["metrics"].get(key)
    if m is None:
        return None
    return {"per_s": m["per_s"]["median"], "ms": m["ms"], "gflops": m["gflops"],
            "pct": m["pct_sgemm"]}[field]


def other_load(cell):
    """Worst share of CPU taken by other processes during the cell's timed metrics."""
    loads = [m.get("other_load") for m in cell.get("metrics", {}).values()]
    loads = [x for x in loads if x is not None]
    return max(loads) if loads else cell.get("other_load")


def status_text(cell, key):
    if cell is None:
        return "-"
    if cell.get("status") != "ok":
        return "error" if cell.get("status") == "error" else "missing"
    if key in cell.get("errors", {}) or (key == "peak_rss" and cell.get("peak_rss", {}).get("error")):
        return "error"
    return "n/a"


def fmt(v):
    if v == 0:
        return "0"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratios(row_values, baseline):
    """Per column: baseline / column, or None."""
    base = row_values.get(baseline)
    return {c: (base / v if base is not None and v and c != baseline else None)
            for c, v in row_values.items()}


def model_table(model, cells, columns, baseline, threads, sgemm_gflops, machine=""):
    """Lines of the table of one model; cells maps column -> worker result; machine: the
    CPU, its ISA and core count (and cnnc's target), for the header."""
    width = 18
    lines = [f"== {model}: {spec.train_flops(model) / 1e6:.1f} MFLOP per training example, "
             f"{spec.forward_flops(model) / 1e6:.2f} MFLOP per inference example; "
             f"{threads} threads; sgemm yardstick {sgemm_gflops:.1f} GFLOP/s"
             + (f"; {machine}" if machine else ""),
             f"{'metric (median)':22s}" + "".join(f"{c:>{width}s}" for c in columns)]
    for label, key, field in ROWS:
        vals = {c: value(cells.get(c), key, field) for c in columns}
        rs = ratios(vals, baseline) if key != "other_load" else dict.fromkeys(vals)
        row = f"{label:22s}"
        for c in columns:
            if vals[c] is None:
                text = status_text(cells.get(c), key)
            elif key == "other_load":
                text = f"{vals[c]:.0f}"
            else:
                text = fmt(vals[c]) + (f" ({rs[c]:.2f})" if rs[c] is not None else "")
            row += f"{text:>{width}s}"
        lines.append(row)
    for c in columns:
        cell = cells.get(c) or {}
        if cell.get("status") != "ok" and cell.get("reason"):
            lines.append(f"  {c}: {cell['reason']}")
        for key, err in cell.get("errors", {}).items():
            lines.append(f"  {c} {key}: error: {err}")
        if cell.get("peak_rss", {}).get("error"):
            lines.append(f"  {c} peak RSS: error: {cell['peak_rss']['error']}")
        if cell.get("compile_times"):
            times = ", ".join(f"{k} {v:.2f}s" for k, v in cell["compile_times"].items())
            lines.append(f"  {c} compile times: {times}")
    return lines


def legend(baseline, baseline_ok):
    text = (f"(r) = {baseline} / column. Throughput, GFLOP/s: r > 1 means {baseline} is faster. "
            f"Latency, RSS: r < 1 means {baseline} is better.")
    if not baseline_ok:
        text += f"\nNo ratios: the baseline column '{baseline}' is not available " \
                f"(choose another with --baseline)."
    return text
