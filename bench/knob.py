"""World v3's curve: what distillation hands the student as the teacher's English-only corpus grows.

For each setting of the knob (the shipped table grids on the default world, teacher=6000, and their `_t0` / `_t2000`
variants: the same cells on worlds whose students' files are byte-identical and whose teachers saw 0, 2,000 or 6,000
extra English scenes) the table gives KD − AUG on
the JVG-like test (Table I) and on the translated test (Table IV), and each Table III ablation − KD, with the
seed-aware test of `cvil-bench compare` (two-level bootstrap over seeds and questions; Holm over the comparisons of
one knob setting), every seed's value of both sides (a cell that flips between plateau and no plateau is marked "wide",
never hidden behind a mean), the teacher's English accuracy, and the teacher's accuracy over its own train seeds
(`bench.teacher_seeds`). With `--paired` the KD side comes from the `knob_paired` grids, where each student seed
distils from the teacher trained with its own seed, so the seeds vary the teacher too. With `--kd-epochs` the KD side
comes from the `kd_epochs` grids, whose distillation stage runs AUG's 9 epochs on the translated set instead of 3.

    python -m bench.knob [--paired | --kd-epochs] [--tables I IV III] [--tracking-uri sqlite:///mlflow.db]
                         [--out leaderboards/rendered/world_v3_knob]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from bench.compare import compare, load_system
from bench.knob_settings import DEFAULT_SUFFIX, KNOBS, knob_world
from bench.markdown import markdown_table
from bench.teacher_seeds import seed_accuracies
from bench.stats.significance import holm
from cvil.errors import UsageError

ABLATIONS = ("w/o CLS", "w/o code-mixed", "w/o image tokens", "w/o object tags", "w/o intermediate layers")
# (paper table, grid of A, cell A, grid of B, cell B): Δ = B − A. Table III's reference is the KD of Table I's grid
# (the same config and seeds), so the knob's other settings run only the ablations of `table3_ablations`.
COMPARISONS = (("I", "table1_ja", "AUG", "table1_ja", "KD"), ("IV", "table4_vqa_ja", "AUG", "table4_vqa_ja", "KD"),
               *(("III", "table1_ja", "KD", "table3_ablations", cell) for cell in ABLATIONS))
# The same comparisons with the teacher's seed paired to the student's (`bench/grids/knob_paired*.yaml`: student seed s
# distils from the world's teacher re-trained with seed s); AUG, which never loads a teacher, is the tables' AUG.
PAIRED_COMPARISONS = (("I", "table1_ja", "AUG", "knob_paired", "KD"),
                      ("IV", "table4_vqa_ja", "AUG", "knob_paired", "KD (translated)"),
                      *(("III", "knob_paired", "KD", "knob_paired", cell) for cell in ABLATIONS))
# KD's distillation stage at AUG's 9 epochs on the translated set (`bench/grids/kd_epochs*.yaml`), against AUG and
# against the tables' 3-epoch KD, with the world's teacher and with a teacher per seed.
KD_EPOCHS_COMPARISONS = (("I", "table1_ja", "AUG", "kd_epochs", "KD, 9 KD epochs"),
                         ("I", "table1_ja", "KD", "kd_epochs", "KD, 9 KD epochs"),
                         ("I", "table1_ja", "AUG", "kd_epochs", "KD paired, 9 KD epochs"),
                         ("I", "knob_paired", "KD", "kd_epochs", "KD paired, 9 KD epochs"))
TEACHERLESS = ("AUG",)  # cells that never load the teacher: their runs on the default world serve every setting
WIDE_RANGE = 5.0  # points between a cell's best and worst seed that mark it (a plateau reached by some seeds only)


def teacher_accuracy(world: dict) -> float | None:
    """The world's teacher's English val accuracy (`teacher_metrics.json`, written by `cvil.world.ensure_world`)."""
    path = Path(world.get("root", "")) / "teacher" / "teacher_metrics.json"
    return json.loads(path.read_text(encoding="utf-8")).get("val.accuracy") if path.is_file() else None


def _seeds_text(report: dict, side: int) -> str:
    values = report["systems"][side].get("per_seed") or {}
    return " / ".join(f"{v:.1f}" for _, v in sorted(values.items()))


def _system(cell: str, grid: str, suffix: str, tracking_uri: str | None):
    """A cell's runs in the grid of this knob setting, or, for a cell that never loads the teacher, in the default
    world's grid: its files are byte-identical at every setting (`tests/data/test_world_v3.py`), so those runs are
    its runs here and `--cells` leaves it out of the other settings' grids."""
    try:
        return load_system(f"cell={cell}", tracking_uri=tracking_uri, grid=grid + suffix)
    except UsageError:
        if cell not in TEACHERLESS or suffix == DEFAULT_SUFFIX:
            raise
        return load_system(f"cell={cell}", tracking_uri=tracking_uri, grid=grid + DEFAULT_SUFFIX)


def knob_rows(teacher_images: int, tracking_uri: str | None, comparisons=COMPARISONS,
              paired: bool = False) -> list[dict]:
    """One row per comparison at one knob setting; a cell without finished runs is a row saying so. `paired`: the
    KD side distils from a teacher per seed, so the row names those teachers' accuracies, not the world's one."""
    suffix = KNOBS[teacher_images]
    world = knob_world(suffix)
    teacher = None if paired else teacher_accuracy(world)
    per_seed = " / ".join(f"{v:.1f}" for _, v in sorted(seed_accuracies(suffix, tracking_uri).items())) if paired \
        else ""
    rows = []
    for table, grid_a, a, grid_b, b in comparisons:
        row = {"teacher_images": teacher_images, "world": world.get("preset"), "teacher_en_val": teacher,
               "teachers_per_seed": per_seed, "table": table, "A": a, "B": b}
        try:
            report = compare(_system(a, grid_a, suffix, tracking_uri), _system(b, grid_b, suffix, tracking_uri))
        except Exception as exc:  # noqa: BLE001 - a missing cell is reported in the table, not fatal
            rows.append({**row, "note": " ".join(str(exc).split())})
            continue
        c, (sa, sb) = report["comparison"], report["systems"]
        values_a, values_b = ([v for _, v in sorted((x.get("per_seed") or {}).items())] for x in (sa, sb))
        rows.append({**row, "seeds": f"{sa['n_seeds']}/{sb['n_seeds']}", "mean_A": sa["mean"], "mean_B": sb["mean"],
                     "delta": c["delta"], "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p": c["p_value"],
                     "A_seeds": _seeds_text(report, 0), "B_seeds": _seeds_text(report, 1),
                     "A_range": (max(values_a) - min(values_a)) if values_a else None,
                     "B_range": (max(values_b) - min(values_b)) if values_b else None, "note": ""})
    tested = [i for i, r in enumerate(rows) if r.get("p") is not None]
    for i, p_adj in zip(tested, holm([rows[i]["p"] for i in tested])):
        rows[i]["p_holm"] = float(p_adj)
    return rows


def knob_table(settings=tuple(KNOBS), tracking_uri: str | None = None, comparisons=COMPARISONS,
               paired: bool = False) -> pd.DataFrame:
    return pd.DataFrame([row for t in settings for row in knob_rows(t, tracking_uri, comparisons, paired)])


def teacher_table(settings=tuple(KNOBS), tracking_uri: str | None = None) -> pd.DataFrame:
    """The teacher's English val accuracy per train seed at each knob setting (`bench.teacher_seeds`'s grids) beside
    the world's own teacher, the one every student distils from (statistics are NaN where too few seeds ran)."""
    rows = []
    for images in settings:
        scores = seed_accuracies(KNOBS[images], tracking_uri)
        values = pd.Series(list(scores.values()), dtype=float)
        rows.append({"teacher_images": images, "students_teacher": teacher_accuracy(knob_world(KNOBS[images])),
                     "seeds": len(scores), "per_seed": " / ".join(f"{s}: {v:.2f}" for s, v in sorted(scores.items())),
                     "mean": values.mean(), "std": values.std(), "min": values.min(), "max": values.max()})
    return pd.DataFrame(rows)


def _fmt(x, digits: int = 2) -> str:
    return "" if x is None or x != x else f"{x:.{digits}f}"


def _records(frame: pd.DataFrame) -> list[dict]:
    """The frame's rows with missing cells as None, not NaN."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def teacher_markdown(frame: pd.DataFrame) -> str:
    header = ("teacher images", "the students' teacher (seed 1) %", "seeds", "English val % per train seed", "mean",
              "std", "min – max")
    return markdown_table(header, [
        (r["teacher_images"], _fmt(r["students_teacher"]), r["seeds"],
         r["per_seed"] or "not trained: python -m bench.teacher_seeds", _fmt(r["mean"]), _fmt(r["std"]),
         f"{_fmt(r['min'])} – {_fmt(r['max'])}" if r["min"] is not None else "") for r in _records(frame)])


def to_markdown(frame: pd.DataFrame) -> str:
    def flag(r, side):
        return " ⚠ wide" if (r.get(f"{side}_range") or 0) >= WIDE_RANGE else ""

    header = ("teacher images", "teacher EN val % (per teacher seed when paired)", "table", "B − A", "seeds A/B", "mean A", "mean B", "Δ", "95 % CI",
              "p (Holm)", "A per seed", "B per seed")
    return markdown_table(header, [
        (r["teacher_images"], _fmt(r["teacher_en_val"]) or r.get("teachers_per_seed") or "", r["table"], f"{r['B']} − {r['A']}", r.get("seeds") or "",
         _fmt(r.get("mean_A")), _fmt(r.get("mean_B")), _fmt(r.get("delta")),
         f"[{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]" if r.get("ci_low") is not None else "",
         _fmt(r.get("p_holm"), 4), f"{r.get('A_seeds') or ''}{flag(r, 'A')}",
         f"{r.get('B_seeds') or r.get('note') or ''}{flag(r, 'B')}") for r in _records(frame)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.knob", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--out", default=None, help="stem of the .md and .csv written (default "
                   "leaderboards/rendered/world_v3_knob, with --paired or --kd-epochs that stem + _paired or _kd_epochs)")
    table = p.add_mutually_exclusive_group()  # two different tables: argparse says so in one line (exit 2)
    table.add_argument("--paired", action="store_true",
                       help="the KD side from the knob_paired grids: each student seed distils from the teacher of its "
                            "own seed (python -m bench.teacher_seeds), not from the world's one teacher")
    table.add_argument("--kd-epochs", action="store_true",
                       help="Table I with KD's distillation stage at AUG's 9 epochs (the kd_epochs grids) against AUG and "
                            "against the tables' 3-epoch KD, one teacher and a teacher per seed")
    p.add_argument("--teacher-images", nargs="+", type=int, default=list(KNOBS), choices=list(KNOBS),
                   help="the knob settings to report (default: all)")
    p.add_argument("--tables", nargs="+", default=["I", "IV", "III"], choices=["I", "IV", "III"],
                   help="the paper tables whose comparisons to report (default: all)")
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per downloaded CSV otherwise
    from bench.tracking import tracking_uri

    uri = tracking_uri(args.tracking_uri)
    chosen = KD_EPOCHS_COMPARISONS if args.kd_epochs else PAIRED_COMPARISONS if args.paired else COMPARISONS
    comparisons = [c for c in chosen if c[0] in args.tables]
    frame = knob_table(args.teacher_images, uri, comparisons, paired=args.paired)
    teachers = teacher_table(args.teacher_images, uri)
    markdown = to_markdown(frame) + "\n\nThe teacher over its own train seeds (`python -m bench.teacher_seeds`):\n\n" \
        + teacher_markdown(teachers)
    out = Path(args.out or "leaderboards/rendered/world_v3_knob" + ("_paired" if args.paired else "")
               + ("_kd_epochs" if args.kd_epochs else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(markdown + "\n", encoding="utf-8")
    frame.to_csv(out.with_suffix(".csv"), index=False)
    teachers.to_csv(out.parent / f"{out.name}_teacher_seeds.csv", index=False)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
