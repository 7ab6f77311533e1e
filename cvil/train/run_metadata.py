"""Where a run's numbers came from, in the form MLflow's run list shows: datasets, source, model.

* Datasets: one MLflow dataset input per (dataset folder, split) the run reads, context `train`, `val` or `test`,
  named `<folder>/<split>` (e.g. `vg/train`), with a digest of the split's QLA file (its bytes) and of its region
  features (the per-image files' names and sizes, or the packed store's index and sizes: hashing GBs of
  features per run would cost minutes). Two runs with the same digest read the same questions and features.
* Source: MLflow's own source tags (command line, git commit, user), so the Source column is not empty.
* Environment: the library versions and thread settings the numbers depend on (`environment_tags`).
* The final model is logged by `final_eval.finish_run` as a LoggedModel pointing at `<output_dir>/final`.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import json
import os
import sys
from pathlib import Path

from cvil import tracking_schema as schema
from cvil.config import RunConfig
from cvil.data import layout

_CHUNK = 1 << 20
DIGEST_CHARS = 16  # MLflow's dataset digest column holds at most 36 characters


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def features_digest(folder: Path, split: str) -> tuple[str, str]:
    """(digest, location) of a split's region features: the per-image .pt folder (the source of truth) when there
    is one, else the packed store (its index and its files' sizes). Training packs the .pt folder on first use, so
    preferring it keeps the digest the same before and after packing. This order is on purpose the reverse of what
    training reads (`cvil.data.split_features.open_split_features`, the owner of "current store, else .pt files")."""
    pt_dir = layout.feature_dir(folder, split)
    packed = layout.packed_store_path(folder, split)
    h = hashlib.sha256()
    if pt_dir.is_dir():
        with os.scandir(pt_dir) as it:
            for name, size in sorted((e.name, e.stat().st_size) for e in it if e.is_file()):
                h.update(f"{name}:{size}\n".encode())
        return h.hexdigest(), str(pt_dir)
    if (packed / "index.json").is_file():
        h.update(file_digest(packed / "index.json").encode())
        for entry in sorted(p for p in packed.iterdir() if p.is_file() and p.name != "index.json"):
            h.update(f"{entry.name}:{entry.stat().st_size}".encode())
    return h.hexdigest(), str(packed)


def split_input(folder: Path, split: str, context: str) -> dict[str, str] | None:
    """One dataset input (plain data for `Tracker.log_datasets`), or None when the split has no QLA file."""
    qla = layout.qla_path(folder, split)
    if not qla.is_file():
        return None
    qla_digest = file_digest(qla)
    feat_digest, feat_location = features_digest(folder, split)
    digest = hashlib.sha256(f"{qla_digest}{feat_digest}".encode()).hexdigest()[:DIGEST_CHARS]
    profile = {"qla_file": str(qla.resolve()), "qla_sha256": qla_digest, "qla_bytes": qla.stat().st_size,
               "features": str(Path(feat_location).resolve()), "features_digest": feat_digest[:DIGEST_CHARS]}
    return {"name": f"{folder.name}/{split}", "digest": digest, "context": context,
            "source": json.dumps({"uri": str(qla.resolve())}), "profile": json.dumps(profile)}


def dataset_inputs(cfg: RunConfig) -> list[dict[str, str]]:
    """Every (dataset, split) the run trains on, validates on (each stage's folder) and scores at the end."""
    wanted: list[tuple[str, str]] = []
    for stage in cfg.stages:
        wanted += [(stage.dataset, "train"), (stage.dataset, "val")]
    if cfg.stages:
        wanted += [(cfg.stages[-1].dataset, split) for split in cfg.evaluate]
    out, seen = [], set()
    for dataset, split in wanted:
        if (dataset, split) in seen:
            continue
        seen.add((dataset, split))
        item = split_input(Path(cfg.data.root) / dataset, split, split)
        if item is not None:
            out.append(item)
    return out


def world_tags(cfg: RunConfig) -> dict[str, str]:
    """`cvil.world` (`cvil.data.synth.manifest.world_identity`) when `data.root` is a synthetic world (its
    `world.json` names the preset and seed), so runs on different worlds never look alike in the store; nothing for
    real data."""
    from cvil.data.synth.manifest import world_identity

    manifest = Path(cfg.data.root) / "world.json"
    try:
        built = json.loads(manifest.read_text(encoding="utf-8"))
        return {schema.WORLD: world_identity(str(built["preset"]), int(built.get("seed", 0)))}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _command() -> str:
    """How this process was started, as a user would type it (`python -m cvil`, `cvil-bench`, ...)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if argv0.name == "__main__.py":
        return f"python -m {argv0.parent.name}"
    if argv0.name == "cli.py":
        return f"python -m {argv0.parent.name}.cli"
    return argv0.name


def source_tags(git_commit: str) -> dict[str, str]:
    """MLflow's source tags: the command (the Source column shows it as a name, so without paths: the config file's
    name only), the full command line as `cvil.command`, the commit, and who ran it."""
    args = sys.argv[1:]
    name = [_command(), *args[:1]]
    if "--config" in args[:-1]:
        name += ["--config", Path(args[args.index("--config") + 1]).name]
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": " ".join(name),
            schema.COMMAND: " ".join([_command(), *args])[:5000]}
    if git_commit and git_commit != "unknown":
        tags["mlflow.source.git.commit"] = git_commit.split("+", 1)[0]
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):
        pass
    return tags


def environment_tags() -> dict[str, str]:
    """The installed versions of `schema.LIBRARIES` and this process's thread settings (torch's intra- and inter-op
    pools, the environment variables that size them): a table whose runs disagree on them is not reproducible as one
    environment. Called after `train.threads` is applied."""
    import torch

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {**{schema.library_tag(name): version(name) for name in schema.LIBRARIES},
            schema.THREADS_INTRA_OP: str(torch.get_num_threads()),
            schema.THREADS_INTER_OP: str(torch.get_num_interop_threads()),
            **{schema.thread_env_tag(var): os.environ.get(var, schema.UNSET) for var in schema.THREAD_ENV_VARS}}
