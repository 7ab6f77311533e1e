"""Every leaderboard row names a cell of the grid it reads, and every cell of every shipped grid has a config that
loads with the grid's overrides (a renamed cell or a broken config fails here, not after hours of grid runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.grid.spec import expand, load_grid, shipped_grids
from cvil.config import load_config
from leaderboards.spec import load_specs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("spec", load_specs(), ids=lambda s: s.id)
def test_every_spec_row_names_a_cell_of_the_grid_it_reads(spec):
    for column in spec.columns:
        if column.published_only:  # no runs of ours: the column reads no grid
            continue
        grid = load_grid(spec.grid_for(column))
        assert grid.name == spec.grid_for(column), f"{spec.id}: grid file {spec.grid_for(column)} is named {grid.name}"
        cells = {c.name for c in grid.cells}
        for row in spec.rows:
            assert row.cell_for(column) in cells, (
                f"{spec.id}: row {row.label!r}, column {column.key!r} reads cell {row.cell_for(column)!r}, "
                f"not in grid {grid.name} ({sorted(cells)})")


@pytest.mark.parametrize("name", shipped_grids())
def test_every_grid_cell_config_loads_with_the_grid_overrides(name, monkeypatch):
    monkeypatch.chdir(REPO)  # cell configs are named relative to the repository root
    grid = load_grid(name)
    jobs = expand(grid, seeds=1)  # the exact `cvil train` overrides of each cell, minus the world's paths
    assert {job.cell for job in jobs} == {cell.name for cell in grid.cells}
    for job in jobs:
        cfg = load_config(job.config, list(job.overrides))
        assert cfg.train.seed == grid.seeds[0] and cfg.tracking.tags["cvil.cell"] == job.cell
