"""`--launcher slurm`: the sbatch script and the command a job runs carry the GPUs, CPUs, nodes and torchrun prefix of
the grid or the flags; without Slurm's tools the grid stops with one line. A fake `sbatch`/`srun` on PATH records
what would have been submitted (no cluster needed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.grid import launchers
from bench.grid.launchers import SlurmLauncher, run_on_node

FAKE_SBATCH = """#!/bin/sh
cp "$1" "$CVIL_TEST_SUBMITTED"
echo "Submitted batch job 4242"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", FAKE_SBATCH), ("srun", "#!/bin/sh\nexit 0\n"),
                       ("scontrol", "#!/bin/sh\necho nodeA\necho nodeB\n")):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CVIL_TEST_SUBMITTED", str(tmp_path / "submitted.sh"))
    return tmp_path


def _submitted_call(folder: Path):
    from submitit.core.utils import DelayedSubmission

    (pickled,) = folder.glob("4242*_submitted.pkl")
    return DelayedSubmission.load(pickled)


def test_sbatch_script_and_command_carry_gpus_cpus_nodes_and_torchrun(fake_slurm):
    folder = fake_slurm / "submitit"
    launcher = SlurmLauncher(str(folder), {"gpus_per_node": 4, "cpus_per_task": 8, "nodes": 2,
                                           "slurm_partition": "gpu"})
    cmd = [sys.executable, "-m", "cvil", "train", "--config", "configs/paper/kd_ja.yaml", "train.seed=88"]
    launcher.start(cmd, cwd=str(fake_slurm), env={}, stdout_path=str(fake_slurm / "job.out"),
                   stderr_path=str(fake_slurm / "job.err"))
    script = (fake_slurm / "submitted.sh").read_text()
    for flag in ("#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=8", "#SBATCH --nodes=2",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --partition=gpu"):
        assert flag in script
    call = _submitted_call(folder)
    assert call.function is run_on_node
    job_cmd = call.args[0]
    assert job_cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert {"--nnodes=2", "--nproc_per_node=4", "--rdzv_backend=c10d"} <= set(job_cmd)
    assert job_cmd[-6:] == ["-m", "cvil", "train", "--config", "configs/paper/kd_ja.yaml", "train.seed=88"]


def test_one_node_uses_standalone_torchrun_with_the_given_prefix(fake_slurm):
    launcher = SlurmLauncher(str(fake_slurm / "submitit"), {"gpus_per_node": 4, "torchrun": "torchrun"})
    assert launcher.resources.command([sys.executable, "-m", "cvil", "train"]) == [
        "torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=4", "-m", "cvil", "train"]
    one_gpu = SlurmLauncher(str(fake_slurm / "submitit"), {"gpus_per_node": 1})
    assert one_gpu.resources.command([sys.executable, "-m", "cvil", "train"]) == [sys.executable, "-m", "cvil", "train"]


def test_run_on_node_fills_in_the_rendezvous_and_keeps_node_logs_apart(fake_slurm, monkeypatch):
    seen = {}
    monkeypatch.setattr(launchers, "run_command", lambda cmd, cwd, env, out, err: seen.update(cmd=cmd, out=out) or 0)
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[A-B]")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NODEID", "1")
    res = launchers.SlurmResources(gpus_per_node=4, nodes=2)
    assert run_on_node(res.command(["python", "-m", "cvil", "train"]), ".", {}, "j.out", "j.err") == 0
    assert "--rdzv_endpoint=nodeA:29500" in seen["cmd"] and "--rdzv_id=77" in seen["cmd"]
    assert seen["out"] == "j.out.node1"


def test_the_paper_grid_asks_for_four_gpus_and_flags_override_it(fake_slurm):
    from bench.grid.runner import GridRunner
    from bench.grid.spec import load_grid

    runner = GridRunner(load_grid("paper_table3_ablations"), launcher="slurm", launcher_options={"cpus_per_task": 4},
                        runs_dir=str(fake_slurm / "runs"), uri=f"sqlite:///{fake_slurm / 'mlflow.db'}")
    assert runner.launcher.resources.gpus_per_node == 4 and runner.launcher.resources.cpus_per_task == 4


def test_missing_slurm_tools_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main(["grid", "paper_table3_ablations", "--launcher", "slurm", "--runs-dir", str(tmp_path / "runs"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--launcher slurm needs Slurm's sbatch and srun on PATH" in err[0]
    assert main(["grid", "paper_table3_ablations", "--gpus-per-node", "2", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "--gpus-per-node applies to --launcher slurm, not local" in capsys.readouterr().err
