from pathlib import Path

import pytest

from cvil.config import ConfigError, config_hash, flatten, load_config, to_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "cvil" / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    if path.name != "base.yaml":
        assert cfg.stages, f"{path} defines no stages"


def test_overrides_are_typed_and_dotted(tmp_path):
    cfg = load_config(None, ["train.seed=3", "kd.layers=[12]", "stages=[{name: a, lr: 1e-4}]", "stages.0.epochs=2",
                             "tracking.tags.cvil.cell=kd"])
    assert cfg.train.seed == 3 and cfg.kd.layers == (12,)
    assert cfg.stages[0].lr == pytest.approx(1e-4) and cfg.stages[0].epochs == 2.0
    assert cfg.tracking.tags == {"cvil.cell": "kd"}


@pytest.mark.parametrize("override, message", [
    ("train.sed=3", "did you mean 'train.seed'"),
    ("train.seed=abc", "train.seed: expected an integer"),
    ("kd.reduction=mean", "is not one of 'pooled', 'per_component'"),
    ("kd.cls=maybe", "expected true/false"),
    ("nonsense", "key=value"),
])
def test_bad_overrides_fail_with_a_clear_message(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_extends_merges_and_round_trips(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {seed: 5, weight_decay: 0.1}\nkd: {cls: false}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ntrain: {seed: 7}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.train.seed, cfg.train.weight_decay, cfg.kd.cls) == (7, 0.1, False)
    (tmp_path / "resolved.yaml").write_text(to_yaml(cfg))
    assert load_config(tmp_path / "resolved.yaml") == cfg
    assert flatten(cfg)["train.seed"] == 7


def test_config_hash_ignores_where_the_run_lives():
    a, b = load_config(None, ["output_dir=runs/a"]), load_config(None, ["output_dir=/elsewhere/a"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a, with_output_dir=True) != config_hash(b, with_output_dir=True)


def test_config_hash_ignores_tracking_only():
    a = load_config(None, ["tracking.run_name=x"])
    assert config_hash(a) == config_hash(load_config(None, ["tracking.run_name=y"]))
    assert config_hash(a) != config_hash(load_config(None, ["train.seed=2"]))


def test_missing_file_and_cycles(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("override, message", [
    ("kd.codemix_rate=0", r"kd.codemix_rate: expected in \(0, 1\], got 0.0"),
    ("kd.codemix_rate=1.5", r"kd.codemix_rate: expected in \(0, 1\], got 1.5"),
    ("kd.codemix_unit=pieces", "is not one of 'subwords', 'words'"),
])
def test_codemix_rate_and_unit_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
    cfg = load_config(None, ["kd.codemix_rate=1", "kd.codemix_unit=words"])
    assert (cfg.kd.codemix_rate, cfg.kd.codemix_unit) == (1.0, "words")
