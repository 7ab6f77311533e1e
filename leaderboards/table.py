"""Build one leaderboard table from finished runs: seed aggregation, significance marks, provenance.

Every cell says what it is: a value with its 95 % t-interval over seeds and the number of seeds, or "missing" /
"failed: reason" (never an empty or zero cell). Significance is always relative to the spec's reference row; the
stars are the seed-aware test (two-level bootstrap-t over seeds and questions, `bench.stats.significance.compare_seeds`),
BLEU columns a paired test of the column's own BLEU, and the p-values of the whole table are Holm-corrected together.
The question-level test (seed-averaged per question, models treated as fixed) stays in the CSV, Holm-corrected over
the same family.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from bench import runs as run_store
from bench.stats import significance as sig
from bench.stats.by_metric import compare_frames
from bench.stats.results import TestResult
from cvil import tracking_schema as schema
from cvil.eval.question_types import decode as decode_types
from leaderboards.spec import Column, Row, TableSpec, load_provenance_keys

ALPHA_MARKS = ((0.01, "**"), (0.05, "*"))  # Holm-adjusted p below the threshold -> mark
PROVENANCE_ORDER = ("dataset", "language", "split", "n_questions", "tokenizer", "vqa_evaluator", "bleu_signature",
                    "teacher", "student_init", "commit", "libraries", "threads", "date")
NOT_RECORDED = "not recorded"
MIXED = "MIXED, the runs disagree: "
# the provenance lines read from the runs' environment tags (cvil.tracking_schema): (label, lookup key) per fact
ENVIRONMENT = {
    "libraries": tuple((name, f"tags.{schema.library_tag(name)}") for name in schema.LIBRARIES),
    "threads": (("intra-op", f"tags.{schema.THREADS_INTRA_OP}"), ("inter-op", f"tags.{schema.THREADS_INTER_OP}"),
                *((var, f"tags.{schema.thread_env_tag(var)}") for var in schema.THREAD_ENV_VARS),
                ("train.threads", f"params.{schema.THREADS_PARAM}")),
}


@dataclass
class Entry:
    """One table cell of ours (display units: values already multiplied by the column's scale)."""

    row: str
    column: str
    status: str  # "ok" | "missing" | "failed" | "n/a" (published-only column)
    reason: str = ""
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    seeds: tuple[str, ...] = ()
    per_seed: dict = field(default_factory=dict)  # seed -> value: what a fresh clone must reproduce (`reproduce`)
    n_questions: int | None = None
    test: TestResult | None = None
    mark: str = ""

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


@dataclass
class Table:
    spec: TableSpec
    grids: tuple[str, ...]
    entries: dict[tuple[str, str], Entry]
    published: list[dict]
    provenance: dict[str, str]
    footnotes: list[str] = field(default_factory=list)
    column_grids: dict[str, str] = field(default_factory=dict)  # column key -> grid its runs came from
    n_runs: int = 0  # runs (any status) found in the table's grids: 0 = nothing to build the table from

    def entry(self, row: Row, column: Column) -> Entry:
        return self.entries[(row.label, column.key)]


def build_table(spec: TableSpec, mlflow_client, *, grid: str | None = None, published: dict | None = None,
                significance: bool = True, n_resamples: int = 9999, seed: int = 0, bleu_seed: int = 12345,
                bleu_tokenize: str = "ja-mecab", aso: bool = True, bleu_preset: str | None = None,
                workers: int | None = None) -> Table:
    """Read the runs of the spec's grid(s) and assemble the table (``grid`` overrides the spec's default grid).

    ``workers``: processes running the table's comparisons side by side (each is seeded, so the results do not
    depend on it); None = one per CPU when a comparison has at least ``PARALLEL_MIN_QUESTIONS`` questions, else 1."""
    main_grid = grid or spec.grid
    grids = {c.key: c.grid or main_grid for c in spec.columns}
    runs = {g: run_store.find_runs(mlflow_client, grid=g) for g in sorted(set(grids.values()))}
    failures = {g: run_store.grid_failures(mlflow_client, rs) for g, rs in runs.items()}
    frames = _FrameCache(mlflow_client, spec.split)

    entries: dict[tuple[str, str], Entry] = {}
    used: dict[tuple[str, str], list[run_store.RunRecord]] = {}
    for row in spec.rows:
        for col in spec.columns:
            cell = row.cell_for(col)
            records = [r for r in runs[grids[col.key]] if r.cell == cell]
            entry, finished = _aggregate(row, col, records, failures[grids[col.key]].get(cell))
            if entry.status == "ok":
                entry.n_questions = frames.n_questions(finished, col)
            entries[(row.label, col.key)] = entry
            used[(row.label, col.key)] = finished

    footnotes = ["Values: mean over seeds ± half-width of the 95 % Student-t interval over seeds; "
                 "the Seeds column gives the number of finished seeds."]
    if significance and spec.reference:
        footnotes += _mark_significance(spec, entries, used, frames, n_resamples=n_resamples, seed=seed,
                                        bleu_seed=bleu_seed, bleu_tokenize=bleu_tokenize, aso=aso,
                                        bleu_preset=bleu_preset, workers=workers)
    if spec.paper_table:  # a table beyond the paper (table_zh) has no published rows
        footnotes.append(f"Rows labelled \"published (paper)\" are the cViL paper's Table {spec.paper_table} "
                         "numbers, transcribed, not recomputed; they are not comparable cell by cell with ours "
                         "(different data, models and scale of training).")
    all_runs = [r for rs in used.values() for r in rs]
    return Table(spec=spec, grids=tuple(sorted(set(grids.values()))), entries=entries,
                  published=list((published or {}).get(spec.paper_table, [])),
                  provenance=provenance(all_runs, spec, entries), footnotes=footnotes,
                  column_grids=grids, n_runs=sum(len(rs) for rs in runs.values()))


def _aggregate(row: Row, col: Column, records: list[run_store.RunRecord],
               grid_failure: str | None = None) -> tuple[Entry, list[run_store.RunRecord]]:
    if col.published_only:
        return Entry(row.label, col.key, "n/a", "published-only column"), []
    finished = run_store.latest_per_seed(records)
    if not finished:
        failed = [r for r in records if r.status in ("FAILED", "KILLED")]
        if failed or grid_failure:  # the grid's record (stderr tail) says more than a bare FAILED status
            return Entry(row.label, col.key, "failed", grid_failure or failed[-1].failure_reason()), []
        running = [r for r in records if r.status in ("RUNNING", "SCHEDULED")]
        reason = f"{len(running)} run(s) not finished" if running else "no finished run"
        return Entry(row.label, col.key, "missing", reason), []
    with_metric = [r for r in finished if col.metric in r.metrics]
    if not with_metric:
        return Entry(row.label, col.key, "missing", f"metric {col.metric} not logged"), []
    spread = sig.seed_spread({r.seed: r.metrics[col.metric] * col.scale for r in with_metric})
    return Entry(row.label, col.key, "ok", mean=spread.mean, std=spread.std, ci_low=spread.ci_low,
                 ci_high=spread.ci_high, seeds=tuple(spread.per_seed), per_seed=dict(spread.per_seed)), with_metric


class _FrameCache:
    """Per-question frames by run id, downloaded once per table build."""

    def __init__(self, mlflow_client, split: str):
        self.client, self.split, self.cache = mlflow_client, split, {}

    def get(self, run: run_store.RunRecord) -> pd.DataFrame | None:
        if run.run_id not in self.cache:
            self.cache[run.run_id] = run_store.per_question(self.client, run.run_id, self.split)
        return self.cache[run.run_id]

    def by_seed(self, runs: list[run_store.RunRecord], col: Column) -> dict[str, pd.DataFrame] | None:
        out = {}
        for r in runs:
            frame = self.get(r)
            if frame is None:
                return None
            out[r.seed] = filter_subset(frame, col)
        return out

    def n_questions(self, runs: list[run_store.RunRecord], col: Column) -> int | None:
        frames = self.by_seed(runs, col)
        sizes = {len(f) for f in frames.values()} if frames else set()
        return sizes.pop() if len(sizes) == 1 else None


def filter_subset(frame: pd.DataFrame, col: Column) -> pd.DataFrame:
    """The questions of one type; a question of several types lists them "|"-joined (cvil.eval.question_types)."""
    if col.subset is None:
        return frame
    if col.subset_column not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame[col.subset_column].map(lambda cell: col.subset in decode_types(str(cell)))]


def _mark_significance(spec, entries, used, frames, *, n_resamples, seed, bleu_seed, bleu_tokenize,
                       aso=True, bleu_preset=None, workers=None) -> list[str]:
    keys, results, notes = [], [], set()
    jobs = []  # (row label, column, frames of the reference, frames of the row), in table order
    for col in spec.columns:
        ref = entries[(spec.reference, col.key)]
        ref_frames = frames.by_seed(used[(spec.reference, col.key)], col) if ref.status == "ok" else None
        for row in spec.rows:
            entry = entries[(row.label, col.key)]
            if row.label == spec.reference or entry.status != "ok":
                continue
            sys_frames = frames.by_seed(used[(row.label, col.key)], col)
            if ref_frames is None or sys_frames is None:
                notes.add("Cells without per-question scores (theirs or the reference's) carry no test.")
                continue
            jobs.append((row.label, col, ref_frames, sys_frames))
    options = dict(n_resamples=n_resamples, seed=seed, bleu_tokenize=bleu_tokenize, bleu_seed=bleu_seed, aso=aso,
                   bleu_preset=bleu_preset)
    outcomes = _run_comparisons([(ref_frames, sys_frames, "bleu" if col.test == "bleu" else "accuracy", options)
                                 for _, col, ref_frames, sys_frames in jobs], workers)
    for (label, col, _, _), (result, error) in zip(jobs, outcomes):
        entry, ref = entries[(label, col.key)], entries[(spec.reference, col.key)]
        if error is not None:  # e.g. fewer than 2 shared questions
            notes.add(f"Some cells carry no test: {error}.")
            continue
        if col.test == "bleu" and bleu_preset != "sacrebleu" and not _same_delta(result, entry, ref, col):
            notes.add("BLEU cells whose logged BLEU is not the BLEU recomputed from their predictions (another "
                      "setting, or questions missing in some seed) carry no test.")
            continue
        keys.append((label, col.key))
        results.append(result)
    results = sig.apply_holm(results)
    with_q = [i for i, r in enumerate(results) if r.question_level is not None]
    for i, q in zip(with_q, sig.apply_holm([results[i].question_level for i in with_q])):
        results[i] = dataclasses.replace(results[i], question_level=q)
    for key, result in zip(keys, results):
        entries[key].test = result
        entries[key].mark = next((m for a, m in ALPHA_MARKS if result.p < a), "")
    out = []
    if results:
        tests = sorted({r.test for r in results})
        out.append(f"Stars: significance vs {spec.reference} (same column) by {'; '.join(tests)} "
                   f"({n_resamples} resamples, seed {seed}): accuracy resamples the training seeds of both systems "
                   f"and the questions, so a difference that seeds alone could produce is not starred; "
                   f"p-values Holm-corrected across the {len(results)} comparisons in this table: * p < 0.05, "
                   f"** p < 0.01. The CSV also gives the question-level test (seed-averaged scores, models treated "
                   f"as fixed) and ASO over the seeds.")
        if any(c.test == "bleu" for c in spec.columns):
            out.append(_bleu_footnote(bleu_preset, bleu_tokenize))
    return out + sorted(notes)


#: Questions from which a comparison is worth a process of its own (`build_table`'s default `workers`).
PARALLEL_MIN_QUESTIONS = 20_000


def _compare_one(job) -> tuple[TestResult | None, str | None]:
    """One comparison (a process pool's task): (result, None), or (None, why) when the test does not apply."""
    ref_frames, sys_frames, metric, options = job
    try:
        return compare_frames(ref_frames, sys_frames, metric=metric, **options), None
    except ValueError as exc:
        return None, str(exc)


def _run_comparisons(jobs: list, workers: int | None) -> list[tuple[TestResult | None, str | None]]:
    """Every comparison of the table, in order; independent and each seeded, so a process pool (``workers`` > 1)
    returns exactly what one process does."""
    if workers is None:
        largest = max((len(f) for job in jobs for frames in job[:2] for f in frames.values()), default=0)
        workers = (os.cpu_count() or 1) if largest >= PARALLEL_MIN_QUESTIONS else 1
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        return [_compare_one(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_compare_one, jobs))


def _same_delta(result: TestResult, entry: Entry, ref: Entry, col: Column) -> bool:
    """Does the test's Δ (recomputed BLEU) equal the Δ of the column's logged values? Guards the stars' meaning."""
    logged = entry.mean - ref.mean
    return abs(result.delta * col.delta_scale - logged) <= 1e-6 * max(1.0, abs(logged))


def _bleu_footnote(bleu_preset: str | None, bleu_tokenize: str) -> str:
    from cvil.eval.bleu import JVG_PRESET

    if bleu_preset == "sacrebleu":
        return (f"BLEU stars: sacrebleu paired bootstrap with tokenize={bleu_tokenize}, seeds pooled (not the "
                f"column's fugashi + NLTK BLEU).")
    return (f"BLEU stars: the column's BLEU (fugashi + NLTK, preset {bleu_preset or JVG_PRESET}) recomputed on "
            f"1000 paired resamples of the questions and the seeds (docs/metrics.md).")


def provenance(runs: list[run_store.RunRecord], spec: TableSpec, entries: dict[tuple[str, str], Entry],
               keys: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Facts a reader needs to trust the numbers, read from the runs' tags/params (keys in provenance.yaml)."""
    keys = keys or load_provenance_keys()
    out: dict[str, str] = {}
    for name in PROVENANCE_ORDER:
        if name == "split":
            out[name] = spec.split
        elif name == "n_questions":
            sizes = sorted({e.n_questions for e in entries.values() if e.n_questions is not None})
            out[name] = ", ".join(str(s) for s in sizes) or NOT_RECORDED
        elif name in ENVIRONMENT:
            out[name] = environment_line(runs, ENVIRONMENT[name])
        elif name == "date":
            ends = [r.end_time for r in runs if r.end_time]
            out[name] = (dt.datetime.fromtimestamp(max(ends) / 1000, dt.timezone.utc).strftime("%Y-%m-%d")
                         if ends else NOT_RECORDED)
        else:
            values = sorted({v for r in runs for v in [_first(r, keys.get(name, []))] if v})
            if name == "bleu_signature":
                values = sorted({bleu_signature_text(v) for v in values})
            out[name] = ", ".join(values) or NOT_RECORDED
    signatures = sorted({e.test.signature for e in entries.values() if e.test and e.test.signature})
    if signatures:
        out["significance_bleu_signature"] = ", ".join(signatures)
    return out


def environment_line(runs: list[run_store.RunRecord], facts: tuple[tuple[str, str], ...]) -> str:
    """`torch 2.13.0+cpu, numpy 2.4.6, ...`. Where the runs disagree, each distinct value with its number of runs and
    the line starts MIXED: a table trained in two environments says so instead of showing one of them."""
    runs = list({r.run_id: r for r in runs}.values())  # a run behind several columns counts once
    counts = [(label, Counter(r.lookup(key) or NOT_RECORDED for r in runs)) for label, key in facts]
    if all(set(c) <= {NOT_RECORDED} for _, c in counts):
        return NOT_RECORDED
    parts = [f"{label} " + " / ".join(v if len(c) == 1 else f"{v} ({n} of {len(runs)} runs)"
                                      for v, n in sorted(c.items()))
             for label, c in counts]
    return (MIXED if any(len(c) > 1 for _, c in counts) else "") + ", ".join(parts)


def bleu_signature_text(value: str) -> str:
    """The run tag `cvil.bleu_signature` (the signature as JSON) as the one-line, sacrebleu-style string `cvil eval
    jvg` prints (`tok:fugashi+unidic-lite|backend:nltk.corpus_bleu|...`); a value that is not such JSON unchanged."""
    import json

    from cvil.eval.bleu import BleuSignature

    try:
        raw = json.loads(value)
        if isinstance(raw, str):  # a signature already logged as its string
            return raw
        fields = {k: v for k, v in raw.items() if k in BleuSignature.__dataclass_fields__}
        fields["weights"] = tuple(fields.get("weights", ()))
        return BleuSignature(**fields).format()
    except (ValueError, TypeError, AttributeError):
        return value


def _first(run: run_store.RunRecord, candidates: list[str]) -> str | None:
    return next((v for v in (run.lookup(k) for k in candidates) if v), None)
