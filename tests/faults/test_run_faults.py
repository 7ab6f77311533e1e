"""A hostile user, train side: run folders cvil will not destroy, write through, misread or leave open.

1. `--overwrite` replaces only a folder marked as a cvil run (`.cvil-run.json`), and there only what cvil wrote
   (before: `final/thesis.tex`, `predictions/results.csv` and the user's own `config.yaml` were deleted).
2. A symlink anywhere in a run folder stops the run before anything is written (before: a planted link made cvil
   overwrite the file it points to, outside the run).
3. A damaged `final_metrics.json` is one line naming it (before: a JSONDecodeError traceback on `--resume`).
4. A NaN loss stops the run naming the step, the stage and the images, with the last checkpoint intact (before: it
   trained on silently).
5. Model folders cvil wrote are verified against their manifest on every read (before: a corrupted teacher export or
   `model.init` trained with exit 0).
6. A run killed after its final metrics is closed FINISHED in MLflow by `--resume` (before: RUNNING forever).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from cvil.cli import main
from cvil.config import load_config
from cvil.errors import CvilError
from cvil.train import run_layout
from cvil.train.api import run
from cvil.world import CONFIG_DIR

BASELINE = CONFIG_DIR / "synthetic" / "baseline.yaml"
KD = CONFIG_DIR / "synthetic" / "kd.yaml"
SHORT = ("stages.0.epochs=1", "stages.1.epochs=1", "evaluate=[val]")


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _one_line(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished(overrides_for, tmp_path_factory):
    """One short finished BASELINE run (copied by the tests before they change anything) and its metrics."""
    out = tmp_path_factory.mktemp("finished") / "run"
    return out, run(load_config(BASELINE, overrides_for(out, *SHORT)))


@pytest.fixture
def copy_of(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    return out


def _argv(overrides_for, out, *extra) -> list[str]:
    return ["train", "--config", str(BASELINE), *overrides_for(out, *SHORT), *extra]


# ---------------------------------------------------------------------------------- 1. --overwrite


def test_overwrite_refuses_a_folder_without_the_run_marker(overrides_for, tmp_path, capsys):
    out = tmp_path / "thesis"
    for name, text in {"config.yaml": "my: own config\n", "final/thesis.tex": "\\chapter{}",
                       "predictions/results.csv": "a,b\n"}.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _snapshot(out)
    err = _one_line(capsys, _argv(overrides_for, out, "--overwrite"))
    assert f"--overwrite refused: {out / 'config.yaml'} is in {out}, which has no .cvil-run.json marker" in err
    err = _one_line(capsys, _argv(overrides_for, out, "--resume"))  # nor does --resume write over them
    assert f"--resume refused: {out / 'config.yaml'} is in {out}" in err
    assert _snapshot(out) == before


@pytest.mark.parametrize("foreign", ["final/thesis.tex", "predictions/results.csv", "checkpoints/notes.txt",
                                     "stages/1-jvg_full/mine.txt", "stages/plots/a.png", "oscar/x.bin"])
def test_overwrite_refuses_a_run_holding_a_file_cvil_did_not_write(copy_of, overrides_for, capsys, foreign):
    (copy_of / foreign).parent.mkdir(parents=True, exist_ok=True)
    (copy_of / foreign).write_text("mine")
    before = _snapshot(copy_of)
    err = _one_line(capsys, _argv(overrides_for, copy_of, "--overwrite"))
    first = copy_of / ("stages/plots" if foreign.startswith("stages/plots") else foreign)
    assert f"--overwrite refused: {first} was not written by cvil" in err
    assert _snapshot(copy_of) == before


def test_overwrite_removes_only_what_cvil_wrote(copy_of):
    assert json.loads((copy_of / ".cvil-run.json").read_text()) == {"format": "cvil-run", "version": 1}
    (copy_of / "notes.md").write_text("mine")  # beside the run's outputs: never touched
    (copy_of / "checkpoints" / "last.pt.tmp").write_bytes(b"leftover")  # a killed save's temporary is cvil's
    stale = run_layout.replaceable_outputs(copy_of)
    assert {p.name for p in stale} == {"config.yaml", "metrics.jsonl", "final_metrics.json", "checkpoints", "stages",
                                       "final", "predictions"}
    run_layout.remove_outputs(stale)
    assert sorted(p.name for p in copy_of.iterdir()) == [".cvil-run.json", "notes.md"]


def test_a_damaged_marker_is_named(copy_of):
    (copy_of / ".cvil-run.json").write_text("{not json")
    with pytest.raises(run_layout.RunFolderError, match=re.escape(f"{copy_of / '.cvil-run.json'}: not a readable")):
        run_layout.replaceable_outputs(copy_of)


# ---------------------------------------------------------------------------------------- 2. symlinks


@pytest.mark.parametrize("mode", ["--resume", "--overwrite"])
@pytest.mark.parametrize("name", ["config.yaml", "metrics.jsonl", "checkpoints/last.pt", "final", "run.lock",
                                  "stages/1-jvg_full/selection.json"])
def test_a_symlink_in_the_run_folder_stops_the_run_before_it_writes(copy_of, overrides_for, tmp_path, capsys, name,
                                                                    mode):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    link = copy_of / name
    if link.is_dir():
        shutil.rmtree(link)
    link.unlink(missing_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside if name == "final" else outside / "precious.txt")
    before = _snapshot(copy_of)
    err = _one_line(capsys, _argv(overrides_for, copy_of, mode))
    assert f"{link}: a symbolic link inside the run folder {copy_of}" in err
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]
    assert (outside / "precious.txt").read_text() == "precious"
    assert _snapshot(copy_of) == before


def test_a_symlink_in_a_new_output_dir_is_refused_too(overrides_for, tmp_path, capsys):
    out = tmp_path / "new"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("precious")
    (out / "metrics.jsonl").symlink_to(tmp_path / "precious.txt")
    assert "a symbolic link inside the run folder" in _one_line(capsys, _argv(overrides_for, out))
    assert (tmp_path / "precious.txt").read_text() == "precious"


def test_writers_replace_a_symlink_instead_of_following_it(tmp_path):
    from cvil.fileio import atomic_write, tmp_path as tmp_of
    from cvil.tracking_local import JsonlTracker
    from cvil.train.run_lock import RunLock

    target = tmp_path / "precious.txt"
    target.write_text("precious")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").symlink_to(target)
    tmp_of(folder / "final_metrics.json").symlink_to(target)  # a link planted where the temporary goes
    atomic_write(folder / "config.yaml", "a: 1\n")
    atomic_write(folder / "final_metrics.json", "{}")
    assert not (folder / "config.yaml").is_symlink() and (folder / "config.yaml").read_text() == "a: 1\n"
    (folder / "metrics.jsonl").symlink_to(target)
    with pytest.raises(OSError):
        JsonlTracker(folder / "metrics.jsonl").log_metrics({"x": 1.0}, 1)
    (folder / "run.lock").symlink_to(target)
    with pytest.raises(CvilError, match="run.lock is a symbolic link"):
        RunLock(folder).acquire()
    assert target.read_text() == "precious"


# ------------------------------------------------------------------------------- 3. final_metrics.json


@pytest.mark.parametrize("content", ["", '{"val.accuracy": 0.5', "[1, 2]"])
def test_a_damaged_final_metrics_file_is_one_line_naming_it(copy_of, finished, overrides_for, capsys, content):
    done = copy_of / "final_metrics.json"
    done.write_text(content)
    before = _snapshot(copy_of)
    err = _one_line(capsys, _argv(overrides_for, copy_of, "--resume"))
    assert f"{done}: " in err and "delete it to re-run the final evaluation with --resume" in err
    assert _snapshot(copy_of) == before
    done.unlink()  # as the message says: the final evaluation runs again, from the last checkpoint
    assert run(load_config(BASELINE, overrides_for(copy_of, *SHORT)), resume=True) == finished[1]


# --------------------------------------------------------------------------------------- 4. NaN loss


def test_a_nan_loss_stops_the_run_naming_step_stage_and_image(overrides_for, tmp_path, monkeypatch, capsys,
                                                              tiny_world):
    from cvil.train import trainer
    from cvil.train.checkpointing import verified_torch_load

    real, calls = trainer.to_device, []

    def poisoned(batch, device):  # NaN bytes in one image's features, past the store's checks, at step 6
        calls.append(1)
        if len(calls) == 6:
            batch["img_feats"][3, 0, 0] = float("nan")
        return real(batch, device)

    monkeypatch.setattr(trainer, "to_device", poisoned)
    out = tmp_path / "run"
    err = _one_line(capsys, _argv(overrides_for, out, "train.precision=fp32", "train.progress=off",
                                  "train.checkpoint_every_s=0"))  # 6 steps, a checkpoint at step 4
    match = re.search(r"at step 6 \(stage 0 jvg_head\); batch img_ids \[(\d+)\] \(non-finite region features\)", err)
    assert match and ("the training loss is nan" in err or "the gradient norm is nan" in err), err
    assert f"before saving anything of this step (the last checkpoint {out / 'checkpoints' / 'last.pt'}" in err
    assert (tiny_world.root / "vg" / "train" / f"{match.group(1)}.pt").is_file()  # a real image of the world
    state = verified_torch_load(out / "checkpoints" / "last.pt")
    assert state["progress"]["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (out / "final").exists()


def test_fp16_skips_overflowed_steps_but_not_a_nan_loss(tmp_path):
    from cvil.train.loss_guard import NonFiniteLoss, check_step

    args = dict(step=3, stage="0 s", batches=[], dataset=None, checkpoint=tmp_path / "last.pt")
    check_step(float("inf"), {}, precision="fp16", **args)  # the GradScaler's business
    with pytest.raises(NonFiniteLoss, match=r"the gradient norm is inf at step 3 \(stage 0 s\): training stopped"):
        check_step(float("inf"), {}, precision="bf16", **args)
    with pytest.raises(NonFiniteLoss, match="the training loss is nan at step 3"):
        check_step(1.0, {"loss": float("nan")}, precision="fp16", **args)


# ------------------------------------------------------------------------------ 5. manifests on read


def _flip(path: Path, count: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(count):
        data[len(data) // 2 + i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_teacher_export_is_refused(tiny_world, overrides_for, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_world.teacher_dir, teacher)
    assert (teacher / "SHA256SUMS").is_file()  # save_oscar_checkpoint writes one
    _flip(teacher / "pytorch_model.bin", 64)
    message = f"{teacher / 'pytorch_model.bin'} does not match its checksum in {teacher / 'SHA256SUMS'}"
    err = _one_line(capsys, ["train", "--config", str(KD), *overrides_for(tmp_path / "kd", f"kd.teacher={teacher}")])
    assert message in err
    err = _one_line(capsys, ["kd-cache", "--config", str(KD), "--out", str(tmp_path / "cache"),
                             *overrides_for(tmp_path / "kd", f"kd.teacher={teacher}")])
    assert message in err and not (tmp_path / "cache").exists()


def test_a_corrupted_final_model_as_model_init_is_refused(finished, overrides_for, tmp_path, capsys):
    from cvil.train.distributed import DistInfo
    from cvil.train.model_setup import build_student

    init = tmp_path / "init"
    shutil.copytree(finished[0] / "final", init)
    cfg = load_config(BASELINE, overrides_for(tmp_path / "out", *SHORT, f"model.init={init}"))
    build_student(cfg, DistInfo().device)  # intact: loads
    _flip(init / "model.safetensors", 1)
    err = _one_line(capsys, _argv(overrides_for, tmp_path / "out", f"model.init={init}"))
    assert f"{init / 'model.safetensors'} does not match its checksum in {init / 'SHA256SUMS'}" in err
    (init / "SHA256SUMS").unlink()  # no manifest: a downloaded checkpoint, loaded as it is
    build_student(cfg, DistInfo().device)


# --------------------------------------------------------------------------------- 6. left RUNNING


@pytest.mark.slow
def test_resume_closes_a_finished_run_left_running(overrides_for, tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    cfg = load_config(BASELINE, overrides_for(out, *SHORT, "tracking.enabled=true", f"tracking.uri={mlflow_store}"))
    metrics = run(cfg)
    client = MlflowClient(mlflow_store)
    (only,) = client.search_runs([client.get_experiment_by_name("cvil").experiment_id])
    client.update_run(only.info.run_id, status="RUNNING")  # as a SIGKILL right after final_metrics.json leaves it
    before = _snapshot(out)
    assert run(cfg, resume=True) == metrics
    assert client.get_run(only.info.run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(only.info.run_id, "val.accuracy")) == 1
    assert _snapshot(out) == before


def test_closing_a_left_open_run_logs_the_metrics_it_lacks(mlflow_store):
    from mlflow.tracking import MlflowClient

    from cvil.tracking import finish_open_run

    client = MlflowClient(mlflow_store)
    run_id = client.create_run("0").info.run_id
    client.log_metric(run_id, "val.accuracy", 0.5, step=7)
    assert finish_open_run(mlflow_store, run_id, {"val.accuracy": 0.5, "val.bleu": 0.25}, step=7)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.data.metrics == {"val.accuracy": 0.5, "val.bleu": 0.25}
    assert len(client.get_metric_history(run_id, "val.accuracy")) == 1
    assert not finish_open_run(mlflow_store, run_id, {"val.accuracy": 0.5}, step=7)  # closed already: untouched
    assert not finish_open_run(f"sqlite:///{os.getcwd()}/absent.db", run_id, {}, step=0)  # no store made
    assert not Path("absent.db").exists()
