"""`cvil-bench leaderboard` does not destroy: a table without runs stays as committed (unless --force), its output
has no MLflow progress bars, and the BLEU signature reads as the sacrebleu-style string `cvil eval jvg` prints."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from bench import runs as run_store
from cvil.eval.bleu import JVG_PRESET, corpus_bleu

HERE = Path(__file__).resolve().parent
RENDERED = HERE.parents[1] / "leaderboards" / "rendered"


def _helpers():
    spec = importlib.util.spec_from_file_location("_leaderboard_tests", HERE / "test_leaderboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _main(argv, capfd) -> tuple[int, str]:
    from bench.cli import main

    code = main(argv)
    out, err = capfd.readouterr()
    return code, out + err


def test_a_table_without_runs_is_left_as_committed_unless_forced(mlflow_store, tmp_path, capfd):
    out = tmp_path / "rendered"
    shutil.copytree(RENDERED, out)
    before = _digests(out)
    code, text = _main(["leaderboard", "--tracking-uri", mlflow_store, "--out", str(out), "--tables", "table3",
                        "--no-aso", "--n-resamples", "99"], capfd)
    assert code == 0 and _digests(out) == before  # nothing rewritten, not even the overview
    assert "table3: no runs of grid table3_ablations in the store; left" in text and "untouched" in text
    code, text = _main(["leaderboard", "--tracking-uri", mlflow_store, "--out", str(out), "--tables", "table3",
                        "--no-aso", "--n-resamples", "99", "--force"], capfd)
    assert code == 0 and "table3: 0 ok, 7 missing, 0 failed" in text
    assert "— (missing)" in (out / "table3.md").read_text(encoding="utf-8")
    assert _digests(out)["table1a.md"] == before["table1a.md"]  # other tables untouched
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Table I" in index  # the overview still shows the tables not rebuilt (from their CSVs)


def test_a_table_with_runs_is_written_without_progress_bars_and_with_the_bleu_signature_string(
        mlflow_store, tmp_path, capfd):
    h = _helpers()
    c = run_store.client(mlflow_store)
    exp = c.create_experiment("cvil", artifact_location=str(tmp_path / "artifacts"))
    parent = c.create_run(exp, run_name=h.GRID, tags={"cvil.kind": "grid", "cvil.grid": h.GRID}).info.run_id
    frame = h._frame("KD", 0)
    signature = corpus_bleu(frame["prediction"].tolist(), frame["ground_truth"].tolist(), preset=JVG_PRESET).signature
    tag = json.dumps({**signature.__dict__, "weights": list(signature.weights)})  # as final_eval logs it
    for cell in h.CELLS:
        for seed in (0, 1):
            h._child(c, exp, parent, cell, seed, tmp_path, tags={"cvil.bleu_signature": tag})
    out = tmp_path / "rendered"
    code, text = _main(["leaderboard", "--tracking-uri", mlflow_store, "--out", str(out), "--tables", "table1a",
                        "--no-aso", "--n-resamples", "99", "--no-log-plots"], capfd)
    assert code == 0 and "table1a: 6 ok" in text
    assert "Downloading artifacts" not in text and "it/s]" not in text
    page = (out / "table1a.md").read_text(encoding="utf-8")
    line = next(ln for ln in page.splitlines() if ln.startswith("- BLEU signature:")).replace("\\|", "|")
    assert line == f"- BLEU signature: {signature.format()}"
    assert line.startswith("- BLEU signature: tok:fugashi+unidic-lite|backend:nltk.corpus_bleu|") and "{" not in line
    assert signature.format() in (out / "table1a.html").read_text(encoding="utf-8")  # the page shows it too


@pytest.mark.parametrize("value", ["not json", '"tok:x|backend:y"'])
def test_a_signature_tag_that_is_not_json_is_shown_as_it_is(value):
    from leaderboards.table import bleu_signature_text

    assert bleu_signature_text(value) == value.strip('"')
