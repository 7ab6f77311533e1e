"""Grid files: which cells, which seeds, which world — data, not code.

A grid file (``bench/grids/<name>.yaml``) names the paper table it reproduces, the world it runs on, the seeds,
and its cells, each a run config plus overrides::

    name: table3_ablations
    world: {preset: small, root: worlds/small, seed: 0}   # or paths: {data_root: ..., teacher: ..., student_init: ...}
    seeds: 3                                              # 0, 1, 2 — or an explicit list [88, 89, 90]
    overrides: []                                         # applied to every cell
    cells:
      KD:            {config: configs/synthetic/kd.yaml}
      w/o CLS:       {config: configs/synthetic/kd.yaml, overrides: [kd.cls=false]}

`{seed}` in an override (the grid's or a cell's) is replaced by each job's seed and `{runs_dir}` by the grid's runs
folder (`--runs-dir`, default runs), e.g. a teacher per seed that `bench.teacher_seeds --runs-dir` trained there:
`kd.teacher={runs_dir}/teacher_seeds/teacher/seed{seed}/oscar`.

A grid with `extends: other.yaml` (one level) takes the other file's keys and replaces those it gives itself, e.g.
the same cells on another `world:`; its name is its own file's stem unless it names itself.

`expand` turns a spec into one `Job` per cell × seed with the exact `cvil train` argument list, so the runner,
the launchers and the skip-on-rerun check all agree on what a job *is*. Keeping the world logic here
(`world_overrides`) lets the Optuna search resolve the same world the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cvil.config import SHIPPED_CONFIG_ROOT, ConfigError
from cvil.errors import UsageError
from cvil.paths import safe_component
from cvil import tracking_schema as schema
from cvil.suggest import did_you_mean

GRIDS_DIR = Path(__file__).resolve().parents[1] / "grids"  # bench/grids/
WORLD_KEYS = ("data.root", "kd.teacher", "model.init")  # what a world (synthetic or real) provides to every cell
SEED_FIELD = "{seed}"  # in a grid's or a cell's override: the job's seed
RUNS_DIR_FIELD = "{runs_dir}"  # ... and the folder the grid's runs go to (where other grids' runs are too)


@dataclass(frozen=True)
class Cell:
    name: str
    config: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class GridSpec:
    name: str
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    world: dict | None = None  # {preset, root, seed}: build (if missing) and use the synthetic world
    paths: dict | None = None  # {data_root, teacher, student_init}: real data and checkpoints instead
    overrides: tuple[str, ...] = ()
    experiment: str = "cvil"
    train_cmd: tuple[str, ...] = ()  # () = `python -m cvil train`; tests put a fake trainer here
    slurm: dict | None = None  # {gpus_per_node, cpus_per_task, nodes, torchrun}: `--launcher slurm` defaults
    description: str = ""
    source: str = ""  # the YAML text, logged as the parent run's artifact
    path: str = ""  # the grid file: cell configs are resolved against its folder (`resolve_config`)


@dataclass(frozen=True)
class Job:
    """One cell × seed: everything needed to launch it, find its run, and decide whether to skip it."""

    grid: str
    cell: str
    seed: int
    config: str
    overrides: tuple[str, ...]  # the full list passed to `cvil train` after `--config`
    output_dir: str
    run_name: str

    @property
    def key(self) -> str:
        return f"{self.cell}/seed{self.seed}"


def find_grid(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a shipped grid (`table3_ablations`)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"grid file not found: {path}")
        return path
    shipped = GRIDS_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        known = shipped_grids()
        raise ConfigError(f"unknown grid {name_or_path!r}; shipped grids: {', '.join(known)}"
                          f"{did_you_mean(name_or_path, known)}")
    return shipped


def shipped_grids() -> list[str]:
    return sorted(p.stem for p in GRIDS_DIR.glob("*.yaml"))


def _read_grid_yaml(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a readable YAML grid file: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return text, raw


def load_grid(name_or_path: str) -> GridSpec:
    path = find_grid(name_or_path)
    text, raw = _read_grid_yaml(path)
    if "extends" in raw:  # the same cells on another world: the keys given here replace the parent's, one level
        parent = path.parent / str(raw.pop("extends"))
        parent_text, parent_raw = _read_grid_yaml(parent)
        if "extends" in parent_raw:
            raise ConfigError(f"{path}: extends {parent}, which extends another grid (one level only)")
        raw = {**parent_raw, "name": path.stem, **raw}  # never the parent's name: its runs are other jobs
        text = f"{text}\n# {parent.name}, which it extends:\n{parent_text}"
    known = {"name", "cells", "seeds", "world", "paths", "overrides", "experiment", "train_cmd", "description",
             "slurm"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown grid keys {unknown}; valid: {sorted(known)}")
    cells_raw = raw.get("cells") or {}
    if not isinstance(cells_raw, dict) or not cells_raw:
        raise ConfigError(f"{path}: `cells` must be a non-empty mapping of name -> {{config, overrides}}")
    cells = []
    for name, body in cells_raw.items():
        if not isinstance(body, dict) or "config" not in body:
            raise ConfigError(f"{path}: cell {name!r} needs a `config:` file")
        cells.append(Cell(str(name), str(body["config"]), tuple(map(str, body.get("overrides") or ()))))
    if raw.get("world") and raw.get("paths"):
        raise ConfigError(f"{path}: give either `world:` (synthetic) or `paths:` (real data), not both")
    seeded = [o for o in (*map(str, raw.get("overrides") or ()), *(o for c in cells for o in c.overrides))
              if o.split("=", 1)[0].strip() == "train.seed"]
    if seeded:  # expand() appends train.seed=<seed> after them, so they would be silently overridden
        raise ConfigError(f"{path}: {seeded[0]!r} in overrides is replaced by each job's seed; "
                          "list the seed values in `seeds:` instead (e.g. seeds: [88])")
    train_cmd = raw.get("train_cmd") or ()
    slurm = raw.get("slurm") or None
    if slurm is not None:
        from bench.grid.launchers import SLURM_KEYS

        if not isinstance(slurm, dict) or set(slurm) - set(SLURM_KEYS):
            raise ConfigError(f"{path}: `slurm:` must be a mapping with keys among {list(SLURM_KEYS)}, got {slurm!r}")
    name = str(raw.get("name") or path.stem)
    try:
        _check_folder_names(name, cells)
    except UsageError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return GridSpec(
        name=name,
        cells=tuple(cells),
        seeds=_seeds(raw.get("seeds", 3)),
        world=raw.get("world"),
        paths=raw.get("paths"),
        overrides=tuple(map(str, raw.get("overrides") or ())),
        experiment=str(raw.get("experiment") or "cvil"),
        train_cmd=tuple(train_cmd.split() if isinstance(train_cmd, str) else map(str, train_cmd)),
        slurm=slurm,
        description=str(raw.get("description") or ""),
        source=text,
        path=str(path.resolve()),
    )


def _seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return tuple(range(value))
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise ConfigError(f"grid `seeds` must be a count or a list of integers, got {value!r}")


SHIPPED_ROOT = SHIPPED_CONFIG_ROOT  # holds the shipped `configs/` that the shipped grids name (inside the package)


def resolve_config(config: str, grid_file: str = "") -> str:
    """A cell's config path as an absolute path: relative to the grid file's folder, else to the shipped configs'
    root, else to the working folder; unchanged when none has it (validation then names the missing file).

    So a shipped grid (`configs/synthetic/kd.yaml`) runs from any folder, and a grid file beside its own configs
    finds them wherever it is run from.
    """
    path = Path(config).expanduser()
    if path.is_absolute():
        return str(path)
    bases = ([Path(grid_file).parent] if grid_file else []) + [SHIPPED_ROOT, Path.cwd()]
    for base in bases:
        if (base / path).is_file():
            return str((base / path).resolve())
    return config


def slug(text: str) -> str:
    """A folder- and run-name-safe form of a cell name (`w/o CLS` -> `wo-CLS`)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text.replace("/", "")).strip("-") or "cell"


def folder_name(text: str, what: str) -> str:
    """`slug(text)`, checked to be one plain folder name (`cvil.paths.safe_component`): a grid or cell named `..`
    must not put its runs outside the grid's folder."""
    return safe_component(slug(text), f"{what} {text!r} as folder name")


def _check_folder_names(grid: str, cells: tuple[Cell, ...] | list[Cell]) -> None:
    """Every folder name the grid's jobs get is plain, and no two cells share one (`w/o CLS` and `wo CLS`)."""
    folder_name(grid, "grid")
    seen: dict[str, str] = {}
    for cell in cells:
        folder = folder_name(cell.name, "cell")
        if folder in seen:
            raise UsageError(f"cells {seen[folder]!r} and {cell.name!r} would share the folder {folder!r}; "
                             "rename one")
        seen[folder] = cell.name


def world_overrides(world: dict | None, paths: dict | None, user_overrides: tuple[str, ...] = ()) -> list[str]:
    """The overrides that point every cell at the world (data, student init, teacher, tokenizers).

    A key the user set on the command line wins. Giving all of `data.root`, `kd.teacher` and `model.init` switches
    a synthetic grid to real data without editing it, and then the synthetic world is not even built.
    """
    given = {o.split("=", 1)[0].strip() for o in user_overrides}
    if paths:
        names = {"data_root": "data.root", "teacher": "kd.teacher", "student_init": "model.init",
                 "student_tokenizer": "model.tokenizer", "teacher_tokenizer": "kd.teacher_tokenizer"}
        unknown = sorted(set(paths) - set(names))
        if unknown:
            raise ConfigError(f"grid `paths:` has unknown keys {unknown}; valid: {sorted(names)}")
        pairs = [f"{names[k]}={v}" for k, v in paths.items() if v]
    elif world and not all(k in given for k in WORLD_KEYS):
        from cvil.world import ensure_world  # heavy (torch): only when a world is really needed

        pairs = ensure_world(str(world.get("root", "worlds/small")), str(world.get("preset", "small")),
                             int(world.get("seed", 0))).overrides()
    else:
        return []
    return [p for p in pairs if p.split("=", 1)[0] not in given]


def expand(
    spec: GridSpec,
    *,
    seeds: int | None = None,
    extra_overrides: tuple[str, ...] = (),
    world: list[str] | tuple[str, ...] = (),
    runs_dir: str = "runs",
    cells: tuple[str, ...] = (),
) -> list[Job]:
    """One `Job` per cell × seed (only `cells` if given); seeds outer, so early jobs cover every cell once."""
    unknown = sorted(set(cells) - {c.name for c in spec.cells})
    if unknown:
        raise ConfigError(f"grid {spec.name!r} has no cell {unknown}; cells: {[c.name for c in spec.cells]}")
    _check_folder_names(spec.name, spec.cells)
    chosen = spec.seeds[:seeds] if seeds else spec.seeds
    jobs = []
    for seed in chosen:
        for cell in (c for c in spec.cells if not cells or c.name in cells):
            out = str(Path(runs_dir) / slug(spec.name) / slug(cell.name) / f"seed{seed}")
            run_name = f"{slug(cell.name)}-s{seed}"
            overrides = (
                *world,
                *(o.replace(SEED_FIELD, str(seed)).replace(RUNS_DIR_FIELD, str(runs_dir))
                  for o in (*spec.overrides, *cell.overrides)),
                *extra_overrides,
                f"train.seed={seed}",
                f"output_dir={out}",
                f"tracking.run_name={run_name}",
                f"tracking.experiment={spec.experiment}",
                f"tracking.tags.{schema.GRID}={spec.name}",
                f"tracking.tags.{schema.CELL}={cell.name}",
                f"tracking.tags.cvil.seed={seed}",
            )
            jobs.append(Job(spec.name, cell.name, seed, resolve_config(cell.config, spec.path), overrides, out,
                            run_name))
    return jobs
