"""Throughput benchmark, the steps: batches, models and one runnable step per variant (the real training step code
beside the naive reference step)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .flops import peak_flops, step_flops
from .reference_align import reference_get_align
from .measure import Runner, measure_loading, measure_steps
from .report import Row
from .variants import FIXED_TEXT, LANG, SIZES, STEP_KINDS, BenchSize, Variant
from .world import BenchWorld, make_world


def reference_kd_loss(student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor],
                      apply: torch.Tensor, align: torch.Tensor, layers: tuple[int, ...] = (3, 6, 9, 12)) -> torch.Tensor:
    """The released code's loss: per KD layer, one MSE over the `apply`-selected rows of the 178-slot layout, the
    teacher's rows gathered by `align` (`modeling_bert.py:118-243`); layers summed."""
    from cvil.distill.kd_losses import map_layers

    s_layers = map_layers(layers, len(student_hidden) - 1)
    t_layers = map_layers(layers, len(teacher_hidden) - 1)
    index = align.unsqueeze(-1).expand(-1, -1, student_hidden[-1].shape[-1])
    total = torch.zeros((), device=student_hidden[-1].device)
    for sl, tl in zip(s_layers, t_layers):
        gathered = teacher_hidden[tl].gather(1, index)
        total = total + F.mse_loss(student_hidden[sl][apply].float(), gathered[apply].float())
    return total


def walk_to_pairs(apply: torch.Tensor, align: torch.Tensor, text_slots: int, student_text: int,
                  teacher_text: int) -> dict[str, torch.Tensor]:
    """The walk's `(apply, align)` arrays (`[B, text_slots + R]`) as the collate's flat KD index tensors for a batch
    whose texts are padded to `student_text` / `teacher_text` (region slot r -> `T + r` on each side)."""
    b, pos = apply.nonzero(as_tuple=True)
    teacher = align[b, pos]
    image = pos >= text_slots
    s_abs = torch.where(image, pos - text_slots + student_text, pos)
    t_abs = torch.where(image, teacher - text_slots + teacher_text, teacher)
    component = torch.where(image, 1, torch.where(pos == 0, 0, 2))
    return {"kd_batch": b, "kd_student_pos": s_abs, "kd_teacher_pos": t_abs, "kd_component": component}


@contextlib.contextmanager
def num_threads(n: int):
    """Run with `n` intra-op threads (0 = leave torch's setting)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)



class Harness:
    """Builds the world, datasets, batches and models of one size once; times any variant of any step."""

    def __init__(self, size: BenchSize | str, *, device: str | torch.device = "cpu", world: BenchWorld | None = None,
                 world_root: str | Path | None = None, n_batches: int = 4, batch_size: int | None = None,
                 seed: int = 0, peak: float | None = None) -> None:
        from cvil.inputs.collate import collate
        from cvil.inputs.dataset import VQADataset
        from cvil.inputs.alignment import KDSelection

        self.size = SIZES[size] if isinstance(size, str) else size
        self.device = torch.device(device)
        self.world = world or make_world(self.size.img_dim, world_root, seed)
        self.batch_size = batch_size or self.size.batch_size
        self.num_labels = self.size.num_labels or self.world.num_labels
        self.seed = seed
        w, r = self.world, self.size.max_regions
        self.dataset = VQADataset(w.rows, w.student_tokenizer, w.store, self.num_labels, LANG, r,
                                  teacher_tokenizer=w.teacher_tokenizer, kd=KDSelection())
        order = np.random.default_rng(seed).permutation(len(self.dataset)).tolist()
        need = n_batches * self.batch_size
        if need > len(order):
            order = (order * (need // len(order) + 1))[:need]
        self.groups = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(n_batches)]
        examples = [[self.dataset[i] for i in g] for g in self.groups]
        self.batches = {"dynamic": [collate(e) for e in examples],
                        "fixed": [collate(e, fixed_text_len=FIXED_TEXT) for e in examples]}
        self.tokens = [int(b["attention_mask"].sum()) for b in self.batches["dynamic"]]
        self.student_lens = [[len(e["input_ids"]) for e in ex] for ex in examples]
        self.teacher_lens = [[len(e["teacher_input_ids"]) for e in ex] for ex in examples]
        shape = self.size.shape(self.num_labels)
        self.flops = {kind: [step_flops(kind, shape, s, r, shape, t) for s, t in zip(self.student_lens, self.teacher_lens)]
                      for kind in STEP_KINDS}
        self.peak = peak
        if peak is None and self.device.type == "cuda":
            tf32 = bool(torch.backends.cuda.matmul.allow_tf32)
            self.peak_by_precision = {p: peak_flops(torch.cuda.get_device_name(self.device), p, tf32=tf32)
                                      for p in ("fp32", "bf16", "fp16")}
        else:
            self.peak_by_precision = {p: peak for p in ("fp32", "bf16", "fp16")}
        torch.manual_seed(seed)
        self._student_state = self._build("student", "sdpa").state_dict()
        self._teacher_state = self._build("teacher", "sdpa").state_dict()
        self._teachers: dict[tuple[str, bool, str], Any] = {}

    @property
    def n_batches(self) -> int:
        return len(self.groups)

    # -- models -------------------------------------------------------------------------------------------------
    def _build(self, role: str, attn: str):
        from cvil.models import OscarVQA, oscar_config

        s = self.size
        tokenizer = self.world.student_tokenizer if role == "student" else self.world.teacher_tokenizer
        vocab = (s.student_vocab if role == "student" else s.teacher_vocab) or len(tokenizer)
        config = oscar_config(img_feature_dim=s.img_dim, num_labels=self.num_labels, vocab_size=vocab,
                              hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
                              intermediate_size=s.intermediate, max_position_embeddings=512,
                              hidden_dropout_prob=0.3 if role == "student" else 0.1,
                              attention_probs_dropout_prob=0.1, attn_implementation=attn)
        return OscarVQA(config)

    def student(self, variant: Variant):
        model = self._build("student", variant.attn)
        model.load_state_dict(self._student_state)
        model = model.to(self.device).train()
        return torch.compile(model) if variant.compile else model

    def teacher(self, variant: Variant):
        from cvil.distill.teacher import FrozenTeacher

        key = (variant.attn, variant.compile, variant.precision)
        if key not in self._teachers:
            model = self._build("teacher", variant.attn)
            model.load_state_dict(self._teacher_state)
            model = model.to(self.device).eval()
            if variant.compile:
                model = torch.compile(model)
            self._teachers[key] = FrozenTeacher(model, precision=variant.precision)
        return self._teachers[key]

    def _step(self, kind: str, teacher, variant: Variant):
        """The real training step's objective and settings (`cvil.train.objective`, `cvil.train.step`): objective
        `kd` against the online teacher (as the released KD stage), or `task`; defaults of `TrainConfig`."""
        from cvil.config import KDConfig, StageConfig, TrainConfig
        from cvil.train.objective import OnlineTeacher, build_objective
        from cvil.precision import grad_scaler
        from cvil.train.step import StepSettings

        train = TrainConfig(precision=variant.precision, optimizer_impl=variant.optimizer)
        kd = KDConfig(codemix=False)
        stage = StageConfig(objective="kd" if kind == "kd" else "task")
        objective = build_objective(stage, kd, OnlineTeacher(teacher) if teacher is not None else None)
        settings = StepSettings(self.device, variant.precision, grad_scaler(variant.precision, self.device),
                                train.grad_accum, train.max_grad_norm)
        return train, objective, settings

    # -- per-step alignment (naive) -----------------------------------------------------------------------------
    def walk(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-tokenise both texts of every example of batch `i` and walk them (the reference's per-step path)."""
        from cvil.inputs.encoding import encode_text

        w, total = self.world, FIXED_TEXT + self.size.max_regions
        applies, aligns = [], []
        for index in self.groups[i]:
            row = w.rows[index]
            teacher = encode_text(w.teacher_tokenizer, row.questions["en"], row.tags).tokens
            student = encode_text(w.student_tokenizer, row.questions[LANG], row.tags).tokens
            apply, align = reference_get_align(teacher, student, total=total, text=FIXED_TEXT)
            applies.append(apply)
            aligns.append(align)
        return torch.stack(applies), torch.stack(aligns)

    # -- runners ------------------------------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def runner(self, kind: str, name: str, variant: Variant) -> Runner:
        from cvil.inputs.collate import model_inputs
        from cvil.eval.soft_score import batch_score_sum
        from cvil.train.data_setup import to_device
        from cvil.train.optim import build_optimizer, build_scheduler
        from cvil.precision import autocast
        from cvil.train.step import loss_step, optimizer_step

        if variant.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device")
        batches = self.batches[variant.padding]
        if kind != "kd":  # task steps do not move the teacher's half of the batch
            batches = [{k: v for k, v in b.items() if not k.startswith(("teacher_", "kd_"))} for b in batches]
        model = self.student(variant)
        device = self.device

        if kind == "eval":
            def eval_step(i: int) -> None:
                batch = to_device(batches[i], device)
                model.eval()
                with torch.no_grad(), autocast(variant.precision, device):
                    out = model(*model_inputs(batch), labels=batch["labels"])
                    batch_score_sum(out.logits, batch["labels"])
                self._sync()

            return Runner(name, variant, eval_step)

        teacher = self.teacher(variant) if kind == "kd" else None
        train, objective, settings = self._step(kind, teacher, variant)
        optimizer = build_optimizer(model, 5e-5, train, device)
        scheduler = build_scheduler(optimizer, 10**9, 0.0)

        def train_step(i: int) -> None:
            batch = batches[i]
            apply = align = None
            if kind == "kd" and variant.alignment == "walk":
                apply, align = self.walk(i)
                if not variant.reference_loss:
                    batch = {**batch, **walk_to_pairs(apply, align, FIXED_TEXT, batch["input_ids"].shape[1],
                                                      batch["teacher_input_ids"].shape[1])}
            batch = to_device(batch, device)
            model.train()
            if variant.reference_loss:
                if variant.padding != "fixed" or batch["input_ids"].shape[1] != FIXED_TEXT:
                    raise ValueError("the reference KD loss needs the fixed 128 + regions layout")
                with autocast(variant.precision, device):
                    out = model(*model_inputs(batch), output_hidden_states=True)
                teacher_out = teacher(batch)
                apply, align = apply.to(device), align.to(device)
                loss = reference_kd_loss(out.hidden_states, teacher_out.hidden_states, apply, align,
                                         objective.kd.layers)
                settings.scaler.scale(loss).backward()
            else:
                loss_step(model, batch, objective, settings)
            optimizer_step(optimizer, scheduler, settings)
            self._sync()

        return Runner(name, variant, train_step)

    # -- measurement (bench.throughput.measure) -----------------------------------------------------------------
    def measure(self, kind: str, variants: dict[str, Variant], rounds: int, warmup: int | None = None) -> list[Row]:
        """Time every variant `rounds` times, alternating (order reversed each round), after `warmup` rounds."""
        runners = [self.runner(kind, name, v) for name, v in variants.items()]
        mfu_peaks = self.peak_by_precision if self.device.type == "cuda" or self.peak else {}
        return measure_steps(kind, runners, rounds, warmup, device=self.device, sync=self._sync,
                             batch_size=self.batch_size, tokens=self.tokens, flops=self.flops[kind],
                             peak_flops=mfu_peaks)

    def measure_loading(self, rounds: int, workers: Sequence[int] = (0, 2), warmup: int = 1) -> list[Row]:
        """DataLoader throughput over the KD dataset with code-mixing (the KD stage's train loader)."""
        return measure_loading(self.world, rounds, workers, warmup, device=self.device, sync=self._sync,
                               batch_size=self.batch_size, max_regions=self.size.max_regions,
                               num_labels=self.num_labels, seed=self.seed)
