"""The end of a run: save the final model, predict the evaluation splits, score them with the official metrics.

Which metric a split gets follows from the last stage's data: a JVG-like `vg/` folder is scored by exact match,
coverage and BLEU against the answer strings (test: the `.unknown` file, i.e. every test question; other splits,
whose real rows carry label ids only: `label2ans[an[0]]` over the labelled rows, recorded as the run tag
`{split}.answer_source = label_map`); a VQA folder by
the official VQA accuracy from raw annotator answers when the official annotation file is there (Hindi questions:
also over the merged Hindi classes), else by the soft score. Predictions are written in the EvalAI results format
with a per-question CSV beside them, and everything is logged to the run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cvil.data import layout
from cvil.data.qla import QLARow, read_qla, read_unknown
from cvil.eval.evaluate import EvalResult, evaluate_predictions
from cvil.eval.jvg_truth import jvg_truth
from cvil.eval.results_io import write_per_question, write_results
from cvil.data.label_sets import label_maps
from cvil.train.data_setup import build_dataset, dataset_folder, make_collate, to_device
from cvil.train.distributed import all_gather_objects
from cvil.precision import autocast
from cvil.train.sampling import ShardSampler

log = logging.getLogger(__name__)


def split_rows_for_eval(folder: Path, split: str) -> list[QLARow]:
    """Every question of a split, covered or not (test: the `.unknown` file when there is one)."""
    if split == "test" and layout.unknown_path(folder).is_file():
        return read_unknown(layout.unknown_path(folder)).rows
    return read_qla(layout.qla_path(folder, split), drop_empty=False).rows


@torch.no_grad()
def predict(trainer, folder: Path, split: str, rows: list[QLARow]) -> dict[int, str]:
    """{question id: predicted answer string} for `rows`, computed on every rank's shard and gathered."""
    cfg, dist = trainer.cfg, trainer.dist
    stage = cfg.stages[-1]
    ds = build_dataset(rows, folder=folder, split=split, stage=dataclasses.replace(stage, objective="task"),
                       data=cfg.data, tokenizer=trainer.tokenizer, dist=dist, seed=cfg.train.seed)
    loader = DataLoader(ds, batch_size=cfg.data.eval_batch_size, collate_fn=make_collate(cfg.data),
                        sampler=ShardSampler(len(ds), rank=dist.rank, world_size=dist.world_size))
    answers = label_maps(folder, cfg.data.label_set).label2ans
    model = trainer.model.eval()
    local: dict[int, str] = {}
    for batch in loader:
        batch = to_device(batch, dist.device)
        with autocast(trainer.precision, dist.device):
            logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["img_feats"]).logits
        for qid, label in zip(batch["question_ids"].tolist(), logits.argmax(dim=1).tolist()):
            local[int(qid)] = answers[label]
    merged: dict[int, str] = {}
    for part in all_gather_objects(local):
        merged.update(part)
    return merged


def _score_jvg(trainer, folder: Path, split: str, rows: list[QLARow], lang: str) -> EvalResult | None:
    """Exact match etc. against the `.unknown` strings, or (real train/val/test-dev rows carry label ids only)
    against `label2ans[an[0]]`; the source goes into the report as `answer_source`."""
    truth = jvg_truth(rows, label_maps(folder).label2ans, file=layout.qla_path(folder, split), lang=lang)
    if truth.unscored:
        log.info("%s: %d rows have neither a label nor an answer string and are not scored", split, truth.unscored)
    if not truth.records:
        return None
    wanted = truth.question_ids
    predictions = predict(trainer, folder, split, [r for r in rows if r.q_id in wanted])
    if not trainer.dist.is_main:
        return None
    result = evaluate_predictions("jvg", truth.records, predictions)
    result.report.update(answer_source=truth.source, unscored=truth.unscored)
    return result


def score_split(trainer, folder: Path, split: str) -> EvalResult | None:
    lang = trainer.cfg.stages[-1].lang
    rows = split_rows_for_eval(folder, split)
    if not rows:
        return None
    if folder.name == "vg" or any("answer" in r.extra for r in rows):
        return _score_jvg(trainer, folder, split, rows, lang)
    predictions = predict(trainer, folder, split, rows)
    if not trainer.dist.is_main:
        return None
    annotations = folder / f"v2_mscoco_{layout.QLA_STEM[split]}_annotations.json"
    if not annotations.is_file():
        log.warning("no official annotations at %s: %s is not scored", annotations, split)
        return None
    anns = json.loads(annotations.read_text(encoding="utf-8"))["annotations"]
    wanted = {r.q_id for r in rows}
    anns = [a for a in anns if int(a["question_id"]) in wanted]
    if lang == "hi" and (folder / layout.HINDI_CLASSES).is_file():
        from cvil.eval.hindi import load_hindi_classes

        return evaluate_predictions("hindi", anns, predictions, classes=load_hindi_classes(folder / layout.HINDI_CLASSES))
    return evaluate_predictions("vqa", anns, predictions)


def finish_run(trainer) -> dict[str, float]:
    """Save the final model (and the Oscar-format export), score the evaluation splits, log it all."""
    cfg, out = trainer.cfg, Path(trainer.cfg.output_dir)
    if trainer.dist.is_main:
        trainer.model.save_pretrained(out / "final")
        trainer.tokenizer.save_pretrained(str(out / "final"))  # a self-contained folder (AutoTokenizer, cvil align)
        from cvil.train.checkpointing import write_manifest

        write_manifest(out / "final")  # checked by `cvil predict` before it loads the model
        if cfg.export_oscar:
            from cvil.models.checkpoint import save_oscar_checkpoint

            vocab = Path(cfg.model.tokenizer or cfg.model.init) / "vocab.txt"
            save_oscar_checkpoint(trainer.model, out / "oscar", vocab_file=vocab if vocab.is_file() else None)
    folder = dataset_folder(cfg.data, cfg.stages[-1].dataset)
    metrics: dict[str, float] = {}
    for split in cfg.evaluate:
        result = score_split(trainer, folder, split)
        if result is None:
            continue
        metrics.update(result.metrics(split))
        pred_dir = out / "predictions"
        write_results(pred_dir / f"{split}_results.json", dict(zip(result.per_question["question_id"],
                                                                    result.per_question["prediction"])))
        write_per_question(pred_dir / f"{split}_per_question.csv", result.per_question)
        trainer.tracker.log_artifact(pred_dir / f"{split}_results.json", "predictions")
        trainer.tracker.log_artifact(pred_dir / f"{split}_per_question.csv", "predictions")
        if "answer_source" in result.report:  # JVG: `.unknown` strings or label2ans (real val rows have no strings)
            trainer.tracker.set_tags({f"{split}.answer_source": result.report["answer_source"]})
        if "evaluator" in result.report:
            trainer.tracker.set_tags({"cvil.vqa_evaluator": result.report["evaluator"]})
        if "bleu" in result.report:
            trainer.tracker.set_tags({"cvil.bleu_signature": json.dumps(result.report["bleu"].get("signature", ""))})
    if trainer.dist.is_main:
        trainer.tracker.log_metrics(metrics, trainer.progress.global_step)
        trainer.tracker.log_model_pointer(  # a pointer to final/ (no copy of the weights)
            out / "final", name=cfg.tracking.run_name or f"{cfg.schedule}-s{cfg.train.seed}",
            params={"schedule": cfg.schedule, "seed": cfg.train.seed, "init": cfg.model.init},
            step=trainer.progress.global_step)
        (out / "final_metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True), encoding="utf-8")
    return metrics
