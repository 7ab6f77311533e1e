"""The input path at the paper's scale (DESIGN.md §6): memory per process, open time, KD samples per CPU-second.

`python -m bench.scale --rows N --images M --out FILE.json [--root DIR] [--batches K] [--workers 0,2] [--ranks 2]`
(`nox -s scale`) builds a dataset folder of paper dimensions (generated once into `--root`, reused):

- `N` QLA rows at full size: the tiny synthetic world's train rows (Japanese, English, tags, alignments, answers)
  repeated with fresh `q_id`s, five questions per image (mVQA train: 647,480 questions of 123,287 images, 5.3 each),
  each image's tags a reshuffle of its source row's tags (so the tag texts are as distinct as the images);
- region features of VinVL's size (2054-d, 10 to 50 regions), `M` distinct images packed into a real store, image
  `g` of the rows reading stored image `g mod M` (the bytes read per sample are the real ones, the disk is not).

and measures, each figure in fresh processes that use the training code (`cvil.train.data_setup.split_dataset`, the
KD stage's train split: code-mixed Japanese, KD on CLS, image and tags):

- `open_s`: opening the split (imports excluded), `cold` (no encoded cache: parse the QLA file, encode, write the
  cache; one process) and `warm` (`--ranks` processes at once, as DDP ranks);
- `rss_mb` / `pss_mb` / `uss_mb` per process after opening (`/proc/<pid>/smaps_rollup`), cold and for each warm
  rank, and for DataLoader workers after `--batches` batches (PSS splits shared pages among the processes that map
  them, so it is what a process really adds; RSS counts shared pages in full in every process);
- `kd_samples_per_cpu_s`: KD batches (dataset + collate, code-mixing on, batch 32, shuffled indices) per CPU-second of
  all processes (main + workers), for the batch path (`VQADataset.__getitems__` through the training code's
  `cvil.inputs.loader.FeatureLoader`, whose workers leave the region features to the main process) and the
  per-example path (`__getitem__` + collate of dicts, the path before batching), both in the same process, with
  `--workers` workers each; `ratio_new_over_old` is the figure to compare across machines, not the absolutes.

The JSON goes to `--out` (and stdout). A small variant (`--rows 20000 --images 500`) runs in well under a minute.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DIM, MAX_REGIONS, BATCH = 2054, 50, 32
QUESTIONS_PER_IMAGE = 5
LANG = "ja"
REGIONS = (10, 50)  # VinVL keeps 10..50 boxes per image


# -- the world --------------------------------------------------------------------------------------------------------
class _RandomRegions:
    """A `FeatureSource` of `images` random non-negative images (`REGIONS` boxes of `dim` dims), for `pack_features`."""

    def __init__(self, path: Path, images: int, dim: int, seed: int) -> None:
        self.path, self.images, self.dim, self.seed = path, images, dim, seed

    def ids(self) -> list[int]:
        return list(range(self.images))

    def get(self, img_id: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, img_id])
        n = int(rng.integers(REGIONS[0], REGIONS[1] + 1))
        return np.abs(rng.standard_normal((n, self.dim), dtype=np.float32))


def world_folder(root: Path, rows: int, images: int) -> Path:
    return root / f"vqa-{rows}r-{images}i"


def build_world(root: str | Path, rows: int, images: int, *, seed: int = 0, dim: int = DIM) -> Path:
    """The dataset folder (QLA train file, label maps, packed train store) of `rows` rows over `images` stored
    images; built once (reused when present). Returns the folder."""
    from cvil.data import layout
    from cvil.data.feature_store import pack_features
    from cvil.data.synth.writer import generate

    root = Path(root)
    base = root / "base"
    if not (base / "world.json").is_file():
        generate("tiny", seed, base, force=True)
    folder = world_folder(root, rows, images)
    done = folder / ".complete"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in (layout.ANS2LABEL, layout.LABEL2ANS):
        shutil.copy(base / "vqa" / name, folder / name)
    source = [r for r in json.loads(layout.qla_path(base / "vqa", "train").read_text(encoding="utf-8")) if r["an"]]
    rng = random.Random(seed)
    out = []
    for j in range(rows):
        img = j // QUESTIONS_PER_IMAGE
        row = dict(source[j % len(source)])
        tags = source[img % len(source)]["o"].split(";")
        random.Random(f"{seed}:{img}").shuffle(tags)
        row.update(img_id=img % images, q_id=j + 1, o=";".join(tags))  # image ids share the stored features
        out.append(row)
    rng.shuffle(out)  # questions of one image are not adjacent in the release either
    layout.qla_path(folder, "train").write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    del out
    pack_features(_RandomRegions(folder / "regions", images, dim, seed), layout.packed_store_path(folder, "train"),
                  progress=False)
    done.write_text("")
    return folder


def _tokenizers(root: Path):
    from cvil.data.tokenizers import load_tokenizer

    return load_tokenizer(root / "base" / "tokenizers" / "student"), load_tokenizer(root / "base" / "tokenizers" / "teacher")


# -- one process: open, measure ---------------------------------------------------------------------------------------
def _memory(pid: int | str = "self") -> dict[str, float]:
    """RSS, PSS and USS (private) of a process in MB, from /proc/<pid>/smaps_rollup."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1]) / 1024
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss_mb": round(fields.get("Rss", 0), 1), "pss_mb": round(fields.get("Pss", 0), 1),
            "uss_mb": round(private, 1)}


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def open_split(folder: Path, root: Path):
    """The KD stage's train dataset of `folder` through the training code, and the seconds it took."""
    from cvil.config import DataConfig, KDConfig, StageConfig
    from cvil.train.data_setup import split_dataset
    from cvil.train.distributed import DistInfo

    student, teacher = _tokenizers(root)
    start = time.perf_counter()
    stage = StageConfig(name="kd", dataset=folder.name, lang=LANG, objective="kd")
    data = DataConfig(root=str(folder.parent), max_regions=MAX_REGIONS)
    ds, _ = split_dataset("train", folder=folder, stage=stage, data=data, tokenizer=student, dist=DistInfo(),
                          teacher_tokenizer=teacher, kd=KDConfig(codemix=True), seed=0)
    gc.collect()
    return ds, time.perf_counter() - start


class _PerExample:
    """The dataset without `__getitems__`: the DataLoader then reads one example at a time (the path before)."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.ds[i]


def _throughput(ds, batches: int, workers: int, seed: int = 0) -> dict[str, Any]:
    """KD samples per CPU-second (main + workers) of the batch path and of the per-example path."""
    import torch
    from cvil.inputs.collate import collate
    from cvil.inputs.loader import FeatureLoader

    order = np.random.default_rng(seed).permutation(len(ds))[: batches * BATCH].tolist()
    chunks = [order[k : k + BATCH] for k in range(0, len(order), BATCH)]
    out: dict[str, Any] = {}
    for name, dataset in (("new", ds), ("old", _PerExample(ds))):
        if workers == 0:
            for chunk in chunks:  # a first pass: page cache, tokenizers and the per-example path's tag-walk cache
                collate(dataset.__getitems__(chunk) if name == "new" else [ds[i] for i in chunk])
            start = time.process_time()
            for chunk in chunks:
                collate(dataset.__getitems__(chunk) if name == "new" else [ds[i] for i in chunk])
            cpu, worker_memory = time.process_time() - start, []
        else:
            loader = FeatureLoader(dataset, batch_sampler=chunks, num_workers=workers, collate_fn=collate,
                                persistent_workers=True)
            for _ in loader:  # a first pass: fork the workers, warm them (as above)
                pass
            it = iter(loader)
            pids = [w.pid for w in loader._iterator._workers]  # the persistent workers' iterator, kept by the loader
            before = time.process_time() + sum(_cpu_seconds(p) for p in pids)
            for _ in it:
                pass
            cpu = time.process_time() + sum(_cpu_seconds(p) for p in pids) - before
            worker_memory = [_memory(p) for p in pids]
            del it, loader
        out[name] = {"samples_per_cpu_s": round(len(order) / cpu, 1), "cpu_s": round(cpu, 3)}
        if worker_memory:
            out[name]["worker_memory"] = worker_memory
        torch.set_num_threads(torch.get_num_threads())
    out["ratio_new_over_old"] = round(out["new"]["samples_per_cpu_s"] / out["old"]["samples_per_cpu_s"], 2)
    return out


def probe(folder: Path, root: Path, *, batches: int, workers: list[int], go: Path | None = None) -> dict[str, Any]:
    """One process: open the split (after `go` exists, so that ranks start together), then measure."""
    import cvil.inputs.dataset  # noqa: F401  (imports are not the open: NLTK and transformers take seconds)
    import cvil.train.data_setup  # noqa: F401

    _tokenizers(root)
    if go is not None:
        while not go.exists():
            time.sleep(0.01)
    from cvil.train.data_setup import encoded_cache_dir

    cache = encoded_cache_dir(folder)
    before = set(cache.iterdir()) if cache.is_dir() else set()
    ds, seconds = open_split(folder, root)
    result: dict[str, Any] = {"open_s": round(seconds, 2), "rows": len(ds), "memory_after_open": _memory(),
                              "built_encoded_cache": set(cache.iterdir()) != before}
    for n in workers:
        result[f"workers_{n}"] = _throughput(ds, batches, n)
    result["memory_after_batches"] = _memory()
    return result


def _probe_processes(folder: Path, root: Path, ranks: int, batches: int, workers: list[int]) -> list[dict]:
    """`ranks` probe processes opening the split at once; the first also measures the throughput."""
    go = folder / f".go-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "bench.scale", "--probe", str(folder), "--root", str(root), "--batches",
           str(batches), "--go", str(go)]
    procs = [subprocess.Popen(cmd + ["--workers", ",".join(map(str, workers)) if rank == 0 else ""],
                              stdout=subprocess.PIPE, env=env, cwd=Path(__file__).resolve().parents[1])
             for rank in range(ranks)]
    ready = time.monotonic() + 60
    while time.monotonic() < ready and not all(_imported(p.pid) for p in procs):
        time.sleep(0.1)
    go.write_text("")
    try:
        outs = [p.communicate()[0] for p in procs]
    finally:
        go.unlink(missing_ok=True)
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a probe process failed (exit codes {[p.returncode for p in procs]})")
    return [json.loads(o.decode().strip().splitlines()[-1]) for o in outs]


def _imported(pid: int) -> bool:
    """Whether a probe waits at the start line (sleeping in its poll loop, imports done): its CPU time stopped."""
    first = _cpu_seconds(pid)
    time.sleep(0.2)
    return _cpu_seconds(pid) == first


def run(rows: int, images: int, *, root: str | Path, batches: int = 40, workers: tuple[int, ...] = (0, 2),
        ranks: int = 2, seed: int = 0) -> dict[str, Any]:
    """Build (or reuse) the world, then: one process opens it cold (no encoded cache), then `ranks` processes open
    it warm at once, the first of them also measuring the throughput with each of `workers`."""
    from cvil.train.data_setup import encoded_cache_dir

    root = Path(root)
    start = time.perf_counter()
    folder = build_world(root, rows, images, seed=seed)
    built = time.perf_counter() - start
    shutil.rmtree(encoded_cache_dir(folder), ignore_errors=True)
    cold = _probe_processes(folder, root, 1, batches, [])[0]  # cold: parse, encode, write the cache
    warm = _probe_processes(folder, root, ranks, batches, list(workers))
    return {
        "rows": rows, "images_stored": images, "feature_dim": DIM, "max_regions": MAX_REGIONS, "batch_size": BATCH,
        "batches": batches, "world_build_s": round(built, 1), "cpu_count": os.cpu_count(), "ranks": ranks,
        "open_s": {"cold": cold["open_s"], "warm": [r["open_s"] for r in warm]},
        "warm_hit_the_cache": [not r["built_encoded_cache"] for r in warm],  # False: code changed in between
        "memory_after_open": {"cold": cold["memory_after_open"], "warm": [r["memory_after_open"] for r in warm]},
        "memory_after_batches": warm[0]["memory_after_batches"],
        **{k: v for k, v in warm[0].items() if k.startswith("workers_")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=647_480, help="QLA rows (default: mVQA train, 647,480)")
    parser.add_argument("--images", type=int, default=2000, help="distinct stored images (reused)")
    parser.add_argument("--root", default=None, help="where the world is built and kept (default: a temp folder)")
    parser.add_argument("--out", default=None, help="write the JSON here")
    parser.add_argument("--batches", type=int, default=40, help="KD batches of 32 per throughput figure")
    parser.add_argument("--workers", default="0,2", help="DataLoader workers to measure, comma-separated")
    parser.add_argument("--ranks", type=int, default=2, help="processes opening the split warm at once (memory)")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--go", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w != ""]
    if args.probe:
        print(json.dumps(probe(Path(args.probe), Path(args.root), batches=args.batches, workers=workers,
                               go=Path(args.go) if args.go else None)))
        return 0
    root = args.root
    if root is None:
        import tempfile

        root = tempfile.mkdtemp(prefix="cvil-scale-")
    result = run(args.rows, args.images, root=root, batches=args.batches, workers=tuple(workers), ranks=args.ranks)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
