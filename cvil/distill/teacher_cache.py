"""An offline teacher cache: the frozen teacher's hidden states, computed once and keyed by question id.

An optional alternative to the online teacher (`cvil.distill.teacher.FrozenTeacher`), for users who would rather
pay disk than a teacher forward per step. It fixes the reference's cache (reference §2.2, §4.5), which was keyed by
the example's *list position* (any reordering of the JSON silently mis-paired teacher and student), stored fp16 with
no record of it, and never checked for missing or truncated entries.

Layout of `out_dir`:

- `shard-00000.safetensors`, ...: one tensor per (question, layer), named `"{q_id}.h{i}"` with `i` the teacher's
  HF hidden-state index, shape `[L + R, H]`: the `L` real teacher text positions (the teacher's true text length,
  padding removed) followed by all `R` image slots (padded slots included: the collate distils them, as the
  reference does). Stored in the declared dtype (fp16 by default).
- `manifest.json` (written last, so a cache without it is incomplete): format version, the KD `layers` as
  configured (12-layer numbering, like `kd.layers`) and the `teacher_layers` they map to, the dtype, hidden size,
  `max_regions`, `count`, the question ids and their text lengths (same order), `row_keys` (what the ids are:
  `q_id`, or `position@<file digest>` for train/val files without unique q_ids, `cvil.data.qla`), the shards (file,
  ids, sha256), a `content_hash` over all of it, and the teacher's checkpoint path and config hash.

`TeacherCache(out_dir)` checks on load that the tensors present are exactly the manifest's (missing and extra
question ids are named), that counts agree, that every tensor has the declared dtype and shape `[L + R, H]` (shard
headers only), that the manifest's content hash holds, and (optionally) that the ids equal those of the dataset it
will serve and the config hash equals the loaded teacher's. The shard bytes are hashed against the recorded sha256
when the cache is built and on request (`verify_hash=True`, `TeacherCache.verify()`, `cvil kd-cache --verify DIR`),
not on every open: an mVQA-size cache is ~200 GB, about 12 minutes of hashing per open per rank.
`hidden_states_for(batch)` re-pads the cached rows into the
batch's padded teacher layout `[B, T_t + R, H]` (fp32), one entry per teacher hidden state (`None` where not
cached), which is what `cvil.distill.kd_losses.distillation_loss` takes as `teacher_hidden`.

How it plugs into the trainer (a `kd.teacher_cache: str = ""` config switch): build the cache once per KD dataset
and split (`cvil kd-cache`, i.e. `build_teacher_cache(load_teacher(cfg, device), dataset, out_dir, cfg.kd.layers,
batch_size=...)`); a run with `kd.teacher_cache=DIR` serves the KD term from `cvil.train.objective.CachedTeacher`,
which opens `DIR/<split>` per stage with `expected_question_ids` = the stage dataset's ids and `teacher_config` =
the configured `kd.teacher`'s config. The teacher's text input does not depend on
code-mixing (only the student's question is code-mixed), so one cache serves every epoch. Teacher logits are not
cached: `kd.logit_weight > 0` needs the online teacher.
"""

from __future__ import annotations

from cvil.errors import CvilError

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from cvil.inputs.collate import collate
from cvil.inputs.loader import FeatureLoader
from cvil.distill.kd_losses import map_layers
from cvil.fileio import atomic_write, sha256_file

FORMAT = "cvil.teacher_cache"
VERSION = 1
MANIFEST = "manifest.json"
ROW_KEYS_Q_ID = "q_id"  # `cvil.data.qla.KEY_Q_ID`: what a manifest without `row_keys` was keyed by
_SHARD_NAME = re.compile(r"shard-\d{5}\.safetensors")
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_SAFETENSORS_DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}
SHARD_BYTES = 512 << 20  # rows buffered per shard while building (the build holds about twice this in memory)


class TeacherCacheError(CvilError, ValueError):
    """The cache is incomplete, inconsistent with its manifest, or does not match what it is asked to serve."""


def _key(q_id: int, layer: int) -> str:
    return f"{q_id}.h{layer}"


def _parse_key(key: str) -> tuple[int, int] | None:
    q, sep, layer = key.partition(".h")
    try:
        return (int(q), int(layer)) if sep else None
    except ValueError:
        return None


def _dtype_name(dtype: torch.dtype) -> str:
    for name, value in _DTYPES.items():
        if value == dtype:
            return name
    raise TeacherCacheError(f"unsupported cache dtype {dtype}; expected one of {sorted(_DTYPES)}")


def _names(ids: Iterable[int], limit: int = 10) -> str:
    ids = sorted(ids)
    shown = ", ".join(str(i) for i in ids[:limit])
    return f"{len(ids)} question id(s): {shown}{', ...' if len(ids) > limit else ''}"




def config_hash(config: Any) -> str:
    """sha256 of a model config (a `PretrainedConfig` or a dict), without runtime-only keys (attention kernel,
    transformers version), so the same weights loaded another way hash the same."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    kept = {k: v for k, v in raw.items() if not k.startswith("_") and k not in ("transformers_version", "attn_implementation")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def _content_hash(manifest: dict) -> str:
    core = {k: manifest[k] for k in ("layers", "teacher_layers", "dtype", "hidden_size", "max_regions",
                                      "question_ids", "text_lengths")}
    core["shards"] = [s["sha256"] for s in manifest["shards"]]
    if "row_keys" in manifest:  # caches written before row keys existed were keyed by q_id
        core["row_keys"] = manifest["row_keys"]
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------- building
@torch.no_grad()
def build_teacher_cache(
    teacher_model: nn.Module,
    dataset,
    out_dir: str | Path,
    layers: Sequence[int],
    *,
    batch_size: int,
    dtype: torch.dtype = torch.float16,
    teacher_path: str | Path | None = None,
    shard_size: int | None = None,
    max_shard_bytes: int = SHARD_BYTES,
    num_workers: int = 0,
    overwrite: bool = False,
) -> dict:
    """Run the frozen teacher once over a KD `dataset` (its English side) and write the cache; returns the manifest.

    `layers` use the KD config's 12-layer numbering (`kd.layers`, e.g. 3, 6, 9, 12) and are mapped onto the
    teacher's depth as `distillation_loss` maps them. `teacher_model` is an `OscarVQA` (or a `FrozenTeacher`);
    it runs in eval mode without autograd, on its own device and in fp32 (wrap it in a `FrozenTeacher` with
    another precision to change that).

    Rows are converted to the stored `dtype` (fp16; other dtypes only for tests of exactness) on the teacher's device
    and buffered until `max_shard_bytes` of them (default 512 MiB; `shard_size` optionally caps the questions per
    shard too): at mVQA scale a question is ~451 KB, so a count cap of 10,000 questions held 4.5 GB in memory.
    Each shard's sha256 is taken when it is written.
    """
    from cvil.distill.teacher import FrozenTeacher

    out = Path(out_dir)
    if (out / MANIFEST).exists() and not overwrite:
        raise TeacherCacheError(f"{out} already holds a teacher cache (pass overwrite=True to rebuild it)")
    if getattr(dataset, "kd", None) is None:
        raise TeacherCacheError("build_teacher_cache needs a KD dataset (one built with the teacher tokenizer and a "
                                "KD selection): it reads the teacher's English inputs")
    teacher = teacher_model if isinstance(teacher_model, FrozenTeacher) else FrozenTeacher(teacher_model)
    config = teacher.model.config
    depth, hidden = int(config.num_hidden_layers), int(config.hidden_size)
    teacher_layers = map_layers(tuple(int(x) for x in layers), depth)
    dtype_name = _dtype_name(dtype)
    ids = [int(q) for q in dataset.question_ids]
    if len(set(ids)) != len(ids):
        dup = {q for q in ids if ids.count(q) > 1} if len(ids) < 50_000 else set()
        raise TeacherCacheError(f"the dataset has duplicate question ids ({_names(dup)}); a cache keyed by question "
                                "id cannot serve it")
    if shard_size is not None and shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    if max_shard_bytes < 1:
        raise ValueError("max_shard_bytes must be >= 1")

    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("shard-*.safetensors")) + [out / MANIFEST]:
        stale.unlink(missing_ok=True)
    device = next(teacher.model.parameters()).device
    loader = FeatureLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
    question_ids: list[int] = []
    text_lengths: list[int] = []
    shards: list[dict] = []
    pending: dict[str, torch.Tensor] = {}
    pending_ids: list[int] = []
    pending_bytes = 0
    max_regions = None

    def flush() -> None:
        nonlocal pending_bytes
        if not pending_ids:
            return
        path = out / f"shard-{len(shards):05d}.safetensors"
        save_file(pending, str(path), metadata={"format": FORMAT, "dtype": dtype_name})
        shards.append({"file": path.name, "question_ids": list(pending_ids), "sha256": sha256_file(path)})
        pending.clear()
        pending_ids.clear()
        pending_bytes = 0

    for batch in loader:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        states = teacher(batch).hidden_states
        t_t = batch["teacher_input_ids"].shape[1]
        r = batch["img_feats"].shape[1]
        max_regions = r if max_regions is None else max_regions
        if r != max_regions:
            raise TeacherCacheError(f"batches with {r} and {max_regions} image slots: the cache needs a fixed R")
        lengths = batch["teacher_attention_mask"][:, :t_t].sum(1).tolist()
        for b, (q, length) in enumerate(zip(batch["question_ids"].tolist(), lengths)):
            keep = torch.cat([torch.arange(length), torch.arange(t_t, t_t + r)]).to(device)
            for layer in teacher_layers:  # to the stored dtype on the device: half the copy and the buffer
                row = states[layer][b].index_select(0, keep).to(dtype).cpu().contiguous()
                pending[_key(q, layer)] = row
                pending_bytes += row.numel() * row.element_size()
            question_ids.append(int(q))
            text_lengths.append(int(length))
            pending_ids.append(int(q))
            if pending_bytes >= max_shard_bytes or (shard_size is not None and len(pending_ids) >= shard_size):
                flush()
    flush()
    if question_ids != ids:
        raise TeacherCacheError("the loader did not serve the dataset in order: cache not written")

    manifest = {
        "format": FORMAT, "version": VERSION,
        "layers": [int(x) for x in layers], "teacher_layers": teacher_layers, "num_hidden_layers": depth,
        "dtype": dtype_name, "hidden_size": hidden, "max_regions": int(max_regions or 0),
        "count": len(question_ids), "question_ids": question_ids, "text_lengths": text_lengths,
        "row_keys": getattr(dataset, "row_identity", ROW_KEYS_Q_ID), "shards": shards,
        "teacher": {"path": str(teacher_path) if teacher_path is not None else "", "config_hash": config_hash(config)},
    }
    manifest["content_hash"] = _content_hash(manifest)
    atomic_write(out / MANIFEST, json.dumps(manifest))
    return manifest


# ------------------------------------------------------------------------------------------------------ loading
class TeacherCache:
    """A verified teacher cache (see the module docstring); `hidden_states_for(batch)` serves a KD batch."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        expected_question_ids: Iterable[int] | None = None,
        expected_row_keys: str | None = None,
        teacher_config: Any = None,
        verify_hash: bool = False,
    ) -> None:
        self.dir = Path(out_dir)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise TeacherCacheError(f"no teacher cache at {self.dir}: {MANIFEST} is missing (unfinished build?)")
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TeacherCacheError(f"{path} is not valid JSON: {exc}") from None
        if m.get("format") != FORMAT or m.get("version") != VERSION:
            raise TeacherCacheError(f"{path}: not a {FORMAT} v{VERSION} manifest "
                                    f"(format={m.get('format')!r}, version={m.get('version')!r})")
        self.manifest = m
        if m["dtype"] not in _DTYPES:
            raise TeacherCacheError(f"{path}: unknown dtype {m['dtype']!r}; expected one of {sorted(_DTYPES)}")
        self.dtype = _DTYPES[m["dtype"]]
        self.layers = tuple(m["layers"])
        self.teacher_layers = tuple(m["teacher_layers"])
        self.depth, self.hidden_size, self.max_regions = m["num_hidden_layers"], m["hidden_size"], m["max_regions"]
        ids, lengths = [int(q) for q in m["question_ids"]], [int(n) for n in m["text_lengths"]]
        if not m["count"] == len(ids) == len(lengths):
            raise TeacherCacheError(f"{path}: count {m['count']} but {len(ids)} question ids and {len(lengths)} text "
                                    "lengths")
        if len(set(ids)) != len(ids):
            raise TeacherCacheError(f"{path}: duplicate question ids in the manifest")
        self.text_lengths = dict(zip(ids, lengths))
        if expected_question_ids is not None:
            expected = {int(q) for q in expected_question_ids}
            missing, extra = expected - set(ids), set(ids) - expected
            if missing or extra:
                raise TeacherCacheError(
                    f"teacher cache {self.dir} does not match the dataset it should serve: "
                    + "; ".join(p for p in (f"missing {_names(missing)}" if missing else "",
                                            f"extra {_names(extra)}" if extra else "") if p))
        row_keys = m.get("row_keys", ROW_KEYS_Q_ID)
        if expected_row_keys is not None and row_keys != expected_row_keys:
            raise TeacherCacheError(f"teacher cache {self.dir} keys its rows by {row_keys}, the dataset it should serve "
                                    f"by {expected_row_keys} (built from another file?); rebuild it")
        if teacher_config is not None and config_hash(teacher_config) != m["teacher"]["config_hash"]:
            raise TeacherCacheError(f"teacher cache {self.dir} was built by a teacher with another config "
                                    f"({m['teacher']['path'] or 'path not recorded'}); rebuild it")
        self._shard_of: dict[int, str] = {}
        listed: list[int] = []
        for shard in m["shards"]:
            if not isinstance(shard.get("file"), str) or not _SHARD_NAME.fullmatch(shard["file"]):
                raise TeacherCacheError(f"{path}: shard file name {shard.get('file')!r} is not shard-NNNNN.safetensors "
                                        "(a cache reads only its own folder)")
            for q in shard["question_ids"]:
                self._shard_of[int(q)] = shard["file"]
            listed.extend(int(q) for q in shard["question_ids"])
        if sorted(listed) != sorted(ids):
            raise TeacherCacheError(f"{path}: the shards list other question ids than the manifest "
                                    f"(missing {_names(set(ids) - set(listed))}, extra {_names(set(listed) - set(ids))})")
        if _content_hash(m) != m.get("content_hash"):
            raise TeacherCacheError(f"{path}: content hash mismatch (manifest edited?)")
        self._handles: dict[str, Any] = {}
        self._check_tensors()
        if verify_hash:
            self.verify()

    # -- integrity --------------------------------------------------------------------------------------------------
    def _open(self, name: str):
        handle = self._handles.get(name)
        if handle is None:
            path = self.dir / name
            if not path.is_file():
                raise TeacherCacheError(f"teacher cache shard missing: {path}")
            handle = self._handles[name] = safe_open(str(path), framework="pt", device="cpu")
        return handle

    def _check_tensors(self) -> None:
        want_dtype = _SAFETENSORS_DTYPES[self.manifest["dtype"]]
        present: dict[int, set[int]] = {}
        bad_keys: list[str] = []
        for shard in self.manifest["shards"]:
            handle = self._open(shard["file"])
            for key in handle.keys():
                parsed = _parse_key(key)
                if parsed is None:
                    bad_keys.append(f"{shard['file']}:{key}")
                    continue
                q, layer = parsed
                present.setdefault(q, set()).add(layer)
                if q not in self.text_lengths or layer not in self.teacher_layers:
                    continue  # reported below as an extra id / layer
                sl = handle.get_slice(key)
                shape, dtype = list(sl.get_shape()), sl.get_dtype()
                expected = [self.text_lengths[q] + self.max_regions, self.hidden_size]
                if shape != expected:
                    raise TeacherCacheError(
                        f"teacher cache {self.dir}: question id {q} layer {layer} has shape {shape}, expected "
                        f"{expected} (text length {self.text_lengths[q]} + R={self.max_regions}, H={self.hidden_size})")
                if dtype != want_dtype:
                    raise TeacherCacheError(f"teacher cache {self.dir}: question id {q} layer {layer} is {dtype}, "
                                            f"but the manifest declares {self.manifest['dtype']} ({want_dtype})")
        if bad_keys:
            raise TeacherCacheError(f"teacher cache {self.dir}: unexpected tensor names {bad_keys[:5]}")
        missing = set(self.text_lengths) - set(present)
        extra = set(present) - set(self.text_lengths)
        if missing or extra:
            raise TeacherCacheError(
                f"teacher cache {self.dir}: the shards do not hold the manifest's question ids: "
                + "; ".join(p for p in (f"missing {_names(missing)}" if missing else "",
                                        f"extra {_names(extra)}" if extra else "") if p))
        layers = set(self.teacher_layers)
        partial = {q for q, got in present.items() if got != layers}
        if partial:
            q = min(partial)
            raise TeacherCacheError(f"teacher cache {self.dir}: layers differ from the manifest's {sorted(layers)} for "
                                    f"{_names(partial)} (e.g. {q} has {sorted(present[q])})")

    def verify(self) -> None:
        """Hash every shard against the sha256 recorded when it was written (reads the whole cache; `cvil kd-cache
        --verify`): catches bytes changed after the build that leave names, shapes and dtypes alone."""
        for shard in self.manifest["shards"]:
            if sha256_file(self.dir / shard["file"]) != shard["sha256"]:
                raise TeacherCacheError(f"teacher cache shard {self.dir / shard['file']} does not match its sha256 "
                                        "(modified or corrupted since it was written)")

    # -- serving -----------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.text_lengths)

    def __contains__(self, q_id: int) -> bool:
        return int(q_id) in self.text_lengths

    def rows(self, q_id: int) -> dict[int, torch.Tensor]:
        """The stored rows of one question, per teacher layer, in the stored dtype (`[L + R, H]`)."""
        q_id = int(q_id)
        if q_id not in self._shard_of:
            raise TeacherCacheError(f"question id {q_id} is not in the teacher cache {self.dir}")
        handle = self._open(self._shard_of[q_id])
        return {layer: handle.get_tensor(_key(q_id, layer)) for layer in self.teacher_layers}

    def hidden_states_for(self, batch: dict[str, torch.Tensor],
                          layers: Sequence[int] | None = None) -> tuple[torch.Tensor | None, ...]:
        """The cached teacher hidden states re-padded to the batch's teacher layout, fp32, on the batch's device.

        A tuple of `num_hidden_layers + 1` entries in HF order; the cached layers are `[B, T_t + R, H]` (text at
        0..L-1, zeros at text padding, image slots at T_t..T_t+R-1), the rest `None`. With `layers` (KD-config
        numbering) it first checks that those layers are cached.
        """
        if layers is not None:
            wanted = map_layers(tuple(layers), self.depth)
            if not set(wanted) <= set(self.teacher_layers):
                raise TeacherCacheError(f"KD layers {tuple(layers)} (teacher layers {wanted}) are not all in the cache "
                                        f"{self.dir}, which holds teacher layers {list(self.teacher_layers)}")
        t_ids = batch["teacher_input_ids"]
        bsz, t_t = t_ids.shape
        r = batch["img_feats"].shape[1]
        if r != self.max_regions:
            raise TeacherCacheError(f"the batch has R={r} image slots, the cache {self.dir} R={self.max_regions}")
        lengths = batch["teacher_attention_mask"][:, :t_t].sum(1).tolist()
        qids = [int(q) for q in batch["question_ids"].tolist()]
        unknown = [q for q in qids if q not in self.text_lengths]
        if unknown:
            raise TeacherCacheError(f"teacher cache {self.dir} has no entry for {_names(unknown)}")
        device = t_ids.device
        out = {layer: torch.zeros((bsz, t_t + r, self.hidden_size), dtype=torch.float32) for layer in self.teacher_layers}
        for b, (q, length) in enumerate(zip(qids, lengths)):
            if length != self.text_lengths[q]:
                raise TeacherCacheError(
                    f"question id {q}: the batch's teacher text has {length} tokens, the cache {self.text_lengths[q]} "
                    "(built with another teacher tokenizer, tag set or max_text_len?)")
            for layer, rows in self.rows(q).items():
                out[layer][b, :length] = rows[:length].float()
                out[layer][b, t_t:] = rows[length:].float()
        return tuple(out[i].to(device) if i in out else None for i in range(self.depth + 1))
