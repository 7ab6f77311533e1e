"""Table specs and published numbers, loaded from YAML.

A table is data, not code (as lm-eval's task cards and MTEB's metadata are): which grid cells make the rows, which
logged metrics make the columns, and which row is the reference for significance marks. Rows are always systems
(grid cells), columns always metrics, so the same code builds every table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import re
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SPEC_DIR = HERE / "specs"
PUBLISHED_PATH = HERE / "published.yaml"
PROVENANCE_PATH = HERE / "provenance.yaml"
PUBLISHED_LABEL = "published (paper)"
OURS_LABEL = "ours"


@dataclass(frozen=True)
class Row:
    label: str
    cell: str
    cells: dict[str, str] = field(default_factory=dict)  # column key -> cell, when one column takes another cell

    def cell_for(self, column: "Column") -> str:
        return self.cells.get(column.key, self.cell)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    metric: str
    test: str = "paired"                  # "paired" (per-question scores) or "bleu" (sacrebleu, corpus-level)
    subset: str | None = None             # keep the questions whose `subset_column` lists this value
    subset_column: str = "question_type"  # e.g. answer_type for VQA's yes/no, number, other
    scale: float = 1.0                    # display factor for the logged metric (cvil.eval logs percent)
    score_scale: float = 100.0            # display factor for Δ of per-question scores (fractions in the CSV)
    grid: str | None = None               # take this column's runs from another grid
    published_only: bool = False          # no runs of ours for this column (shown as n/a)

    @property
    def delta_scale(self) -> float:
        """Δ from sacrebleu is already in BLEU points; Δ of per-question scores is a fraction."""
        return 1.0 if self.test == "bleu" else self.score_scale


@dataclass(frozen=True)
class TableSpec:
    id: str
    title: str
    paper_table: str
    grid: str
    split: str
    reference: str | None
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]

    def grid_for(self, column: Column) -> str:
        return column.grid or self.grid


def load_spec(path: str | Path) -> TableSpec:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    try:
        rows = tuple(Row(**r) for r in raw["rows"])
        columns = tuple(Column(**c) for c in raw["columns"])
        spec = TableSpec(id=raw["id"], title=raw["title"], paper_table=str(raw.get("paper_table", "")),
                         grid=raw["grid"], split=raw.get("split", "test"), reference=raw.get("reference"),
                         rows=rows, columns=columns)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: bad table spec ({exc})") from exc
    if spec.reference is not None and spec.reference not in {r.label for r in rows}:
        raise ValueError(f"{path}: reference {spec.reference!r} is not a row label")
    for c in columns:
        if c.test not in ("paired", "bleu"):
            raise ValueError(f"{path}: column {c.key!r}: test must be 'paired' or 'bleu', got {c.test!r}")
    return spec


def load_specs(folder: str | Path = SPEC_DIR) -> list[TableSpec]:
    return [load_spec(p) for p in sorted(Path(folder).glob("*.yaml"))]


PUBLISHED_TEXT_KEYS = ("system", "setting", "note")
_PRINTED = re.compile(r"^-?\d+(\.\d+)?$")


def load_published(path: str | Path = PUBLISHED_PATH) -> dict[str, list[dict]]:
    """Paper table id (e.g. "I(a)") -> rows as printed ({"system", "setting"?, "note"?, <column label>: value}).

    Values are the paper's printed strings ("19.2", "72") or None ("-"); a bare YAML number is an error, because its
    printed precision is already lost. :func:`published_number` gives the float.
    """
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    out = {str(k): list(v["rows"]) for k, v in raw["tables"].items()}
    for table, rows in out.items():
        for row in rows:
            for key, value in row.items():
                if key in PUBLISHED_TEXT_KEYS or value is None:
                    continue
                if not (isinstance(value, str) and _PRINTED.match(value)):
                    raise ValueError(f"{path}: table {table}, {row.get('system')!r}, {key!r}: expected the printed "
                                     f"number as a quoted string (e.g. \"19.2\"), got {value!r}")
    return out


def published_number(value: str | None) -> float | None:
    return None if value is None else float(value)


def load_provenance_keys(path: str | Path = PROVENANCE_PATH) -> dict[str, list[str]]:
    return {k: list(v) for k, v in yaml.safe_load(Path(path).read_text(encoding="utf-8")).items()}
