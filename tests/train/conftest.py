"""A tiny synthetic world with a trained (briefly) teacher and a student init, built once per test session."""

from __future__ import annotations

import pytest

from cvil.config import load_config
from cvil.world import CONFIG_DIR, TEACHER_CONFIG, WorldPaths

TINY_SHAPE = "{hidden_size: 32, num_hidden_layers: 4, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64}"


def tiny_overrides(world: WorldPaths, out, *extra: str) -> list[str]:
    """Overrides that point a synthetic config at the tiny world and keep the run to a few seconds."""
    return [*world.overrides(), f"output_dir={out}", "tracking.enabled=false", "data.max_regions=50",
            "train.log_every=2", "train.checkpoint_every=4", "data.batch_size=16", *extra]


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> WorldPaths:
    from cvil.data.synth.writer import generate
    from cvil.models.student_init import make_student_init
    from cvil.train.api import run

    root = tmp_path_factory.mktemp("world") / "tiny"
    generate("tiny", 0, root)
    world = WorldPaths(root, root / "teacher" / "oscar", root / "student_init")
    make_student_init(world.student_init_dir, root / "tokenizers" / "student", seed=0,
                      **load_config(None, [f"model.from_scratch={TINY_SHAPE}"]).model.from_scratch)
    cfg = load_config(TEACHER_CONFIG, [f"data.root={root}", f"model.tokenizer={root / 'tokenizers' / 'teacher'}",
                                       f"output_dir={root / 'teacher'}", "tracking.enabled=false",
                                       "data.max_regions=50", f"model.from_scratch={TINY_SHAPE}",
                                       "stages.0.epochs=3", "evaluate=[]"])
    run(cfg)
    return world


@pytest.fixture(scope="session")
def overrides_for(tiny_world):
    """`overrides_for(out, *extra)`: the tiny-world overrides for a run writing to `out`."""
    return lambda out, *extra: tiny_overrides(tiny_world, out, *extra)


@pytest.fixture
def synthetic_config():
    return lambda name: CONFIG_DIR / "synthetic" / name
