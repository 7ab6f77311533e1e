"""A real two-node launch on one machine (issue 27): two torchrun agents, `--nnodes 2 --nproc_per_node 1`, one per
`--node_rank`, meeting at 127.0.0.1 (static rendezvous, gloo on the CPU), train the tiny world to the same weights as
`torchrun --standalone --nproc_per_node 2`; only global rank 0 writes the run folder (cvil.train.distributed), and a
node that sees another output_dir stops both nodes at start with one line (`check_shared_folders`)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train.test_runs import _assert_same_weights, _weights

TIMEOUT_S = 300  # a hang (e.g. a node waiting for a peer that died) fails the test instead of blocking the suite
# the DDP-equivalence run of test_runs (world size 2, 8 rows per process per step)
COMMON = ("stages=[{name: s, dataset: vg, lang: ja, epochs: 2, lr: 5.0e-4, select: last}]",
          "data.max_train_examples=96", "evaluate=[]", "data.batch_size=8")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*launch: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch]


def _cvil_train(config: Path, overrides: list[str]) -> list[str]:
    return ["-m", "cvil", "train", "--config", str(config), *overrides]


def _node(node_rank: int, port: int) -> list[str]:
    return _torchrun("--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(node_rank),
                     "--master_addr", "127.0.0.1", "--master_port", str(port))


def _launch(tmp_path: Path, name: str, commands: list[list[str]]) -> list[tuple[int, str, Path]]:
    """Start `commands` concurrently, each in an empty folder of its own (a write relative to the working directory
    shows there), and wait at most TIMEOUT_S for all: [(exit code, stderr, working directory)]. Past the timeout
    every process group still running is killed and the test fails with their stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun sets it only with several processes per node
    started = []
    for i, command in enumerate(commands):
        cwd = tmp_path / f"{name}-cwd{i}"
        cwd.mkdir()
        log = tmp_path / f"{name}-{i}.stderr"
        with open(log, "wb") as err:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)  # its own group: the kill reaches torchrun's workers
        started.append((proc, log, cwd))
    deadline = time.monotonic() + TIMEOUT_S
    hung = []
    for proc, _, _ in started:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            hung.append(proc)
    for proc in hung:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    results = [(proc.returncode, log.read_text(errors="replace"), cwd) for proc, log, cwd in started]
    assert not hung, f"{name}: still running after {TIMEOUT_S} s, killed:\n" + "\n---\n".join(
        err[-3000:] for _, err, _ in results)
    return results


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.slow
@pytest.mark.distributed
def test_two_nodes_of_one_process_train_as_one_node_of_two(overrides_for, synthetic_config, tmp_path):
    config = synthetic_config("baseline.yaml")
    standalone, nodes = tmp_path / "standalone", tmp_path / "nodes"
    (one,) = _launch(tmp_path, "standalone", [
        _torchrun("--standalone", "--nnodes", "1", "--nproc_per_node", "2")
        + _cvil_train(config, overrides_for(standalone, *COMMON))])
    assert one[0] == 0, one[1][-3000:]
    port = _free_port()
    both = _launch(tmp_path, "nodes", [_node(rank, port) + _cvil_train(config, overrides_for(nodes, *COMMON))
                                       for rank in (0, 1)])
    for rank, (code, err, _) in enumerate(both):
        assert code == 0, f"node {rank} exited {code}:\n{err[-3000:]}"

    _assert_same_weights(_weights(standalone), _weights(nodes))  # bitwise: the same ranks, data and reductions
    # Only global rank 0 writes the run folder: the two-node run holds exactly the files of the one-node run (whose
    # rank 0 wrote them all; a file of node 1's, e.g. a per-rank log or checkpoint, would be an extra), and no
    # process wrote beside it into its working directory.
    assert (nodes / "checkpoints" / "last.pt").is_file() and (nodes / "final" / "model.safetensors").is_file()
    assert _files(nodes) == _files(standalone)
    assert not (nodes / "run.lock").exists()  # rank 0 released it at the end
    for _, _, cwd in (one, *both):
        assert not any(cwd.iterdir()), f"{cwd} holds {sorted(_files(cwd))}"
    assert not list(tmp_path.rglob(".cvil-shared-check-*"))  # the start-time check cleaned up after itself


@pytest.mark.slow
@pytest.mark.distributed
def test_a_node_with_another_output_dir_stops_both_nodes_with_one_line(overrides_for, synthetic_config, tmp_path):
    """Node 1's output_dir is a local folder, not node 0's: every rank stops at start (before training, before any
    checkpoint) with one line naming the key, node 0's folder, rank 1 and its host, and node 1's folder; each worker
    exits 2 (a cvil usage error), which its torchrun agent reports (the agent itself exits 1: ChildFailedError)."""
    config = synthetic_config("baseline.yaml")
    shared, local = tmp_path / "shared" / "run", tmp_path / "node1-local" / "run"
    local.mkdir(parents=True)
    port = _free_port()
    both = _launch(tmp_path, "nodes", [_node(rank, port) + _cvil_train(config, overrides_for(out, *COMMON))
                                       for rank, out in ((0, shared), (1, local))])
    expected = (f"cvil train: output_dir {shared} is not shared between the nodes: rank 1 on host "
                f"{socket.gethostname()} does not see the file rank 0")
    for rank, (code, err, _) in enumerate(both):
        assert code != 0, f"node {rank} exited 0:\n{err[-3000:]}"
        lines = [line for line in err.splitlines() if line.startswith("cvil train: ")]
        assert len(lines) == 1 and lines[0].startswith(expected), f"node {rank}:\n{err[-3000:]}"
        assert str(local) in lines[0], lines[0]  # node 1's own folder, so the two can be compared
        assert re.search(r"exitcode\s*: 2\b", err), f"node {rank}: the worker's exit code is not 2:\n{err[-3000:]}"
    assert not any(shared.iterdir()) and not any(local.iterdir())  # nothing written: no marker, no checkpoint
