"""`cvil-bench compare A B`: is B better than A, by how much, and could seeds alone explain it?

A and B are each one of
  - a per-question CSV file (question_id, prediction, ground_truth, score, question_type),
  - an MLflow run id (its ``predictions/<split>_per_question.csv`` artifact is fetched),
  - ``cell=NAME`` (all finished seeds of that grid cell; ``--grid`` narrows to one grid, ``--grid-a`` / ``--grid-b``
    to one grid per side, e.g. a cell of another grid against the tables' AUG).

Accuracy-like metrics are compared by a two-level bootstrap-t over seeds and questions (`sig.compare_seeds`; the
question-level paired permutation test on seed-averaged scores is reported beside it, with ASO over the seeds); BLEU with sacrebleu's paired bootstrap / approximate randomisation on the seeds pooled as one corpus.
The same `bench.stats.by_metric.compare_frames` drives the leaderboards' significance marks, so the CLI and the
tables agree. Accuracy is reported in % (the per-question 0-1 scores × 100, as every score cvil prints), BLEU 0-100;
a system is named by its run (the run name, or a run folder's `tracking.run_name`), not by its file name.

    cvil-bench compare runs/base.csv runs/kd.csv
    cvil-bench compare cell=baseline cell=kd --grid paper-ja --tracking-uri sqlite:///mlflow.db --json
    cvil-bench compare RUN_ID_A RUN_ID_B --metric bleu --tokenize ja-mecab
    cvil-bench compare cell=AUG "cell=KD, 9 KD epochs" --grid-a table1_ja --grid-b kd_epochs
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.stats import significance as sig
from bench.stats.by_metric import compare_frames
from cvil import tracking_schema as schema
from cvil.errors import UsageError

METRICS = ("accuracy", "bleu")


@dataclass(frozen=True)
class System:
    """One side of a comparison: per-question frames by seed (a single CSV or run is one "seed")."""

    label: str
    source: str
    frames: dict[str, pd.DataFrame]


def load_system(spec: str, *, tracking_uri: str | None = None, grid: str | None = None,
                split: str = "test") -> System:
    from bench import runs as run_store

    if spec.startswith("cell="):
        cell = spec.split("=", 1)[1]
        client = run_store.client(tracking_uri)
        runs = run_store.latest_per_seed(run_store.find_runs(client, grid=grid, cell=cell))
        if not runs:
            where = f" in grid {grid!r}" if grid else ""
            raise UsageError(f"no finished runs for cell {cell!r}{where}")
        grids = {r.grid for r in runs}
        if len(grids) > 1:
            raise UsageError(f"cell {cell!r} exists in several grids {sorted(map(str, grids))}: pass --grid")
        frames = {}
        for r in runs:
            frame = run_store.per_question(client, r.run_id, split)
            if frame is None:
                raise UsageError(f"run {r.run_id} (cell {cell}, seed {r.seed}) has no "
                                 f"{schema.per_question_artifact(split)} artifact")
            frames[r.seed] = frame
        return System(cell, f"grid {grids.pop()}, cell {cell}", frames)
    path = Path(spec)
    if path.suffix == ".csv" or path.is_file():
        if not path.is_file():
            raise UsageError(f"{spec}: no such file")
        return System(csv_label(path), str(path), {"-": run_store.read_per_question_csv(path)})
    client = run_store.client(tracking_uri)
    frame = run_store.per_question(client, spec, split)
    if frame is None:
        raise UsageError(f"{spec}: not a file, and no run with a {schema.per_question_artifact(split)} artifact")
    run = run_store.get_run(client, spec)
    return System(run.tags.get(RUN_NAME_TAG) or run.cell or spec[:8], f"run {spec}", {run.seed: frame})


RUN_NAME_TAG = "mlflow.runName"


def csv_label(path: Path) -> str:
    """A system's name for a per-question CSV: the run's name when the file sits in a run folder
    (`<output_dir>/predictions/<split>_per_question.csv`: `tracking.run_name` of its `config.yaml`, else the folder's
    last two parts, e.g. `aug/seed1`), else the file's stem (`kd.csv` -> `kd`)."""
    import yaml

    if not (path.parent.name == schema.PREDICTIONS_DIR and path.name.endswith("_per_question.csv")):
        return path.stem
    run_dir = path.resolve().parent.parent
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        name = str(((config.get("tracking") or {}).get("run_name")) or "")
    except (OSError, yaml.YAMLError, AttributeError):
        name = ""
    return name or "/".join(run_dir.parts[-2:])


def overall_by_seed(system: System, metric: str, tokenize: str = "ja-mecab",
                    bleu_preset: str | None = None) -> dict[str, float]:
    if metric == "bleu" and bleu_preset != "sacrebleu":
        from bench.stats.bleu_significance import column_values
        from cvil.eval.bleu import JVG_PRESET, resolve_options

        return column_values(system.frames, resolve_options(bleu_preset or JVG_PRESET))
    if metric == "bleu":
        from sacrebleu.metrics import BLEU

        bleu = BLEU(tokenize=tokenize)
        return {k: bleu.corpus_score(f["prediction"].tolist(), [f["ground_truth"].tolist()]).score
                for k, f in system.frames.items()}
    return {k: float(f["score"].mean()) for k, f in system.frames.items()}


def in_percent(system: System) -> System:
    """Per-question accuracy scores (0-1 in the CSVs) as percentages, the unit of every score cvil reports
    (`val.score`, `test.accuracy`, the leaderboards): means, spreads, Δ and CIs then read as points."""
    return System(system.label, system.source,
                  {k: f.assign(score=f["score"].astype(float) * 100.0) for k, f in system.frames.items()})


def compare(a: System, b: System, *, metric: str = "accuracy", **kwargs) -> dict:
    """The full report: each system's seed spread and the paired test of B vs A, in % (accuracy) or BLEU 0-100."""
    tokenize = kwargs.get("bleu_tokenize", "ja-mecab")
    if metric != "bleu":
        a, b = in_percent(a), in_percent(b)
    if a.label == b.label:  # two runs or files with the same name: keep the report readable
        a = System(f"{a.label} (A)", a.source, a.frames)
        b = System(f"{b.label} (B)", b.source, b.frames)
    spreads = [sig.seed_spread(overall_by_seed(s, metric, tokenize, kwargs.get("bleu_preset"))) for s in (a, b)]
    result = compare_frames(a.frames, b.frames, metric=metric, **kwargs)
    return {
        "metric": metric,
        "unit": "BLEU (0-100)" if metric == "bleu" else "%",
        "systems": [{"name": s.label, "source": s.source, **sp.to_dict()} for s, sp in zip((a, b), spreads)],
        "comparison": {"a": a.label, "b": b.label, **result.to_dict()},
    }


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def format_report(report: dict) -> str:
    systems = pd.DataFrame([{"system": s["name"], "source": s["source"], "seeds": s["n_seeds"],
                             "mean": _fmt(s["mean"]), "std over seeds": _fmt(s["std"])} for s in report["systems"]])
    c = report["comparison"]
    ci = f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]"
    comparison = pd.DataFrame([{"Δ (B − A)": _fmt(c["delta"]), f"{int(c['confidence'] * 100)} % CI": ci,
                                "p": _fmt(c["p_value"], 4), "n": c["n"], "resamples": c["n_resamples"],
                                "seed": c["seed"]}])
    lines = [f"metric: {report['metric']} (in {report.get('unit', '%')})   A = {c['a']}   B = {c['b']}", "", systems.to_string(index=False), "",
             comparison.to_string(index=False), "", f"test: {c['test']}", f"method: {c['method']}",
             f"correction: {c['correction'] or 'none (single comparison)'}"]
    lines += [f"note: {n}" for n in c["notes"]]
    q = c.get("question_level")
    if q:
        lines.append(f"question-level ({q['test']}): Δ {_fmt(q['delta'])}, CI [{_fmt(q['ci_low'])}, "
                     f"{_fmt(q['ci_high'])}], p {_fmt(q['p_value'], 4)} (treats the trained models as fixed)")
    if c.get("signature"):
        lines.append(f"signature: {c['signature']}")
    return "\n".join(lines)


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="paired significance test of system B vs system A",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="reference: per-question CSV, MLflow run id, or cell=NAME")
    p.add_argument("b", help="system: per-question CSV, MLflow run id, or cell=NAME")
    p.add_argument("--metric", choices=METRICS, default="accuracy",
                   help="accuracy (per-question scores, reported in %%) or bleu (0-100) (default accuracy)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLflow's own resolution)")
    p.add_argument("--grid", default=None, help="restrict cell=NAME selectors to this grid")
    p.add_argument("--grid-a", default=None, help="restrict A's cell=NAME to this grid (default --grid)")
    p.add_argument("--grid-b", default=None, help="restrict B's cell=NAME to this grid (default --grid)")
    p.add_argument("--split", default="test", help="split of the runs' per-question CSVs (default test)")
    p.add_argument("--n-resamples", type=int, default=9999, help="bootstrap resamples (default 9999)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--bleu-test", choices=("bs", "ar"), default="bs",
                   help="sacrebleu paired bootstrap (bs) or approximate randomisation (ar)")
    p.add_argument("--tokenize", default="ja-mecab",
                   help="sacrebleu tokenizer for BLEU; 'none' for answers already tokenised with spaces")
    p.add_argument("--bleu-seed", type=int, default=12345, help="seed of the BLEU test's resampling (default 12345)")
    p.add_argument("--bleu-preset", default=None,
                   help="BLEU setting to test (cvil.eval.bleu presets, default the JVG one), or 'sacrebleu' for "
                        "sacrebleu's paired test with --tokenize")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars in the report
    a = load_system(args.a, tracking_uri=args.tracking_uri, grid=args.grid_a or args.grid, split=args.split)
    b = load_system(args.b, tracking_uri=args.tracking_uri, grid=args.grid_b or args.grid, split=args.split)
    report = compare(a, b, metric=args.metric, n_resamples=args.n_resamples, seed=args.seed,
                     bleu_test=args.bleu_test, bleu_tokenize=args.tokenize, bleu_seed=args.bleu_seed,
                     bleu_preset=args.bleu_preset)
    print(json.dumps(report, indent=2, ensure_ascii=False, default=str) if args.json else format_report(report))
    return 0
