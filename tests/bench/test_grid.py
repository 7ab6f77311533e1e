"""The grid runner end to end with a fake `cvil train`: child runs, skip on re-run, resume, failures, concurrency.

The fake trainer (written to tmp_path) does what the real one promises: one MLflow run under
`tracking.parent_run_id` with the `tracking.tags`, `cvil.config_hash`, a stream of metrics and final metrics;
a non-zero exit with a reason on stderr when it fails. Cells named in $FAKE_FAIL fail on purpose after writing a
checkpoint, so the next grid run must resume them.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from bench import tracking
from bench.grid.runner import GridRunner, has_checkpoint, headline
from cvil.config import load_config
from bench.grid.spec import expand, load_grid, shipped_grids, slug
from cvil.config import ConfigError

REPO = Path(__file__).resolve().parents[2]

FAKE_TRAIN = textwrap.dedent(
    r'''
    """A stand-in for `cvil train --config FILE [--resume] key=value ...`."""
    import os, sys
    from pathlib import Path

    import mlflow

    from cvil.config import config_hash, load_config

    argv = [a for a in sys.argv[1:] if a != "train"]
    resume = "--resume" in argv
    argv = [a for a in argv if a != "--resume"]
    config = argv[argv.index("--config") + 1]
    overrides = [a for i, a in enumerate(argv) if "=" in a and argv[i - 1] != "--config"]
    cfg = load_config(config, overrides)
    t = cfg.tracking
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "argv.log", "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\n")
    cell = t.tags["cvil.cell"]
    if cell in os.environ.get("FAKE_FAIL", "").split(","):
        (out / "checkpoints").mkdir(exist_ok=True)
        (out / "checkpoints" / "last.pt").write_text("x")
        print(f"Traceback ...\nRuntimeError: deliberate failure in cell {cell}", file=sys.stderr)
        sys.exit(3)
    mlflow.set_tracking_uri(t.uri)
    mlflow.set_experiment(t.experiment)
    tags = {"mlflow.parentRunId": t.parent_run_id, "cvil.config_hash": config_hash(cfg),
            **{k: str(v) for k, v in t.tags.items()}}
    with mlflow.start_run(run_name=t.run_name, tags=tags):
        for step in range(10):  # many small writes: the concurrency the store must absorb
            mlflow.log_metric("train.loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"test.accuracy": 0.5 + cfg.train.seed / 100, "val.score": 0.4 + cfg.train.seed / 100})
    '''
)


@pytest.fixture
def fake_grid(mlflow_store, tmp_path, monkeypatch):
    """A 2-cell grid (OK, BAD) whose cells share one tiny config; the fake trainer as CVIL_TRAIN_CMD."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    (tmp_path / "base.yaml").write_text("schedule: baseline\ntrain: {seed: 7}\n")
    grid = tmp_path / "tiny.yaml"
    grid.write_text(textwrap.dedent("""\
        name: tiny
        seeds: 2
        cells:
          OK: {config: base.yaml}
          BAD: {config: base.yaml, overrides: [kd.cls=false]}
    """))
    monkeypatch.setenv("CVIL_TRAIN_CMD", f"{sys.executable} {script} train")
    return grid


def _run(grid: Path, uri: str, **kw) -> tuple[list, list[str]]:
    lines: list[str] = []
    runner = GridRunner(load_grid(str(grid)), uri=uri, echo=lines.append, poll_s=0.05, **kw)
    return runner.run(), lines


@pytest.mark.slow
def test_grid_end_to_end_skip_resume_and_failures(fake_grid, mlflow_store, monkeypatch, tmp_path):
    # first run, 2 jobs at once: OK finishes for both seeds, BAD fails on purpose (after a checkpoint)
    monkeypatch.setenv("FAKE_FAIL", "BAD")
    results, lines = _run(fake_grid, mlflow_store, jobs=2)
    status = {(r.cell, r.seed): r.status for r in results}
    assert status == {("OK", 0): "finished", ("OK", 1): "finished", ("BAD", 0): "failed", ("BAD", 1): "failed"}
    assert all("deliberate failure in cell BAD" in r.error for r in results if r.cell == "BAD")
    ok0 = next(r for r in results if (r.cell, r.seed) == ("OK", 0))
    assert ok0.metrics["test.accuracy"] == pytest.approx(0.5) and ok0.run_id
    assert sum("start" in line for line in lines) == 4 and sum("FAILED" in line for line in lines) == 2

    summary = json.loads((tmp_path / "runs/tiny/summary.json").read_text())
    assert summary["counts"] == {"finished": 2, "skipped": 0, "failed": 2}
    assert {(f["cell"], f["seed"]) for f in summary["failed"]} == {("BAD", 0), ("BAD", 1)}
    assert "RuntimeError: deliberate failure" in summary["failed"][0]["error"]
    csv_head = (tmp_path / "runs/tiny/summary.csv").read_text().splitlines()[0]
    assert csv_head.startswith("cell,seed,status") and "test.accuracy" in csv_head

    # the store: one parent (FAILED, with the spec and summaries), two finished children tagged as the contract says
    c = tracking.client(mlflow_store)
    exp = tracking.experiment_id(c, "cvil")
    parents = tracking.search_all(c, exp, tracking.tag_filter({"cvil.kind": "grid", "cvil.grid": "tiny"}))
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    parent_id = parents[0].info.run_id
    artifacts = {a.path for folder in ("summary", "grid") for a in c.list_artifacts(parent_id, folder)}
    assert artifacts == {"summary/summary.csv", "summary/summary.json", "grid/tiny.yaml"}
    kids = tracking.children(c, exp, parent_id)
    assert len(kids) == 2 and {k.data.tags["cvil.cell"] for k in kids} == {"OK"}
    assert {k.info.run_name for k in kids} == {"OK-s0", "OK-s1"}
    assert all(k.data.tags["cvil.grid"] == "tiny" for k in kids)
    assert has_checkpoint(tmp_path / "runs/tiny/BAD/seed0")

    # re-run with the failure fixed: OK is skipped (same config hash), BAD resumes from its checkpoint
    monkeypatch.delenv("FAKE_FAIL")
    results, lines = _run(fake_grid, mlflow_store, jobs=2)
    status = {(r.cell, r.seed): (r.status, r.resumed) for r in results}
    assert status == {("OK", 0): ("skipped", False), ("OK", 1): ("skipped", False),
                      ("BAD", 0): ("finished", True), ("BAD", 1): ("finished", True)}
    assert "--resume" in (tmp_path / "runs/tiny/BAD/seed1/argv.log").read_text().splitlines()[-1]
    assert "--resume" not in (tmp_path / "runs/tiny/OK/seed1/argv.log").read_text()
    # a fresh attempt replaces what an earlier attempt left (the trainer refuses an occupied folder otherwise)
    assert "--overwrite" in (tmp_path / "runs/tiny/OK/seed1/argv.log").read_text().split()
    parents = tracking.search_all(c, exp, tracking.tag_filter({"cvil.kind": "grid", "cvil.grid": "tiny"}))
    assert [p.info.run_id for p in parents] == [parent_id] and parents[0].info.status == "FINISHED"
    kids = tracking.children(c, exp, parent_id)
    assert len(kids) == 4 and all(k.info.status == "FINISHED" for k in kids)
    assert all(k.data.metrics["train.loss"] == pytest.approx(1 / 10) for k in kids)  # every write landed

    # a third run has nothing to do
    results, _ = _run(fake_grid, mlflow_store)
    assert {r.status for r in results} == {"skipped"}


@pytest.mark.slow
def test_grid_through_submitit_local_executor(fake_grid, mlflow_store, tmp_path):
    results, lines = _run(fake_grid, mlflow_store, seeds=1, cells=("OK",), launcher="submitit-local")
    assert [(r.cell, r.seed, r.status) for r in results] == [("OK", 0, "finished")]
    assert results[0].metrics["val.score"] == pytest.approx(0.4)
    assert (tmp_path / "runs/tiny/submitit").is_dir()  # submitit's pickles and logs live beside the grid


class _Run:
    """The two fields of an MLflow run that `_plan` reads."""

    def __init__(self, status: str, digest: str):
        self.info = type("Info", (), {"status": status, "run_id": "r"})()
        self.data = type("Data", (), {"tags": {"cvil.config_hash": digest}})()


@pytest.mark.slow
def test_cells_rerun_merges_into_the_grid_summary(fake_grid, mlflow_store, tmp_path):
    import csv

    results, _ = _run(fake_grid, mlflow_store, cells=("OK",))
    assert {(r.cell, r.seed) for r in results} == {("OK", 0), ("OK", 1)}
    results, _ = _run(fake_grid, mlflow_store, cells=("BAD",))
    assert {(r.cell, r.seed) for r in results} == {("BAD", 0), ("BAD", 1)}
    with open(tmp_path / "runs/tiny/summary.csv", newline="") as f:
        rows = {(r["cell"], r["seed"]): r for r in csv.DictReader(f)}
    assert set(rows) == {("OK", "0"), ("BAD", "0"), ("OK", "1"), ("BAD", "1")}  # the OK rows were kept
    assert {r["status"] for r in rows.values()} == {"finished"} and rows[("OK", "1")]["test.accuracy"] == "0.51"
    summary = json.loads((tmp_path / "runs/tiny/summary.json").read_text())
    assert summary["counts"] == {"finished": 4, "skipped": 0, "failed": 0}
    assert [(j["cell"], j["seed"]) for j in summary["jobs"]] == [("OK", 0), ("BAD", 0), ("OK", 1), ("BAD", 1)]


def test_shipped_grid_resolves_its_configs_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository
    jobs = expand(load_grid("table3_ablations"), seeds=1)
    # inside the package (so a wheel install has them), not the checkout's top-level `configs` link
    assert {j.config for j in jobs} == {str(REPO / "cvil/configs/synthetic/kd.yaml"),
                                        str(REPO / "cvil/configs/synthetic/baseline.yaml")}
    # a grid file beside its own configs finds them wherever it is run from
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "mine.yaml").write_text("schedule: baseline\n")
    (tmp_path / "g" / "grid.yaml").write_text("name: g\nseeds: 1\ncells: {A: {config: mine.yaml}}\n")
    monkeypatch.chdir(REPO)
    assert expand(load_grid(str(tmp_path / "g" / "grid.yaml")))[0].config == str(tmp_path / "g" / "mine.yaml")


def test_every_shipped_config_is_package_data():
    """pyproject's package-data glob ships every config file the package folder holds (a wheel install has them)."""
    import tomllib

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cvil"]
    shipped = {p for g in globs for p in (REPO / "cvil").glob(g)}
    assert shipped == set((REPO / "cvil/configs").rglob("*.yaml")) and len(shipped) >= 20
    assert (REPO / "configs").resolve() == (REPO / "cvil/configs").resolve()  # the documented paths still work


def _bench(argv, capsys):
    from bench.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_every_job_without_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _bench(["grid", "table3_ablations", "--dry-run", "--seeds", "2", "--cells", "KD",
                             "--cells", "BASELINE", "train.threads=1"], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("[grid table3_ablations] dry run: 4 jobs on synthetic world preset small")
    heads = [line for line in lines[1:] if not line.startswith("    ")]
    assert [h.split(":")[0] for h in heads] == ["KD/seed0", "BASELINE/seed0", "KD/seed1", "BASELINE/seed1"]
    assert f"--config {REPO / 'cvil/configs/synthetic/kd.yaml'}" in heads[0]
    assert "train.seed=1" in lines[6] and "train.threads=1" in lines[6] and "output_dir=runs/table3_ablations/KD/seed1" in lines[6]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no world, no store, no runs folder


@pytest.mark.parametrize("argv,message", [
    (["--cells", "NOPE"], "has no cell ['NOPE']"),
    (["kd.clss=false"], "cell 'KD': unknown config key 'kd.clss'; did you mean 'kd.cls'?"),
])
def test_bad_cells_or_overrides_fail_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = _bench(["grid", "table3_ablations", *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "worlds").exists() and not (tmp_path / "mlflow.db").exists()


def test_plan_skips_resumes_or_reruns(tmp_path, monkeypatch):
    from bench.grid.runner import _plan

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("schedule: kd\n")
    job = expand(load_grid(str(_tiny_grid(tmp_path))), seeds=1)[0]
    from cvil.config import config_hash

    digest = config_hash(load_config(job.config, list(job.overrides)))
    assert _plan(job, [_Run("FINISHED", digest)]).skip_run is not None
    changed = _plan(job, [_Run("FINISHED", "another config")])  # the config changed since: run it again, fresh
    assert changed.skip_run is None and not changed.resume and changed.digest == digest
    (tmp_path / job.output_dir / "checkpoints").mkdir(parents=True)
    (tmp_path / job.output_dir / "checkpoints" / "last.pt").write_text("x")
    assert _plan(job, [_Run("KILLED", digest)]).resume  # interrupted with a checkpoint: resume
    assert _plan(job, []).resume
    assert not _plan(job, [_Run("FINISHED", "old")]).resume  # a finished old config's checkpoint is not resumed
    assert not _plan(job, [_Run("FAILED", "old")]).resume  # nor an interrupted old config's (the trainer refuses)
    broken = expand(load_grid(str(_tiny_grid(tmp_path))), seeds=1, extra_overrides=("kd.nope=1",))[0]
    assert "unknown config key" in _plan(broken, []).error


def _tiny_grid(tmp_path: Path) -> Path:
    grid = tmp_path / "plan.yaml"
    grid.write_text("name: plan\ncells: {KD: {config: c.yaml}}\n")
    return grid


def test_expand_builds_the_contract_overrides():
    spec = load_grid("table3_ablations")
    jobs = expand(spec, seeds=1, world=["data.root=w"])
    assert [j.cell for j in jobs] == ["KD", "w/o CLS", "w/o code-mixed", "w/o image tokens", "w/o object tags",
                                      "w/o intermediate layers", "BASELINE"]
    j = jobs[5]
    assert j.config == str(REPO / "cvil/configs/synthetic/kd.yaml")  # resolved against the shipped configs
    assert j.output_dir == "runs/table3_ablations/wo-intermediate-layers/seed0"
    for item in ("data.root=w", "kd.layers=[12]", "train.seed=0", "tracking.run_name=wo-intermediate-layers-s0",
                 "tracking.tags.cvil.grid=table3_ablations", "tracking.tags.cvil.cell=w/o intermediate layers",
                 "tracking.tags.cvil.seed=0"):
        assert item in j.overrides
    assert len(expand(spec)) == 35 and slug("w/o CLS") == "wo-CLS"  # 7 cells x 5 seeds


def test_the_progress_line_shows_the_test_score_else_a_teachers_val_accuracy():
    assert headline({"test.accuracy": 36.875, "val.accuracy": 45.9, "val.score": 45.9}) == " test.accuracy=36.8750"
    assert headline({"val.accuracy": 96.37, "val.score": 96.0}) == " val.accuracy=96.3700"  # a teacher: no test split
    assert headline({"val.score": 0.4}) == " val.score=0.4000" and headline({"train.loss": 1.0}) == ""


def test_the_teacher_probe_varies_only_the_first_step_and_names_existing_teachers():
    spec = load_grid("teacher_probe")
    kd = load_config(REPO / "cvil/configs/synthetic/kd.yaml")
    assert kd.stages[0].objective == "kd"  # the probe's premise: the shipped KD stage is pure distillation
    for cell in spec.cells:
        assert cell.config == "configs/synthetic/kd.yaml"
        teacher = [o for o in cell.overrides if o.startswith("kd.teacher=")]
        assert len(teacher) == 1 and teacher[0].startswith("kd.teacher={runs_dir}/teacher_seeds/teacher/seed")
        changed = [o.split("=")[0] for o in cell.overrides if not o.startswith("kd.teacher=")]
        assert set(changed) <= {"kd.reduction", "stages.0.objective", "stages.0.epochs"}
        cfg = load_config(REPO / cell.config, list(cell.overrides))
        assert cfg.stages[1:] == kd.stages[1:]  # the JVG steps are the tables' KD steps


def test_kd_epochs_changes_only_the_length_of_the_distillation_stage():
    kd = load_config(REPO / "cvil/configs/synthetic/kd.yaml")
    aug = load_config(REPO / "cvil/configs/synthetic/aug.yaml")
    translated = sum(s.epochs for s in aug.stages if s.dataset == "vqa")  # AUG's epochs on the translated set
    for suffix in ("", "_t0", "_t2000"):  # each knob setting, on the world of table1_ja's grid for that setting
        spec = load_grid("kd_epochs" + suffix)
        assert spec.seeds == (0, 1, 2, 3, 4) and spec.world == load_grid("table1_ja" + suffix).world
        for job in expand(spec, world=["kd.teacher=worlds/w/teacher/oscar"]):
            cfg = load_config(job.config, list(job.overrides))
            assert cfg.stages[0].epochs == translated == 9 and cfg.stages[0].objective == "kd"
            assert cfg.stages[1:] == kd.stages[1:] and cfg.kd == kd.kd.__class__(**{**kd.kd.__dict__,
                                                                                    "teacher": cfg.kd.teacher})
            paired = "paired" in job.cell
            assert cfg.kd.teacher == (f"runs/teacher_seeds{suffix}/teacher/seed{job.seed}/oscar" if paired
                                      else "worlds/w/teacher/oscar")


def test_shipped_grids_name_their_cells_and_configs():
    expected = {
        "table1_ja": {"BASELINE": "baseline", "AUG": "aug", "KD": "kd"},
        "table2_hi": {"BASELINE": "hindi_baseline", "KD": "hindi_kd"},
        "table4_vqa_ja": {"AUG": "vqa_ja_aug", "KD": "vqa_ja_kd"},
    }
    v3 = {f"{name}_t{t}" for name in ("table1_ja", "table3_ablations", "table4_vqa_ja") for t in (0, 2000)}
    v2 = {f"{name}_v2" for name in (*expected, "table3_ablations")}
    v3 |= {"table1_ja_m300"}  # world v3 with a smaller translated set (the mvqa knob)
    paired = {"knob_paired", "knob_paired_t0", "knob_paired_t2000"}  # the knob with a teacher per seed
    assert set(shipped_grids()) == {*expected, "table3_ablations", "paper_table3_ablations", "table_zh", *v3, *v2,
                                    *paired, "teacher_probe", "kd_epochs", "kd_epochs_t0", "kd_epochs_t2000"}
    for name in v3:  # the same cells as the default world's grid, on the world of one knob setting
        assert load_grid(name).cells == load_grid(name.rsplit("_", 1)[0]).cells
        assert load_grid(name).world["preset"] in {"small@teacher=0", "small@teacher=2000", "small@mvqa=300"}
    for name in v2:  # world v2's tables stay reproducible: the same cells on the world they were made on
        assert load_grid(name).world == {"preset": "small-v2", "root": "worlds/small-v2", "seed": 0}
        assert load_grid(name).cells == load_grid(name[:-3]).cells
    zh = load_grid("table_zh")  # a third language (not a paper table): its own world, with Chinese added
    assert {c.name: c.config for c in zh.cells} == {k: f"configs/synthetic/zh_{k.lower()}.yaml"
                                                    for k in ("BASELINE", "AUG", "KD")}
    assert zh.world == {"preset": "small+zh", "root": "worlds/small_zh", "seed": 0}
    paper = load_grid("paper_table3_ablations")
    assert paper.world is None and set(paper.paths) == {"data_root", "teacher", "student_init"}
    assert paper.seeds == (88,)  # the authors' seed, not seed 0 (`seeds: 1` + an override that lost)
    for job in expand(paper, seeds=1):
        assert [o for o in job.overrides if o.startswith("train.seed=")] == ["train.seed=88"]
        assert job.seed == 88 and job.output_dir.endswith("seed88")
    assert all(Path(c.config).parts[:2] == ("configs", "paper") and (REPO / c.config).is_file() for c in paper.cells)
    for name, cells in expected.items():
        spec = load_grid(name)
        assert {c.name: c.config for c in spec.cells} == {k: f"configs/synthetic/{v}.yaml" for k, v in cells.items()}
        # Tables I and IV (KD vs AUG, world v3's main comparison) over 5 seeds, the others over 3
        assert spec.seeds == ((0, 1, 2, 3, 4) if name in ("table1_ja", "table4_vqa_ja") else (0, 1, 2))
        assert spec.world == {"preset": "small", "root": "worlds/small", "seed": 0}
    ablations = {c.name: c.overrides for c in load_grid("table3_ablations").cells}
    assert ablations["w/o CLS"] == ("kd.cls=false",) and ablations["w/o code-mixed"] == ("kd.codemix=false",)
    assert ablations["w/o image tokens"] == ("kd.image=false",) and ablations["w/o object tags"] == ("kd.tags=false",)


def test_world_keys_on_the_command_line_skip_the_world():
    from bench.grid.spec import world_overrides

    user = ("data.root=/real", "kd.teacher=/t", "model.init=/s")
    assert world_overrides({"root": "worlds/small"}, None, user) == []  # no world built
    real = {"data_root": "/d", "teacher": "/t", "student_init": "/s"}
    assert world_overrides(None, real, ("kd.teacher=/mine",)) == ["data.root=/d", "model.init=/s"]


def test_cli_takes_overrides_after_options():
    from bench.cli import build_parser

    argv = ["grid", "table1_ja", "kd.cls=false", "--jobs", "2", "--seeds", "1", "--launcher", "slurm",
            "--launcher-opt", "slurm_partition=gpu", "train.threads=1"]
    args = build_parser(argv).parse_args(argv)
    assert (args.grid, args.jobs, args.seeds, args.launcher) == ("table1_ja", 2, 1, "slurm")
    assert args.overrides == ["kd.cls=false", "train.threads=1"] and args.launcher_opt == ["slurm_partition=gpu"]
    assert callable(args.func)


def test_retry_locked_rides_out_a_locked_database():
    from mlflow.exceptions import MlflowException

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise MlflowException("(sqlite3.OperationalError) database is locked", error_code="TEMPORARILY_UNAVAILABLE")
        return "ok"

    assert tracking.retry_locked(flaky, base_delay=0.001) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):  # anything else is not retried
        tracking.retry_locked(lambda: (_ for _ in ()).throw(ValueError("nope")), base_delay=0.001)


def test_seeds_are_values_and_a_seed_override_is_refused(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("seeds: [88, 7, 3]\ncells: {A: {config: c.yaml}}\n", encoding="utf-8")
    assert [j.seed for j in expand(load_grid(str(grid)), seeds=2)] == [88, 7]  # --seeds N: the first N values
    grid.write_text("seeds: 2\ncells: {A: {config: c.yaml}}\n", encoding="utf-8")
    assert load_grid(str(grid)).seeds == (0, 1)  # a count K still means 0..K-1 (the synthetic grids)
    for where in ("overrides: [train.seed=88]\ncells: {A: {config: c.yaml}}",
                  "cells: {A: {config: c.yaml, overrides: [train.seed=5]}}"):
        grid.write_text(f"seeds: 1\n{where}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="train.seed=.*seeds: \\[88\\]"):
            load_grid(str(grid))


def test_a_grid_extends_another_on_another_world(tmp_path):
    """World v3's knob grids: the parent's cells and seeds, their own world and name, the source of both logged."""
    t0 = load_grid("table1_ja_t0")
    parent = load_grid("table1_ja")
    assert t0.cells == parent.cells and t0.seeds == parent.seeds == (0, 1, 2, 3, 4)
    assert t0.name == "table1_ja_t0" and t0.world["preset"] == "small@teacher=0"
    assert "extends: table1_ja.yaml" in t0.source and "cells:" in t0.source
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: c.yaml\ncells: {X: {config: configs/synthetic/kd.yaml}}\n")
    with pytest.raises(ConfigError, match="one level only"):
        load_grid(str(tmp_path / "a.yaml"))
    (tmp_path / "d.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: not a readable YAML grid file"):
        load_grid(str(tmp_path / "d.yaml"))


def test_seed_in_an_override_becomes_each_job_s_seed_and_other_braces_stay(tmp_path):
    grid = tmp_path / "paired.yaml"
    grid.write_text("name: paired\nseeds: [3, 7]\noverrides: ['kd.teacher=t/seed{seed}/oscar']\n"
                    "cells: {KD: {config: c.yaml, overrides: ['model.from_scratch={hidden_size: 32}', 'x=a{seed}b']}}\n")
    jobs = expand(load_grid(str(grid)))
    assert [j.seed for j in jobs] == [3, 7]
    for j in jobs:
        assert j.overrides[:3] == (f"kd.teacher=t/seed{j.seed}/oscar", "model.from_scratch={hidden_size: 32}",
                                   f"x=a{j.seed}b")
