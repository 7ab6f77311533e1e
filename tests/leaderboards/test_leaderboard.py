"""Leaderboards from a real MLflow SQLite store built in the test: parent + child runs with the tags, metrics and
per-question CSV artifacts of docs/architecture.md §3, rendered to Markdown / LaTeX / CSV / HTML."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import runs as run_store
from leaderboards import render
from leaderboards.cli import generate
from cvil.eval.bleu import JVG_PRESET, corpus_bleu
from leaderboards.spec import SPEC_DIR, load_published, load_spec
from leaderboards import table as table_module
from leaderboards.table import build_table

GRID = "table1_ja"
END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, so the provenance date is fixed
N_Q = 40
# per-cell probability of a correct answer; KD clearly above BASELINE, AUG close to it
CELLS = {"BASELINE": 0.35, "AUG": 0.40, "KD": 0.85}
TYPES = ["nani", "dare", "doko|nani", "itsu"]


def _frame(cell: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([sorted(CELLS).index(cell), seed])
    correct = rng.random(N_Q) < CELLS[cell]
    truth = [f"答え{q % 7}" for q in range(N_Q)]
    pred = [t if c else "ねこ" for t, c in zip(truth, correct)]
    return pd.DataFrame({"question_id": range(1000, 1000 + N_Q), "prediction": pred, "ground_truth": truth,
                         "score": correct.astype(float), "question_type": [TYPES[q % 4] for q in range(N_Q)]})


def _child(c, exp, parent, cell, seed, tmp: Path, *, status="FINISHED", with_csv=True, metrics=None, tags=None):
    run = c.create_run(exp, run_name=f"{cell}/seed{seed}", tags={
        "cvil.grid": GRID, "cvil.cell": cell, "cvil.seed": str(seed), "mlflow.parentRunId": parent,
        "cvil.dataset": "worlds/tiny/vg", "cvil.git_commit": "abc1234", "cvil.language": "ja", **(tags or {})})
    rid = run.info.run_id
    c.log_param(rid, "kd.teacher", "worlds/tiny/teacher")
    c.log_param(rid, "model.init", "worlds/tiny/student")
    if status == "FINISHED":
        frame = _frame(cell, seed)
        bleu = corpus_bleu(frame["prediction"].tolist(), frame["ground_truth"].tolist(), preset=JVG_PRESET).score
        values = metrics if metrics is not None else {"test.accuracy": 100 * frame["score"].mean(), "test.bleu": bleu}
        for k, v in values.items():
            c.log_metric(rid, k, float(v))
        if with_csv:
            path = tmp / f"{rid}" / "test_per_question.csv"
            path.parent.mkdir(parents=True)
            frame.to_csv(path, index=False)
            c.log_artifact(rid, str(path), "predictions")
    c.set_terminated(rid, status, end_time=END_MS)
    return rid


@pytest.fixture
def store(mlflow_store, tmp_path):
    """BASELINE, AUG, KD × 2 seeds, all finished, under one grid parent run."""
    c = run_store.client(mlflow_store)
    exp = c.create_experiment("cvil", artifact_location=str(tmp_path / "artifacts"))
    parent = c.create_run(exp, run_name=GRID, tags={"cvil.kind": "grid", "cvil.grid": GRID}).info.run_id
    for cell in CELLS:
        for seed in (0, 1):
            _child(c, exp, parent, cell, seed, tmp_path)
    return c, exp, parent


def _build(c, **kw):
    spec = load_spec(SPEC_DIR / "table1a.yaml")
    return build_table(spec, c, published=load_published(), n_resamples=999, **({"aso": False} | kw))


FIXED_PROVENANCE = {"dataset": "worlds/tiny/vg", "split": "test", "n_questions": "40", "commit": "abc1234",
                    "date": "2026-01-01"}


def test_seed_aggregation_and_significance(store):
    c, _, _ = store
    table = _build(c)
    kd = table.entries[("cViL_KD", "accuracy")]
    assert kd.status == "ok" and kd.n_seeds == 2 and kd.n_questions == N_Q
    seeds = [100 * _frame("KD", s)["score"].mean() for s in (0, 1)]
    assert kd.mean == pytest.approx(np.mean(seeds))
    assert kd.ci_low < kd.mean < kd.ci_high
    # KD vs BASELINE: big gap -> marked after Holm; AUG vs BASELINE: small gap on 40 questions -> not
    assert kd.test.correction == "Holm (m=4)" and kd.test.p_adjusted < 0.01 and kd.mark == "**"
    assert table.entries[("BASELINE", "accuracy")].test is None  # the reference is not tested against itself
    assert table.provenance["commit"] == "abc1234" and table.provenance["date"] == "2026-01-01"
    assert table.provenance["teacher"] == "worlds/tiny/teacher"
    assert table.provenance["libraries"] == table.provenance["threads"] == "not recorded"  # runs without the tags
    assert any("Holm" in n for n in table.footnotes)
    # stars = the seed-aware test; the BLEU column's test recomputes the logged BLEU (same Δ as the column)
    assert kd.test.test == "two-level bootstrap-t (seeds and questions)" and kd.test.question_level is not None
    kd_bleu, base_bleu = table.entries[("cViL_KD", "bleu")], table.entries[("BASELINE", "bleu")]
    assert kd_bleu.test.delta == pytest.approx(kd_bleu.mean - base_bleu.mean, abs=1e-9)
    assert kd_bleu.test.test.startswith("two-level paired bootstrap of the column's BLEU")
    assert any("Stars:" in n and "training seeds" in n for n in table.footnotes)
    assert any("BLEU stars: the column's BLEU (fugashi + NLTK, preset corpus1)" in n for n in table.footnotes)


def test_bleu_logged_with_another_setting_gets_no_star(mlflow_store, tmp_path):
    c = run_store.client(mlflow_store)
    exp = c.create_experiment("cvil", artifact_location=str(tmp_path / "artifacts"))
    parent = c.create_run(exp, run_name=GRID, tags={"cvil.kind": "grid", "cvil.grid": GRID}).info.run_id
    for cell in CELLS:
        frame = _frame(cell, 0)
        _child(c, exp, parent, cell, 0, tmp_path, metrics={"test.accuracy": 100 * frame["score"].mean(),
                                                           "test.bleu": 12.5})
    table = _build(c)
    assert table.entries[("cViL_KD", "bleu")].test is None and table.entries[("cViL_KD", "accuracy")].test
    assert any("logged BLEU is not the BLEU recomputed" in n for n in table.footnotes)


def test_missing_and_failed_cells_are_explicit(mlflow_store, tmp_path):
    c = run_store.client(mlflow_store)
    exp = c.create_experiment("cvil", artifact_location=str(tmp_path / "artifacts"))
    parent = c.create_run(exp, run_name=GRID, tags={"cvil.kind": "grid", "cvil.grid": GRID}).info.run_id
    _child(c, exp, parent, "BASELINE", 0, tmp_path, metrics={"test.accuracy": 35.0})  # no BLEU logged
    _child(c, exp, parent, "AUG", 0, tmp_path, status="FAILED", tags={"cvil.error": "CUDA out of memory\nmore"})
    # KD: no run at all
    table = _build(c)
    frame = render.display_frame(table)
    cells = frame[frame["Source"] == "ours"].set_index("System")
    assert cells.loc["BASELINE", "Accuracy"] == "35.00"
    assert cells.loc["BASELINE", "BLEU"] == render.MISSING
    assert cells.loc["cViL_AUG", "Accuracy"] == "failed: CUDA out of memory"
    assert cells.loc["cViL_KD", "Accuracy"] == render.MISSING
    md = render.to_markdown(table)
    assert "metric test.bleu not logged" in md and "cViL_KD / accuracy: no finished run" in md
    assert "| 0.00" not in md and "|  |" not in md


# the environment tags of a training run (cvil.train.run_metadata.environment_tags), as docs/architecture.md §3 names them
ENV = {"cvil.version.torch": "2.13.0+cpu", "cvil.version.transformers": "5.25.0", "cvil.version.tokenizers": "0.23.3",
       "cvil.version.numpy": "2.4.6", "cvil.threads.intra_op": "1", "cvil.threads.inter_op": "2",
       "cvil.env.OMP_NUM_THREADS": "1", "cvil.env.MKL_NUM_THREADS": "unset"}


def test_provenance_lists_versions_and_threads_and_flags_a_mix(mlflow_store, tmp_path):
    c = run_store.client(mlflow_store)
    exp = c.create_experiment("cvil", artifact_location=str(tmp_path / "artifacts"))
    parent = c.create_run(exp, run_name=GRID, tags={"cvil.kind": "grid", "cvil.grid": GRID}).info.run_id
    other = {"cvil.version.torch": "2.12.0", "cvil.threads.intra_op": "2"}  # KD ran elsewhere
    for cell in CELLS:
        rid = _child(c, exp, parent, cell, 0, tmp_path, tags=ENV | (other if cell == "KD" else {}))
        c.log_param(rid, "train.threads", "1")
    same = [r for r in run_store.find_runs(c, grid=GRID) if r.cell in ("BASELINE", "AUG")]
    assert table_module.environment_line(same, table_module.ENVIRONMENT["threads"]) == (
        "intra-op 1, inter-op 2, OMP_NUM_THREADS 1, MKL_NUM_THREADS unset, train.threads 1")
    table = _build(c, significance=False)
    md = render.to_markdown(table)
    print(md)
    assert ("- Libraries: MIXED, the runs disagree: torch 2.12.0 (1 of 3 runs) / 2.13.0+cpu (2 of 3 runs), "
            "transformers 5.25.0, tokenizers 0.23.3, numpy 2.4.6\n") in md
    assert ("- Threads: MIXED, the runs disagree: intra-op 1 (2 of 3 runs) / 2 (1 of 3 runs), inter-op 2, "
            "OMP_NUM_THREADS 1, MKL_NUM_THREADS unset, train.threads 1\n") in md
    assert "<dt>Libraries</dt><dd>MIXED, the runs disagree: torch 2.12.0" in render.to_html(table)
    assert "Threads: MIXED, the runs disagree: intra-op 1" in render.to_latex(table)


GOLDEN_MD = """\
## Table I(a): Japanese Visual Genome VQA (test)

| Source | System | Seeds | Accuracy | BLEU |
| --- | --- | --: | --: | --: |
| ours | BASELINE | 2 | 38.75 ± 47.65 | 35.94 ± 49.59 |
| ours | cViL_AUG | 2 | 41.25 ± 79.41 | 38.58 ± 83.10 |
| ours | cViL_KD | 2 | 83.75 ± 47.65\\*\\* | 83.43 ± 49.38\\*\\* |
| published (paper) | PCATT\\* [31] | n/a | 19.2 | — (not reported) |
| published (paper) | UNITER_CC [3], [20] | n/a | 22.7 | 11.8 |
| published (paper) | UC2 [20] | n/a | 34.2 | 26.8 |
| published (paper) | BASELINE | n/a | 33.75 | 32.5 |
| published (paper) | cViL_AUG | n/a | 34.93 | 33.6 |
| published (paper) | cViL_KD | n/a | 35.72 | 33.1 |
"""


def test_golden_markdown_and_latex(store):
    c, _, _ = store
    table = replace(_build(c, significance=True), provenance=FIXED_PROVENANCE)
    md = render.to_markdown(table)
    print(md)
    assert md.startswith(GOLDEN_MD)
    assert md.endswith("Provenance:\n\n- Dataset: worlds/tiny/vg\n- Split: test\n- Questions (n): 40\n"
                       "- Code commit: abc1234\n- Date: 2026-01-01\n")
    tex = render.to_latex(table)
    print(tex)
    assert tex.startswith(GOLDEN_TEX)
    assert r"Provenance: Dataset: worlds/tiny/vg; Split: test; Questions (n): 40; Code commit: abc1234; Date: 2026-01-01\par" in tex
    assert tex.rstrip().endswith(r"\end{table}")


GOLDEN_TEX = r"""\begin{table}[t]
\centering
\small
\caption{Table I(a): Japanese Visual Genome VQA (test)}
\label{tab:cvil-table1a}
\begin{tabular}{llrrr}
\toprule
Source & System & Seeds & Accuracy & BLEU \\
\midrule
ours & BASELINE & 2 & 38.75 $\pm$ 47.65 & 35.94 $\pm$ 49.59 \\
ours & cViL\_AUG & 2 & 41.25 $\pm$ 79.41 & 38.58 $\pm$ 83.10 \\
ours & cViL\_KD & 2 & 83.75 $\pm$ 47.65$^{**}$ & 83.43 $\pm$ 49.38$^{**}$ \\
\midrule
published (paper) & PCATT$^{*}$ [31] & n/a & 19.2 & --- (not reported) \\
"""


def test_csv_has_every_number(store):
    c, _, _ = store
    frame = pd.read_csv(__import__("io").StringIO(render.to_csv(_build(c, aso=True))))
    ours = frame[frame["source"] == "ours"].set_index(["system", "column"])
    kd = ours.loc[("cViL_KD", "Accuracy")]
    assert kd["delta"] > 30  # percent points
    assert kd["correction"] == "Holm (m=4)" and kd["test"] == "two-level bootstrap-t (seeds and questions)"
    # the question-level test stays in the CSV, Holm-corrected over the same comparisons; ASO over the 2 seeds
    assert kd["p_question_level"] <= kd["p_question_level_adjusted"] < 0.01
    assert kd["test_question_level"].startswith("paired permutation test")
    assert kd["aso"] == pytest.approx(0.0, abs=0.05)
    assert set(frame["source"]) == {"ours", "published (paper)"}


def test_generate_writes_all_formats_and_logs_plot(store, tmp_path):
    c, _, parent = store
    out = tmp_path / "rendered"
    tables, written = generate(c, out, table_ids=["table1a", "table1b"], generated="2026-01-02", n_resamples=199,
                               aso=False)
    names = {p.name for p in written}
    assert {"table1a.md", "table1a.tex", "table1a.csv", "table1a.html", "table1b.html", "index.html",
            f"{GRID}.png"} <= names
    html = (out / "table1a.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    assert "2026-01-02" in (out / "index.html").read_text(encoding="utf-8")
    assert [a.path for a in c.list_artifacts(parent, "leaderboards")] == [f"leaderboards/{GRID}.png"]
    # Table I(b): per-type columns use the "|"-joined question types (doko|nani counts for both)
    nani = tables[1].entries[("cViL_KD", "nani")]
    assert nani.status == "missing"  # test.accuracy.nani was not logged: shown as missing, never as 0


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") is None:
        return None
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError):
        return None
    return shutil.which("chromium")


@pytest.mark.slow
def test_html_page_renders_in_headless_chromium(store, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed and `apt-get install -y chromium` was not possible here")
    c, _, _ = store
    generate(c, tmp_path / "out", table_ids=["table1a"], generated="2026-01-02", n_resamples=199, log_plots=False,
             aso=False)
    page = (tmp_path / "out" / "table1a.html").resolve()
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
         "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'id="leaderboard"' in dom and "cViL_KD" in dom and "published (paper)" in dom
    assert "83.75 ± 47.65*" in dom  # marked (199 resamples: p ≥ 1/200, so "*" after Holm)


def test_comparisons_in_a_process_pool_give_the_same_table(store):
    """The table's comparisons are independent and seeded: two worker processes give exactly one process's tests."""
    c, _, _ = store
    serial, parallel = _build(c, workers=1, aso=True), _build(c, workers=2, aso=True)
    tested = {k: e.test.to_dict() for k, e in serial.entries.items() if e.test is not None}
    assert len(tested) == 4
    assert {k: e.test.to_dict() for k, e in parallel.entries.items() if e.test is not None} == tested
    assert [e.mark for e in serial.entries.values()] == [e.mark for e in parallel.entries.values()]
    assert serial.footnotes == parallel.footnotes


def test_a_store_reproduces_the_committed_per_seed_values_within_the_seed_spread(store, tmp_path, capsys):
    """`leaderboards.reproduce`: the CSV keeps every seed's value; the same store reproduces them (exit 0), a store
    whose seed-0 KD run moved by more than KD's seed spread is named (exit 1)."""
    from leaderboards import reproduce

    c, exp, parent = store
    rendered = tmp_path / "rendered"
    generate(c, rendered, table_ids=["table1a"], generated="2026-01-02", n_resamples=99, aso=False)
    frame = pd.read_csv(rendered / "table1a.csv", dtype={"per_seed": str})
    kd = frame[(frame["source"] == "ours") & (frame["system"] == "cViL_KD") & (frame["column"] == "Accuracy")].iloc[0]
    assert kd["per_seed"] == ";".join(f"{s}={100 * _frame('KD', s)['score'].mean():.6g}" for s in (0, 1))
    argv = ["--tables", "table1a", "--seeds", "0", "--rendered", str(rendered)]  # the store: MLFLOW_TRACKING_URI
    assert reproduce.main(argv) == 0
    assert "committed values reproduced within their cell's seed spread" in capsys.readouterr().out
    _child(c, exp, parent, "KD", 0, tmp_path / "again", metrics={"test.accuracy": 5.0})  # a later seed-0 run
    assert reproduce.main(argv) == 1
    out = capsys.readouterr().out
    assert "OUTSIDE the seed spread" in out and "cViL_KD" in out
