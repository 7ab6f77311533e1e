"""`python -m bench.teacher_seeds`: the world's own teacher recipe over train seeds, as a tracked grid whose seed-1
cell is the world's teacher; `bench.knob` reports each seed beside the students' teacher."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.knob import teacher_markdown
from bench.teacher_seeds import CELL, seed_accuracies, teacher_grid
from cvil.config import config_hash, load_config
from cvil.data.synth.writer import generate
from cvil.world import teacher_recipe
from tests.conftest import TINY_SHAPE

# the tiny corpus and the English VQA set in a few seconds each (the recipe's own lengths are for the small world)
SHORT = (f"model.from_scratch={TINY_SHAPE}", "data.max_regions=50", "data.batch_size=16", "stages.0.epochs=0.5",
         "stages.1.epochs=1", "export_oscar=false")


def test_a_teacher_grid_is_the_world_s_own_recipe_for_every_seed(tmp_path):
    root = tmp_path / "tiny@teacher=40"
    generate("tiny@teacher=40", 0, root)
    spec = teacher_grid({"root": str(root), "preset": "tiny@teacher=40"}, "_t40", 3)
    assert spec.name == "teacher_seeds_t40" and spec.seeds == (0, 1, 2) and [c.name for c in spec.cells] == [CELL]
    assert spec.world is None and spec.paths is None  # not the students' init and tokenizer
    config, recipe = teacher_recipe(root)
    cell = spec.cells[0]
    # the world's teacher (`ensure_world`: recipe + where it writes + tracking) and the grid's seed-1 cell are one config
    world_teacher = load_config(config, [*recipe, f"output_dir={root / 'teacher'}", "tracking.run_name=teacher"])
    grid_seed1 = load_config(cell.config, [*cell.overrides, "train.seed=1", f"output_dir={tmp_path / 'runs'}"])
    assert config_hash(world_teacher) == config_hash(grid_seed1)
    assert world_teacher.stages[0].dataset == "pretrain" and world_teacher.model.init == ""
    assert str(world_teacher.model.tokenizer).endswith("tokenizers/teacher")


@pytest.mark.slow
def test_the_grid_trains_one_teacher_per_seed_and_seed_1_matches_the_recipe_run_by_hand(tmp_path, mlflow_store):
    from bench.grid.runner import GridRunner
    from cvil.train.api import run

    root = tmp_path / "world"
    generate("tiny@teacher=40", 0, root)
    spec = teacher_grid({"root": str(root), "preset": "tiny@teacher=40"}, "_t40", 2)
    results = GridRunner(spec, uri=mlflow_store, runs_dir=str(tmp_path / "runs"), overrides=SHORT, echo=lambda _: None,
                         poll_s=0.05).run()
    assert [r.status for r in results] == ["finished", "finished"]
    scores = seed_accuracies("_t40", mlflow_store)
    assert sorted(scores) == [0, 1] and all(0 <= v <= 100 for v in scores.values())
    config, recipe = teacher_recipe(root)
    by_hand = run(load_config(config, [*recipe, *SHORT, "train.seed=1", f"output_dir={tmp_path / 'by_hand'}",
                                       "tracking.enabled=false"]))
    assert by_hand["val.accuracy"] == pytest.approx(scores[1], abs=1e-9)


def test_the_teacher_table_lists_every_seed_and_says_what_to_run_where_none_ran():
    frame = pd.DataFrame([
        {"teacher_images": 0, "students_teacher": 91.21, "seeds": 2, "per_seed": "0: 90.10 / 1: 91.21", "mean": 90.656,
         "std": 0.786, "min": 90.10, "max": 91.21},
        {"teacher_images": 6000, "students_teacher": 96.37, "seeds": 0, "per_seed": "", "mean": None, "std": None,
         "min": None, "max": None},
    ])
    lines = teacher_markdown(frame).splitlines()
    assert lines[2] == "| 0 | 91.21 | 2 | 0: 90.10 / 1: 91.21 | 90.66 | 0.79 | 90.10 – 91.21 |"
    assert lines[3] == "| 6000 | 96.37 | 0 | not trained: python -m bench.teacher_seeds |  |  |  |"
