"""Issue 19 (core): nothing lost, nothing silent — resume of finished / final-killed runs, refused re-runs, configs
checked before work, checksummed read-backs, and training refusing no data or wrong data."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cvil.cli import main
from cvil.config import ConfigError, load_config
from cvil.errors import UsageError
from cvil.train.api import run
from cvil.train.checkpointing import CheckpointError, atomic_torch_save, verified_torch_load

SHORT = ("stages.0.epochs=1", "stages.1.epochs=1", "evaluate=[val]")


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final" / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _steps(line: str) -> tuple:
    """A metrics.jsonl row without its timing."""
    return tuple(sorted((k, v) for k, v in json.loads(line).items() if k != "train.samples_per_s"))


def _snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a run folder: modification time and content."""
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(overrides_for, tmp_path_factory):
    """One short BASELINE run, finished, that tests copy before changing anything."""
    from cvil.world import CONFIG_DIR

    out = tmp_path_factory.mktemp("finished") / "run"
    cfg = load_config(CONFIG_DIR / "synthetic" / "baseline.yaml", overrides_for(out, *SHORT))
    metrics = run(cfg)
    return out, metrics


# ---------------------------------------------------------------------------------------------- resume


def test_resuming_a_finished_run_changes_nothing(overrides_for, synthetic_config, tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(
        out, *SHORT, "evaluate=[val,test]", "tracking.enabled=true", f"tracking.uri={mlflow_store}"))
    first = run(cfg)
    before = _snapshot(out)
    again = run(cfg, resume=True)
    assert again == first
    assert _snapshot(out) == before  # no new final/, predictions, metrics rows or config
    client = MlflowClient(mlflow_store)
    (only,) = client.search_runs([client.get_experiment_by_name("cvil").experiment_id])
    assert only.info.status == "FINISHED"
    assert len(client.get_metric_history(only.info.run_id, "test.accuracy")) == 1  # one set of test metrics


KILL_DURING_FINAL_SAVE = """
import os, signal, sys
from pathlib import Path
from cvil.models.oscar import OscarVQA

def dying_save(self, folder, *args, **kwargs):  # the final save has begun: a partial file, then SIGKILL
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "model.safetensors").write_bytes(b"partial")
    os.kill(os.getpid(), signal.SIGKILL)

OscarVQA.save_pretrained = dying_save
from cvil.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_run_killed_during_the_final_save_finishes_from_its_last_checkpoint(overrides_for, synthetic_config,
                                                                             finished_run, tmp_path):
    straight, straight_metrics = finished_run
    killed = tmp_path / "killed"
    args = [sys.executable, "-c", KILL_DURING_FINAL_SAVE, "train", "--config", str(synthetic_config("baseline.yaml")),
            *overrides_for(killed, *SHORT)]
    proc = subprocess.run(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["progress"]["stage"] == 2
    assert not (killed / "final_metrics.json").exists()

    metrics = run(load_config(synthetic_config("baseline.yaml"), overrides_for(killed, *SHORT)), resume=True)
    assert _same(_weights(killed), _weights(straight))  # not the untrained student init
    assert metrics == straight_metrics


KILL_DURING_BACKGROUND_SAVE = """
import json, os, signal, sys, threading
import torch

real_save, saves = torch.save, []

def save(obj, f, *args, **kwargs):  # the checkpoint thread's torch.save: log each save; kill the process in the 3rd
    if threading.current_thread().name == "cvil-checkpoint":
        saves.append(obj["progress"])
        with open(os.environ["SAVES_LOG"], "a") as log:
            log.write(json.dumps(obj["progress"]) + "\\n")
        if len(saves) == 3:
            f.write(b"PK\\x03\\x04 half a checkpoint")  # the temporary file is being written...
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # ... when the machine goes down
    return real_save(obj, f, *args, **kwargs)

torch.save = save
from cvil.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_run_killed_during_a_background_save_resumes_from_the_previous_checkpoint(
        overrides_for, synthetic_config, finished_run, tmp_path):
    straight, straight_metrics = finished_run
    killed, saves_log = tmp_path / "killed", tmp_path / "saves.jsonl"
    args = [sys.executable, "-c", KILL_DURING_BACKGROUND_SAVE, "train", "--config",
            str(synthetic_config("baseline.yaml")), *overrides_for(killed, *SHORT)]
    proc = subprocess.run(args, env={**os.environ, "OMP_NUM_THREADS": "1", "SAVES_LOG": str(saves_log)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    logged = [json.loads(line) for line in saves_log.read_text().splitlines()]
    assert len(logged) == 3
    ckpt = killed / "checkpoints" / "last.pt"
    assert (killed / "checkpoints" / "last.pt.tmp").read_bytes().startswith(b"PK")  # killed mid-write
    assert verified_torch_load(ckpt)["progress"] == logged[1]  # the previous checkpoint, whole and verified

    metrics = run(load_config(synthetic_config("baseline.yaml"), overrides_for(killed, *SHORT)), resume=True)
    assert _same(_weights(killed), _weights(straight))
    assert metrics == straight_metrics
    assert not (killed / "checkpoints" / "last.pt.tmp").exists()


def test_a_moved_run_folder_resumes(finished_run, overrides_for, synthetic_config, tmp_path):
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(finished_run[0], moved)
    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(moved, *SHORT))
    assert run(cfg, resume=True) == finished_run[1]  # before: "written by a run with a different config"


def _finished_copy_with_hash(finished_run, overrides_for, synthetic_config, tmp_path, digest):
    """A copy of the finished run whose checkpoint claims to come from a config with hash `digest`."""
    from cvil.config import config_hash

    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(out, *SHORT))
    ckpt = out / "checkpoints" / "last.pt"
    state = verified_torch_load(ckpt)
    state["progress"]["config_hash"] = digest(cfg) if callable(digest) else digest
    atomic_torch_save(state, ckpt)
    assert verified_torch_load(ckpt)["progress"]["config_hash"] == state["progress"]["config_hash"]
    assert state["progress"]["config_hash"] != config_hash(cfg)
    return cfg


def test_a_checkpoint_of_older_cvil_still_resumes(finished_run, overrides_for, synthetic_config, tmp_path):
    from cvil.config import config_hash

    cfg = _finished_copy_with_hash(finished_run, overrides_for, synthetic_config, tmp_path,
                                   lambda c: config_hash(c, with_output_dir=True))  # older cvil hashed output_dir too
    assert run(cfg, resume=True) == finished_run[1]


def test_a_checkpoint_of_another_config_is_refused(finished_run, overrides_for, synthetic_config, tmp_path):
    from cvil.train.model_setup import ResumeError

    cfg = _finished_copy_with_hash(finished_run, overrides_for, synthetic_config, tmp_path, "0" * 64)
    with pytest.raises(ResumeError, match="written by a run with a different config"):
        run(cfg, resume=True)


# ------------------------------------------------------------------------------------------ output_dir


def test_a_second_run_into_the_same_output_dir_is_refused_unless_overwrite(overrides_for, synthetic_config,
                                                                          finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    rows_before = (out / "metrics.jsonl").read_text().splitlines()
    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(out, *SHORT))
    with pytest.raises(UsageError, match=rf"output_dir {out} already holds a run \(config.yaml, metrics.jsonl, "
                                         r"final_metrics.json, checkpoints, stages, final, predictions\): pass "
                                         r"--resume to continue it, --overwrite to replace it"):
        run(cfg)
    assert (out / "metrics.jsonl").read_text().splitlines() == rows_before
    with pytest.raises(UsageError, match="contradict"):
        run(cfg, resume=True, overwrite=True)
    assert run(cfg, overwrite=True) == finished_run[1]
    rows_after = (out / "metrics.jsonl").read_text().splitlines()
    assert [_steps(r) for r in rows_after] == [_steps(r) for r in rows_before]  # replaced, not appended to


def test_train_cli_refuses_an_existing_run_in_one_line(finished_run, overrides_for, synthetic_config, capsys):
    code = main(["train", "--config", str(synthetic_config("baseline.yaml")),
                 *overrides_for(finished_run[0], *SHORT)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "already holds a run" in err and "--overwrite" in err


# ------------------------------------------------------------------------------------ config before work


@pytest.mark.parametrize("override, message", [
    ("evaluate=[vall]", "evaluate[0]: unknown name 'vall'; did you mean 'val'?"),
    ("schedule=basline", "schedule: unknown name 'basline'; did you mean 'baseline'?"),
    ("stages.0.epochs=-1", "stages.0.epochs: expected > 0"),
    ("stages.1.epochs=0", "stages.1.epochs: expected > 0"),
    ("data.max_regions=0", "data.max_regions: expected >= 1, got 0"),
    ("data.batch_size=0", "data.batch_size: expected >= 1, got 0"),
    ("train.grad_accum=0", "train.grad_accum: expected >= 1, got 0"),
    ("kd.layers=[99]", "kd.layers: expected distinct layers in 1..12"),
    ("kd.layers=[3,3]", "kd.layers: expected distinct layers in 1..12"),
    ("train.log_every=-1", "train.log_every: expected >= 0"),
])
def test_bad_values_are_refused_when_the_config_loads(synthetic_config, override, message):
    with pytest.raises(ConfigError) as err:
        load_config(synthetic_config("baseline.yaml"), [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_problem_is_reported_at_once(synthetic_config):
    with pytest.raises(ConfigError) as err:
        load_config(synthetic_config("baseline.yaml"), ["data.batch_size=0", "train.grad_accum=0"])
    assert "data.batch_size" in str(err.value) and "train.grad_accum" in str(err.value)


def test_cli_prints_a_config_error_as_one_line_before_reading_any_data(synthetic_config, capsys, tmp_path):
    code = main(["train", "--config", str(synthetic_config("baseline.yaml")), "data.root=/nonexistent",
                 f"output_dir={tmp_path / 'out'}", "evaluate=[vall]"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "did you mean 'val'" in err
    assert not (tmp_path / "out").exists()


def test_cli_prints_every_preflight_problem_on_one_line(synthetic_config, capsys, tmp_path):
    code = main(["train", "--config", str(synthetic_config("baseline.yaml")), "data.root=/nonexistent",
                 "model.init=/nonexistent/init", f"output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("cvil train: invalid run configuration: - data.root")
    assert "model.init '/nonexistent/init' does not exist" in err and not (tmp_path / "out").exists()


def test_a_bug_in_the_train_command_keeps_its_traceback(synthetic_config, monkeypatch, tmp_path):
    """Only `CvilError`s become one-line messages; before, any ValueError or FileNotFoundError did, bugs included."""
    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("cvil.train.preflight.check_run", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["train", "--config", str(synthetic_config("baseline.yaml")), f"output_dir={tmp_path / 'out'}"])


def test_kd_layers_are_checked_against_the_models_before_they_are_built(overrides_for, synthetic_config, tmp_path):
    cfg = load_config(synthetic_config("kd.yaml"), overrides_for(tmp_path / "kd", "kd.layers=[1,2,3,4]"))
    with pytest.raises(ConfigError, match=r"kd.layers \[1, 2, 3, 4\] do not fit kd.teacher \(4 layers\).*collapse"):
        run(cfg)
    assert not (tmp_path / "kd").exists()


def test_api_run_checks_configs_built_in_code(overrides_for, synthetic_config, tmp_path):
    import dataclasses

    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(tmp_path / "x", *SHORT))
    bad = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=0))
    with pytest.raises(ConfigError, match="data.batch_size: expected >= 1"):
        run(bad)


def test_resume_and_overrides_may_come_in_any_order(synthetic_config):
    from cvil.cli import build_parser
    from cvil.cli_args import parse_args as _parse

    argv = ["train", "--config", str(synthetic_config("baseline.yaml")), "train.seed=3", "--resume",
            "data.batch_size=8", "--trust-unverified"]
    args = _parse(build_parser(argv), argv)
    assert args.resume and args.trust_unverified and args.overrides == ["train.seed=3", "data.batch_size=8"]
    with pytest.raises(SystemExit):  # anything else unrecognised is still argparse's error
        _parse(build_parser(argv + ["--nope"]), argv + ["--nope"])


# --------------------------------------------------------------------------------------------- checksums


def test_a_checkpoint_without_its_checksum_is_refused_unless_trusted(tmp_path):
    path = tmp_path / "last.pt"
    atomic_torch_save({"w": torch.arange(3)}, path)
    path.with_name("last.pt.sha256").unlink()
    with pytest.raises(CheckpointError, match=rf"{path} has no checksum file last.pt.sha256.*--trust-unverified"):
        verified_torch_load(path)
    assert torch.equal(verified_torch_load(path, trust_unverified=True)["w"], torch.arange(3))


def test_resume_without_the_checksum_needs_trust_unverified(finished_run, overrides_for, synthetic_config, tmp_path,
                                                            capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    (out / "checkpoints" / "last.pt.sha256").unlink()
    argv = ["train", "--config", str(synthetic_config("baseline.yaml")), *overrides_for(out, *SHORT), "--resume"]
    assert main(argv) == 2
    assert "has no checksum file last.pt.sha256" in capsys.readouterr().err
    assert main(argv + ["--trust-unverified"]) == 0


def test_predict_verifies_the_final_model_checksum(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    assert main(["predict", "--checkpoint", str(out), "--split", "val", "--out", str(tmp_path / "ok.json")]) == 0
    model = out / "final" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    model.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert f"{model} does not match its checksum in {out / 'final' / 'SHA256SUMS'}" in err and err.count("\n") == 1
    (out / "final" / "SHA256SUMS").unlink()
    assert main(["predict", "--checkpoint", str(out), "--split", "val"]) == 2
    assert "--trust-unverified" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- bad data


def _world_copy(tiny_world, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_world.root / "vg", root / "vg")
    return root


def _edit_train(root: Path, edit) -> Path:
    path = root / "vg" / "train2014_qla_mrcnn.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(edit(rows), ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda rows: [], "no rows to train on (an empty split)"),
    (lambda rows: [{**r, "an": [], "s": []} for r in rows], "no labelled rows to train on (128 rows, all without"),
])
def test_training_on_no_data_is_an_error_and_validate_says_so(tiny_world, overrides_for, synthetic_config, tmp_path,
                                                             edit, message):
    from cvil.data.validate import validate_dataset
    from cvil.data.errors import DataSetupError

    root = _world_copy(tiny_world, tmp_path)
    path = _edit_train(root, edit)
    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(tmp_path / "out", *SHORT, f"data.root={root}"))
    with pytest.raises(DataSetupError, match=re.escape(f"{path}: {message}")):
        run(cfg)
    assert not (tmp_path / "out" / "final").exists()
    report = validate_dataset(root / "vg")
    assert any(e.startswith(f"{path}: all rows: expected at least one labelled row to train on") for e in report.errors)


def test_an_out_of_range_label_id_names_file_and_row(tiny_world, overrides_for, synthetic_config, tmp_path):
    from cvil.data.errors import DataFormatError
    from cvil.data.label_maps import load_label_maps

    root = _world_copy(tiny_world, tmp_path)
    num_labels = len(load_label_maps(root / "vg").label2ans)  # (a negative id is refused when the file is read)
    path = _edit_train(root, lambda rows: [*rows[:5], {**rows[5], "an": [num_labels], "s": [1.0]}, *rows[6:]])
    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(tmp_path / "out", *SHORT, f"data.root={root}"))
    with pytest.raises(DataFormatError, match=rf"{path}: row 5 field 'an': expected label ids in \[0, {num_labels}\), "
                                              rf"got label id {num_labels}"):
        run(cfg)


def test_rows_dropped_by_the_coverage_filter_are_logged_and_tracked(overrides_for, synthetic_config, tmp_path,
                                                                   mlflow_store, caplog):
    from mlflow.tracking import MlflowClient

    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(
        tmp_path / "run", *SHORT, "evaluate=[]", "tracking.enabled=true", f"tracking.uri={mlflow_store}"))
    with caplog.at_level(logging.INFO, logger="cvil.train.trainer"):
        run(cfg)
    assert ("stage 0 jvg_head: training on 96 rows; the coverage filter dropped 32 of 128 train rows (25.0%): "
            "32 empty `an`: no answer in the label set") in caplog.text
    client = MlflowClient(mlflow_store)
    (only,) = client.search_runs([client.get_experiment_by_name("cvil").experiment_id])
    tags = only.data.tags  # bookkeeping as tags, per stage: no `data.*` curves leading the chart view
    assert tags["data.jvg_head.train.dropped_rows"] == "32" and tags["data.jvg_head.train.rows"] == "96"
    assert tags["data.jvg_head.train.dropped_pct"] == "25.0" and "data.jvg_head.val.dropped_rows" in tags
    assert not [k for k in only.data.metrics if k.startswith("data.")]


def test_an_edited_feature_file_rebuilds_the_packed_store(tiny_world, tmp_path, caplog):
    from cvil.data import layout
    from cvil.train.data_setup import feature_store
    from cvil.train.distributed import DistInfo

    folder = _world_copy(tiny_world, tmp_path) / "vg"
    shutil.rmtree(folder / "packed", ignore_errors=True)
    first = feature_store(folder, "train", DistInfo())
    img_id = first.ids()[3]
    source = layout.feature_dir(folder, "train") / f"{img_id}.pt"
    edited = torch.full_like(torch.load(source, weights_only=True), 0.5)
    torch.save(edited, source)
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))  # a later mtime, surely
    from cvil.data.validate import validate_dataset

    assert any("out of date" in w and "per-image files were checked" in w
               for w in validate_dataset(folder).warnings)  # validate reads what training will read
    with caplog.at_level(logging.WARNING, logger="cvil.train.data_setup"):
        again = feature_store(folder, "train", DistInfo())
    assert "is out of date" in caplog.text and "rebuilding it" in caplog.text
    values, n = again.get(img_id, 100)
    assert torch.equal(values[:n], edited[:n].to(values.dtype))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cvil.train.data_setup"):
        feature_store(folder, "train", DistInfo())  # unchanged since: used as it is
    assert "out of date" not in caplog.text


def test_a_wrong_feature_dim_names_the_odd_file_in_validate_and_training(tiny_world, overrides_for, synthetic_config,
                                                                         tmp_path):
    from cvil.data.errors import DataFormatError
    from cvil.data.validate import validate_dataset

    root = _world_copy(tiny_world, tmp_path)
    shutil.rmtree(root / "vg" / "packed", ignore_errors=True)
    first = sorted((root / "vg" / "train").glob("*.pt"))[0]  # the odd file sorts first: it used to set the width
    torch.save(torch.randn(5, 7), first)
    errors = validate_dataset(root / "vg").errors
    assert any(e.startswith(f"{first}: img_id {first.stem}: expected feature dim 32 (as ") and e.endswith(
        "other images), got dim 7") for e in errors), errors
    cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(tmp_path / "out", *SHORT, f"data.root={root}"))
    with pytest.raises(DataFormatError, match=re.escape(f"{first}: img_id {first.stem}: expected feature dim 32")):
        run(cfg)


def test_api_run_refuses_what_cvil_train_refuses(synthetic_config, tmp_path):
    """One pre-run gate, entered by `api.run` (issue 24): a missing data.root was a traceback naming the tokenizer
    through `api.run` (cvil demo, grids, searches) while `cvil train` listed every problem."""
    cfg = load_config(synthetic_config("baseline.yaml"), ["data.root=/nonexistent", "model.init=/nonexistent/init",
                                                          f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match=r"(?s)invalid run configuration:\n  - data.root '/nonexistent' does not exist"
                                          r".*model.init '/nonexistent/init' does not exist"):
        run(cfg)
    assert not (tmp_path / "out").exists()
