"""The third language's grid (bench/grids/table_zh.yaml: Chinese on the world `small+zh`) runs end to end on the tiny
world with Chinese added: every cell's config, shortened, trains and scores its test split."""

from __future__ import annotations

import pytest

from bench.grid.spec import load_grid, resolve_config
from cvil.config import load_config
from cvil.world import WorldPaths
from leaderboards.spec import SPEC_DIR, load_spec
from tests.conftest import TINY_SHAPE, tiny_overrides


@pytest.fixture(scope="module")
def zh_world(tiny_world, tmp_path_factory) -> WorldPaths:
    """`tiny+zh`: the tiny world with Chinese; its English side is the tiny world's, so the teacher is reused."""
    from cvil.data.synth.writer import generate
    from cvil.models.student_init import make_student_init

    root = tmp_path_factory.mktemp("world_zh") / "tiny_zh"
    generate("tiny+zh", 0, root)
    world = WorldPaths(root, tiny_world.teacher_dir, root / "student_init")
    make_student_init(world.student_init_dir, root / "tokenizers" / "student", seed=0,
                      **load_config(None, [f"model.from_scratch={TINY_SHAPE}"]).model.from_scratch)
    return world


def test_the_grid_and_its_table_name_the_same_cells():
    grid = load_grid("table_zh")
    assert grid.world["preset"] == "small+zh" and {c.name for c in grid.cells} == {"BASELINE", "AUG", "KD"}
    spec = load_spec(SPEC_DIR / "table_zh.yaml")
    assert spec.grid == "table_zh" and spec.paper_table == "" and {r.cell for r in spec.rows} == {"BASELINE", "AUG", "KD"}


@pytest.mark.parametrize("cell", ["BASELINE", "AUG", "KD"])
def test_every_cell_trains_on_the_tiny_chinese_world(zh_world, tmp_path, cell):
    from cvil.train.api import run

    grid = load_grid("table_zh")
    config = resolve_config(next(c for c in grid.cells if c.name == cell).config, grid.path)
    cfg = load_config(config, tiny_overrides(zh_world, tmp_path / cell, "data.max_train_examples=96"))
    shortened = [f"stages.{i}.epochs=1" for i in range(len(cfg.stages))]
    cfg = load_config(config, tiny_overrides(zh_world, tmp_path / cell, "data.max_train_examples=96", *shortened))
    assert cfg.stages[-1].lang == "zh" and cfg.data.root == str(zh_world.root)
    metrics = run(cfg)
    assert 0 <= metrics["test.accuracy"] <= 100 and "test.accuracy.yes_no" in metrics
