"""Render a built `Table` as Markdown, LaTeX (booktabs), CSV and a self-contained HTML page (plus an index page).

All formats start from one display frame (`display_frame`), so a cell reads the same everywhere; only escaping
differs. Ours and the paper's rows are separate blocks, the latter labelled "published (paper)". Nothing here reads
the clock: dates come from the table's provenance or the caller, which keeps golden tests stable.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import pandas as pd

from bench.markdown import markdown_table
from leaderboards.spec import OURS_LABEL, PUBLISHED_LABEL, published_number
from leaderboards.table import Entry, Table

MISSING = "— (missing)"
NOT_REPORTED = "— (not reported)"
NOT_APPLICABLE = "n/a"
PROVENANCE_LABELS = {
    "dataset": "Dataset", "language": "Language", "split": "Split", "n_questions": "Questions (n)",
    "tokenizer": "Tokeniser", "vqa_evaluator": "VQA evaluator", "bleu_signature": "BLEU signature",
    "teacher": "Teacher", "student_init": "Student init",
    "commit": "Code commit", "libraries": "Libraries", "threads": "Threads", "date": "Date",
    "significance_bleu_signature": "Significance BLEU signature",
}


def title(table: Table) -> str:
    return f"Table {table.spec.paper_table}: {table.spec.title}" if table.spec.paper_table else table.spec.title


def cell_text(entry: Entry) -> str:
    if entry.status == "failed":
        return f"failed: {entry.reason}"
    if entry.status == "n/a":
        return NOT_APPLICABLE
    if entry.status != "ok":
        return MISSING
    text = f"{entry.mean:.2f}"
    if entry.n_seeds > 1 and entry.ci_high is not None and math.isfinite(entry.ci_high):
        text += f" ± {entry.ci_high - entry.mean:.2f}"
    return text + entry.mark


def _published_value(value) -> str:
    """The paper's digits as printed (19.2 stays 19.2, 72 stays 72)."""
    return NOT_REPORTED if value is None else str(value)


def display_frame(table: Table) -> pd.DataFrame:
    """Source | System | Seeds | one column per metric, ours first, then the published block."""
    spec = table.spec
    labels = [c.label for c in spec.columns]
    records = []
    for row in spec.rows:
        entries = [table.entry(row, c) for c in spec.columns]
        seeds = sorted({e.n_seeds for e in entries if e.status == "ok"})
        records.append([OURS_LABEL, row.label, "/".join(map(str, seeds)) or "0"] + [cell_text(e) for e in entries])
    for prow in table.published:
        system = prow["system"] + (f" ({prow['setting']})" if prow.get("setting") else "")
        records.append([PUBLISHED_LABEL, system, NOT_APPLICABLE] + [_published_value(prow.get(l)) for l in labels])
    return pd.DataFrame(records, columns=["Source", "System", "Seeds"] + labels)


def notes(table: Table) -> list[str]:
    out = list(table.footnotes)
    for prow in table.published:
        if prow.get("note"):
            out.append(f"{prow['system']} (published): {prow['note']}")
    missing = [e for e in table.entries.values() if e.status == "missing" and e.reason]
    if missing:
        out.append("Missing cells: " + "; ".join(f"{e.row} / {e.column}: {e.reason}" for e in missing) + ".")
    return out


def provenance_lines(table: Table) -> list[tuple[str, str]]:
    return [(PROVENANCE_LABELS.get(k, k), v) for k, v in table.provenance.items()]


def long_frame(table: Table) -> pd.DataFrame:
    """One row per (system, column) with every number behind a cell: the CSV export."""
    records = []
    for row in table.spec.rows:
        for col in table.spec.columns:
            e = table.entry(row, col)
            t = e.test
            q = t.question_level if t else None
            records.append({
                "source": OURS_LABEL, "system": row.label, "column": col.label, "metric": col.metric,
                "status": e.status, "reason": e.reason, "mean": e.mean, "std": e.std, "ci_low": e.ci_low,
                "ci_high": e.ci_high, "n_seeds": e.n_seeds, "seeds": ";".join(e.seeds),
                "per_seed": ";".join(f"{k}={v:.6g}" for k, v in e.per_seed.items()), "n_questions": e.n_questions,
                "reference": table.spec.reference,
                "delta": t.delta * col.delta_scale if t else None,
                "delta_ci_low": t.ci_low * col.delta_scale if t and t.ci_low is not None else None,
                "delta_ci_high": t.ci_high * col.delta_scale if t and t.ci_high is not None else None,
                "p": t.p_value if t else None, "p_adjusted": t.p_adjusted if t else None,
                "test": t.test if t else None, "method": t.method if t else None,
                "correction": t.correction if t else None, "mark": e.mark,
                "p_question_level": q.p_value if q else None,
                "p_question_level_adjusted": q.p_adjusted if q else None,
                "test_question_level": q.test if q else None, "aso": t.aso if t else None,
            })
    for prow in table.published:
        for col in table.spec.columns:
            value = prow.get(col.label)
            records.append({"source": PUBLISHED_LABEL, "system": prow["system"], "column": col.label,
                            "metric": col.metric, "status": "published" if value is not None else "not reported",
                            "reason": prow.get("setting", ""), "mean": published_number(value),
                            "printed": value})
    return pd.DataFrame.from_records(records)


def to_csv(table: Table) -> str:
    return long_frame(table).to_csv(index=False, lineterminator="\n")


# ---------------------------------------------------------------------------------------------------- Markdown

def _md(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


def to_markdown(table: Table) -> str:
    frame = display_frame(table)
    align = ["---", "---", "--:"] + ["--:"] * (frame.shape[1] - 3)
    body = markdown_table([_md(c) for c in frame.columns],
                          ([_md(v) for v in rec] for rec in frame.itertuples(index=False)), align)
    lines = [f"## {_md(title(table))}", "", body]
    lines += ["", "Notes:", ""] + [f"{i}. {_md(n)}" for i, n in enumerate(notes(table), 1)]
    lines += ["", "Provenance:", ""] + [f"- {k}: {_md(v)}" for k, v in provenance_lines(table)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------- LaTeX

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}",
                "<": r"\textless{}", ">": r"\textgreater{}"}


def _tex(text: str) -> str:
    out = "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))
    out = out.replace("±", r"$\pm$").replace("—", "---").replace("Δ", r"$\Delta$")
    return re.sub(r"\*+", lambda m: f"$^{{{m.group(0)}}}$", out)


def to_latex(table: Table) -> str:
    frame = display_frame(table)
    n_ours = len(table.spec.rows)
    spec_cols = "ll" + "r" * (frame.shape[1] - 2)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{_tex(title(table))}}}",
             f"\\label{{tab:cvil-{table.spec.id}}}", f"\\begin{{tabular}}{{{spec_cols}}}", r"\toprule",
             " & ".join(_tex(c) for c in frame.columns) + r" \\", r"\midrule"]
    for i, rec in enumerate(frame.itertuples(index=False)):
        if i == n_ours and i > 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(_tex(v) for v in rec) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip", r"{\footnotesize\raggedright"]
    lines += [f"{_tex(n)}\\par" for n in notes(table)]
    lines += ["Provenance: " + "; ".join(f"{_tex(k)}: {_tex(v)}" for k, v in provenance_lines(table)) + r"\par"]
    lines += ["}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:72rem}
table{border-collapse:collapse;margin:1rem 0}th,td{padding:.3rem .7rem;border-bottom:1px solid #ddd}
th{border-bottom:2px solid #333;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.published td{color:#555;font-style:italic;background:#f7f7f7}tr.first-published td{border-top:2px solid #333}
.notes,.prov{font-size:.9rem}img{max-width:100%}section{margin:2.5rem 0;border-top:1px solid #ccc}
""".strip()


def _page(page_title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(page_title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n{body}\n"
            "</body>\n</html>\n")


def to_html(table: Table, plot_png: bytes | None = None) -> str:
    """A self-contained page: inline CSS, the plot embedded as base64, no external requests."""
    frame = display_frame(table)
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body_rows = []
    for i, rec in enumerate(frame.itertuples(index=False)):
        published = rec[0] == PUBLISHED_LABEL
        cls = ("published" + (" first-published" if i == len(table.spec.rows) else "")) if published else "ours"
        cells = "".join(f"<td class=\"{'num' if j >= 2 else 'txt'}\">{esc(str(v))}</td>" for j, v in enumerate(rec))
        body_rows.append(f"<tr class=\"{cls}\">{cells}</tr>")
    parts = [f"<h1>{esc(title(table))}</h1>", f"<p>Grid(s): {esc(', '.join(table.grids))}</p>",
             f"<table id=\"leaderboard\">\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body_rows)
             + "\n</tbody>\n</table>",
             "<ol class=\"notes\">" + "".join(f"<li>{esc(n)}</li>" for n in notes(table)) + "</ol>",
             "<dl class=\"prov\">" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in provenance_lines(table))
             + "</dl>"]
    if plot_png:
        data = base64.b64encode(plot_png).decode("ascii")
        parts.append(f"<figure><img alt=\"scores with 95 % CIs per system\" src=\"data:image/png;base64,{data}\">"
                     "<figcaption>Ours: mean and 95 % t-interval over seeds (clipped to 0-100); published: "
                     "hollow diamonds.</figcaption></figure>")
    parts.append("<p><a href=\"index.html\">All tables</a></p>")
    return _page(title(table), "\n".join(parts))


HEADLINE_COLUMNS = 4  # metric columns of each table shown on the overview (all of them on its own page)


def _headline_table(table: Table) -> str:
    """Ours and the published block, first `HEADLINE_COLUMNS` metric columns, as on the table's page."""
    frame = display_frame(table)
    keep = list(frame.columns[:3 + HEADLINE_COLUMNS])
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in keep)
    rows = []
    for i, rec in enumerate(frame[keep].itertuples(index=False)):
        published = rec[0] == PUBLISHED_LABEL
        cls = ("published" + (" first-published" if i == len(table.spec.rows) else "")) if published else "ours"
        cells = "".join(f"<td class=\"{'num' if j >= 2 else 'txt'}\">{esc(str(v))}</td>" for j, v in enumerate(rec))
        rows.append(f"<tr class=\"{cls}\">{cells}</tr>")
    more = len(frame.columns) - len(keep)
    caption = f"<p class=\"notes\">{more} more column(s) on the table's page.</p>" if more > 0 else ""
    return (f"<table class=\"headline\">\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows)
            + "\n</tbody>\n</table>" + caption)


def index_html(tables: list[Table], generated: str, plots: dict[str, bytes | None] | None = None) -> str:
    """The overview: per table its headline rows and its plot, with links to the full page and every format."""
    esc = html.escape
    toc = "".join(f"<li><a href=\"#{esc(t.spec.id)}\">{esc(title(t))}</a></li>" for t in tables)
    sections = []
    for t in tables:
        tid = esc(t.spec.id)
        links = (f"<a href=\"{tid}.html\">full table, notes and provenance</a> · <a href=\"{tid}.md\">md</a> · "
                 f"<a href=\"{tid}.tex\">tex</a> · <a href=\"{tid}.csv\">csv</a>")
        part = [f"<section id=\"{tid}\">", f"<h2><a href=\"{tid}.html\">{esc(title(t))}</a></h2>",
                f"<p>{links}</p>", _headline_table(t)]
        png = (plots or {}).get(t.spec.id)
        if png:
            data = base64.b64encode(png).decode("ascii")
            part.append(f"<figure><img alt=\"{esc(title(t))}: scores with 95 % CIs per system\" "
                        f"src=\"data:image/png;base64,{data}\"></figure>")
        part.append("</section>")
        sections.append("\n".join(part))
    body = (f"<h1>cvil leaderboards</h1>\n<p>Regenerated from the tracking store on {esc(generated)}; "
            "never hand-edited. Ours: mean ± half-width of the 95 % t-interval over seeds (significance marks vs "
            "each table's reference row, see its notes); published: the paper's numbers, transcribed.</p>\n"
            f"<ul>{toc}</ul>\n" + "\n".join(sections))
    return _page("cvil leaderboards", body)


def write_all(tables: list[Table], out_dir: str | Path, *, generated: str,
              plots: dict[str, bytes] | None = None, index_tables: list[Table] | None = None) -> list[Path]:
    """Write <id>.md/.tex/.csv/.html per table and index.html (over `index_tables`, default `tables`: a table left
    untouched still appears in the overview); returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in tables:
        for suffix, text in ((".md", to_markdown(t)), (".tex", to_latex(t)), (".csv", to_csv(t)),
                             (".html", to_html(t, (plots or {}).get(t.spec.id)))):
            path = out / f"{t.spec.id}{suffix}"
            path.write_text(text, encoding="utf-8")
            written.append(path)
    index = out / "index.html"
    index.write_text(index_html(tables if index_tables is None else index_tables, generated, plots),
                     encoding="utf-8")
    return written + [index]
