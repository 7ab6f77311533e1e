"""Throughput benchmark, the report: one `Row` per step x variant, its documented keys, and the markdown table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    """One line of the report."""

    step: str
    variant: str
    samples_per_s: float
    tokens_per_s: float
    ms_median: float
    ms_min: float
    rounds: int
    peak_mem_mb: float | None = None
    peak_mem_abs_mb: float | None = None
    vs_naive: float | None = None
    vs_optimized: float | None = None
    mfu: float | None = None
    model_gflop_per_step: float | None = None
    settings: dict = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)  # every timed step, in round order (paired across variants)



REPORT_KEYS = ("size", "device", "device_name", "threads", "torch", "batch_size", "text_len_mean", "regions",
               "rounds", "seconds", "rows", "summary")
ROW_KEYS = tuple(Row.__dataclass_fields__)


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, spec)


def format_table(report: dict) -> str:
    """A markdown table of the report."""
    from bench.markdown import markdown_table  # not at import time: this package stays self-contained (speed_gate)

    mfu_col = any(r.get("mfu") is not None for r in report["rows"])
    head = ["step", "variant", "samples/s", "tokens/s", "ms/step (median)", "peak MiB (step)", "×naive", "×optimized"]
    if mfu_col:
        head.append("MFU")
    caption = (f"size {report['size']['name']} on {report['device']} ({report['device_name']}), "
               f"{report['threads']} thread(s), batch {report['batch_size']}, mean text {report['text_len_mean']:.1f} "
               f"tokens + {report['regions']} region slots, {report['rounds']} rounds, torch {report['torch']}")
    rows = []
    for r in report["rows"]:
        row = [r["step"], r["variant"], _fmt(r["samples_per_s"], ".1f"), _fmt(r["tokens_per_s"], ".0f"),
               _fmt(r["ms_median"], ".1f"), _fmt(r["peak_mem_mb"], ".0f"), _fmt(r["vs_naive"], ".2f"),
               _fmt(r["vs_optimized"], ".2f")]
        if mfu_col:
            row.append(_fmt(r["mfu"] and 100 * r["mfu"], ".1f") + ("%" if r["mfu"] is not None else ""))
        rows.append(row)
    return caption + "\n\n" + markdown_table(head, rows)

