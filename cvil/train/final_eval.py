"""The end of a run: save the final model, predict the evaluation splits, score them with the official metrics.

Which metric a split gets is declared per dataset (`cvil.eval.datasets`, looked up by the last stage's dataset
name): a JVG-like `vg/` folder is scored by exact match, coverage and BLEU against the answer strings (test: the
`.unknown` file, i.e. every test question; other splits, whose real rows carry label ids only: `label2ans[an[0]]`
over the labelled rows, recorded as the run tag `{split}.answer_source = label_map`); a VQA folder by the official
VQA accuracy from raw annotator answers when the official annotation file is there, else it is not scored (Hindi
questions: over the merged Hindi classes). Predictions are written in the EvalAI results format with a per-question
CSV beside them, and everything is logged to the run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from cvil import tracking_schema as schema
from cvil.config import DataConfig, RunConfig, StageConfig
from cvil.data import layout
from cvil.inputs.collate import model_inputs
from cvil.data.qla import KEY_Q_ID, QLAFile, QLARow, read_qla, read_unknown
from cvil.eval.datasets import eval_dataset
from cvil.eval.evaluate import EvalResult, evaluate_predictions
from cvil.eval.jvg_truth import jvg_truth
from cvil.eval.results_io import write_per_question, write_results
from cvil.fileio import atomic_write
from cvil.data.label_sets import label_maps
from cvil.train.data_setup import build_dataset, dataset_folder, make_collate, to_device
from cvil.train import run_layout
from cvil.train.distributed import DistInfo, all_gather_objects
from cvil.precision import autocast
from cvil.train.sampling import ShardSampler

log = logging.getLogger(__name__)


def split_rows_for_eval(folder: Path, split: str) -> QLAFile:
    """Every question of a split, covered or not (test: the `.unknown` file when there is one)."""
    if split == "test" and layout.unknown_path(folder).is_file():
        return read_unknown(layout.unknown_path(folder))
    return read_qla(layout.qla_path(folder, split), drop_empty=False)


@dataclass(frozen=True)
class EvalContext:
    """What predicting and scoring a split read: the model and its tokenizer, where and how it runs, the data
    settings, and the stage whose questions it answers (the run's last: its language)."""

    model: nn.Module
    tokenizer: Any
    dist: DistInfo
    precision: str  # resolved (fp32, bf16, fp16)
    data: DataConfig
    stage: StageConfig
    seed: int

    @classmethod
    def of_run(cls, cfg: RunConfig, *, model: nn.Module, tokenizer, dist: DistInfo, precision: str) -> EvalContext:
        return cls(model, tokenizer, dist, precision, cfg.data, cfg.stages[-1], cfg.train.seed)


@torch.no_grad()
def predict(ctx: EvalContext, folder: Path, split: str, rows: list[QLARow]) -> dict[int, str]:
    """{row key (`QLARow.key`): predicted answer string} for `rows`, computed on every rank's shard and gathered."""
    dist = ctx.dist
    ds = build_dataset(rows, folder=folder, split=split, stage=dataclasses.replace(ctx.stage, objective="task"),
                       data=ctx.data, tokenizer=ctx.tokenizer, dist=dist, seed=ctx.seed)
    loader = DataLoader(ds, batch_size=ctx.data.eval_batch_size, collate_fn=make_collate(ctx.data),
                        sampler=ShardSampler(len(ds), rank=dist.rank, world_size=dist.world_size))
    answers = label_maps(folder, ctx.data.label_set).label2ans
    model = ctx.model.eval()
    local: dict[int, str] = {}
    for batch in loader:
        batch = to_device(batch, dist.device)
        with autocast(ctx.precision, dist.device):
            logits = model(*model_inputs(batch)).logits
        for qid, label in zip(batch["question_ids"].tolist(), logits.argmax(dim=1).tolist()):
            local[int(qid)] = answers[label]
    merged: dict[int, str] = {}
    for part in all_gather_objects(local):
        merged.update(part)
    return merged


def _score_jvg(ctx: EvalContext, folder: Path, split: str, rows: list[QLARow], lang: str) -> EvalResult | None:
    """Exact match etc. against the `.unknown` strings, or (real train/val/test-dev rows carry label ids only)
    against `label2ans[an[0]]`; the source goes into the report as `answer_source`."""
    truth = jvg_truth(rows, label_maps(folder).label2ans, file=layout.qla_path(folder, split), lang=lang)
    if truth.unscored:
        log.info("%s: %d rows have neither a label nor an answer string and are not scored", split, truth.unscored)
    if not truth.records:
        return None
    wanted = truth.question_ids
    predictions = predict(ctx, folder, split, [r for r in rows if r.key in wanted])
    if not ctx.dist.is_main:
        return None
    result = evaluate_predictions("jvg", truth.records, predictions, lang=lang)
    result.report.update(answer_source=truth.source, unscored=truth.unscored)
    return result


def score_split(ctx: EvalContext, folder: Path, split: str) -> EvalResult | None:
    """Score `split` of `folder` as its dataset declares (`cvil.eval.datasets`: metric and ground truth)."""
    lang = ctx.stage.lang
    declared = eval_dataset(folder.name)
    declared.check_split(split)
    metric = declared.metric_for(lang, folder)
    qla = split_rows_for_eval(folder, split)
    rows = qla.rows
    if not rows:
        return None
    if metric == "jvg":
        result = _score_jvg(ctx, folder, split, rows, lang)
    else:
        result = _score_vqa(ctx, folder, split, qla, metric)
    if result is not None:  # what the per-question ids are, so that pairing two runs can check it (bench.stats.by_metric)
        result.report["row_keys"] = qla.key_description
        result.per_question["row_keys"] = qla.key_description
    return result


def _score_vqa(ctx: EvalContext, folder: Path, split: str, qla: QLAFile, metric: str) -> EvalResult | None:
    """The official VQA accuracy against the annotation file, joined by `question_id`: only for rows keyed by q_id
    (the release's train/val rows carry `q_id: 0`, so there is nothing to join them on)."""
    annotations = folder / f"v2_mscoco_{layout.QLA_STEM[split]}_annotations.json"
    if not annotations.is_file():
        log.warning("no official annotations at %s: %s is not scored", annotations, split)
        return None
    if qla.key_source != KEY_Q_ID:
        log.warning("%s: its rows carry no unique q_id (keyed by %s), so they cannot be joined with %s: %s is not "
                    "scored", qla.path, qla.key_description, annotations.name, split)
        return None
    rows = qla.rows
    predictions = predict(ctx, folder, split, rows)
    if not ctx.dist.is_main:
        return None
    anns = json.loads(annotations.read_text(encoding="utf-8"))["annotations"]
    wanted = {r.key for r in rows}
    anns = [a for a in anns if int(a["question_id"]) in wanted]
    if metric == "hindi":
        from cvil.eval.hindi import load_hindi_classes

        return evaluate_predictions("hindi", anns, predictions, classes=load_hindi_classes(folder / layout.HINDI_CLASSES))
    return evaluate_predictions("vqa", anns, predictions)


def record_scored_split(result: EvalResult, split: str, results: Path, tracker) -> dict[str, float]:
    """Save a scored split (the EvalAI results file `results` and the per-question CSV beside it), attach both to the
    tracked run with the tags that say how it was scored, and return its metrics (`split.*`) for the caller to log.
    The end of a run and `cvil predict --run-id` both record a split through here."""
    per_question = run_layout.per_question_beside(results)
    write_results(results, dict(zip(result.per_question["question_id"], result.per_question["prediction"])))
    write_per_question(per_question, result.per_question)
    tracker.log_artifact(results, schema.PREDICTIONS_DIR)
    tracker.log_artifact(per_question, schema.PREDICTIONS_DIR)
    report = result.report
    tags = {schema.row_keys_tag(split): report["row_keys"]} if "row_keys" in report else {}
    if "answer_source" in report:  # JVG: `.unknown` strings or label2ans (real val rows have no strings)
        tags[schema.answer_source_tag(split)] = report["answer_source"]
    if "evaluator" in report:
        tags[schema.VQA_EVALUATOR] = report["evaluator"]
    if "bleu" in report:
        tags[schema.BLEU_SIGNATURE] = json.dumps(report["bleu"].get("signature", ""))
    tracker.set_tags(tags)
    return result.metrics(split)


def check_declared_evaluation(cfg: RunConfig) -> None:
    """Before training: the last stage's dataset declares an evaluation for every split in `evaluate`."""
    if cfg.evaluate and cfg.stages:
        declared = eval_dataset(cfg.stages[-1].dataset)
        for split in cfg.evaluate:
            declared.check_split(split)


def finish_run(cfg: RunConfig, ctx: EvalContext, tracker, *, step: int) -> dict[str, float]:
    """Save the final model (and the Oscar-format export), score the evaluation splits, log it all to `tracker`
    at `step`."""
    out = Path(cfg.output_dir)
    if ctx.dist.is_main:
        ctx.model.save_pretrained(run_layout.final_dir(out))
        ctx.tokenizer.save_pretrained(str(run_layout.final_dir(out)))  # a self-contained folder (AutoTokenizer, cvil align)
        from cvil.train.checkpointing import write_manifest

        write_manifest(run_layout.final_dir(out))  # checked by `cvil predict` before it loads the model
        if cfg.export_oscar:
            from cvil.models.checkpoint import save_oscar_checkpoint

            vocab = Path(cfg.model.tokenizer or cfg.model.init) / "vocab.txt"
            save_oscar_checkpoint(ctx.model, run_layout.oscar_dir(out), vocab_file=vocab if vocab.is_file() else None)
    folder = dataset_folder(cfg.data, cfg.stages[-1].dataset)
    metrics: dict[str, float] = {}
    for split in cfg.evaluate:
        result = score_split(ctx, folder, split)
        if result is not None:
            metrics.update(record_scored_split(result, split, run_layout.results_path(out, split), tracker))
    if ctx.dist.is_main:
        tracker.log_metrics(metrics, step)
        tracker.log_model_pointer(  # a pointer to final/ (no copy of the weights)
            run_layout.final_dir(out), name=cfg.tracking.run_name or f"{cfg.schedule}-s{cfg.train.seed}",
            params={"schedule": cfg.schedule, "seed": cfg.train.seed, "init": cfg.model.init},
            step=step, metrics=metrics, datasets={split: f"{folder.name}/{split}" for split in cfg.evaluate})
        # the resume-done marker (`api.run`): never half-written
        atomic_write(run_layout.final_metrics_path(out), json.dumps(metrics, indent=2, sort_keys=True))
    return metrics
