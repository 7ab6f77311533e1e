"""`python -m bench.knob`: world v3's knob table — comparisons per knob setting, wide seed ranges marked, missing
cells said, never silently dropped."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.grid.spec import expand, load_grid
from bench.knob import COMPARISONS, KD_EPOCHS_COMPARISONS, KNOBS, PAIRED_COMPARISONS, to_markdown


def test_every_knob_setting_names_grids_that_exist_on_its_world():
    for teacher_images, suffix in KNOBS.items():
        for table, grid_a, cell_a, grid_b, cell_b in (*COMPARISONS, *PAIRED_COMPARISONS, *KD_EPOCHS_COMPARISONS):
            for grid, cell in {(grid_a + suffix, cell_a), (grid_b + suffix, cell_b)}:
                spec = load_grid(grid)
                assert spec.world["preset"] == ("small" if teacher_images == 6000 else f"small@teacher={teacher_images}")
                assert cell in {c.name for c in spec.cells}


def test_a_paired_grid_gives_each_student_seed_the_teacher_of_its_own_seed():
    for suffix in KNOBS.values():
        spec = load_grid("knob_paired" + suffix)
        for job in expand(spec, world=["kd.teacher=worlds/any/teacher/oscar"]):
            teachers = [o for o in job.overrides if o.startswith("kd.teacher=")]
            # the world's teacher first, then the seed's (the last one wins), trained by `bench.teacher_seeds`
            assert teachers[-1] == f"kd.teacher=runs/teacher_seeds{suffix}/teacher/seed{job.seed}/oscar"
        # `--runs-dir` moves where `bench.teacher_seeds --runs-dir` put the teachers, and the grid follows
        for job in expand(spec, runs_dir="/elsewhere/runs"):
            assert f"kd.teacher=/elsewhere/runs/teacher_seeds{suffix}/teacher/seed{job.seed}/oscar" in job.overrides
            assert job.output_dir.startswith("/elsewhere/runs/knob_paired")
        # the cells are those of the tables they stand in for, with the same configs and overrides
        assert {(c.config, c.overrides) for c in spec.cells} == {(c.config, c.overrides) for g in ("table3_ablations",
                                                                   "table4_vqa_ja") for c in load_grid(g).cells
                                                                 if c.name != "BASELINE" and c.name != "AUG"}


def test_markdown_marks_a_wide_seed_range_and_says_why_a_cell_is_missing():
    frame = pd.DataFrame([
        {"teacher_images": 0, "teacher_en_val": 91.2, "table": "I", "A": "AUG", "B": "KD", "seeds": "5/5",
         "mean_A": 37.8, "mean_B": 33.8, "delta": -4.0, "ci_low": -12.0, "ci_high": -0.5, "p": 0.1, "p_holm": 0.3,
         "A_seeds": "36.8 / 37.7", "B_seeds": "36.1 / 26.7", "A_range": 0.9, "B_range": 9.4, "note": ""},
        {"teacher_images": 0, "teacher_en_val": 91.2, "table": "III", "A": "KD", "B": "w/o CLS",
         "note": "no finished runs for cell 'w/o CLS' in grid 'table3_ablations_t0'"},
        # --paired: no one teacher for the row, each seed's own (the world's teacher would be the wrong number)
        {"teacher_images": 0, "teacher_en_val": None, "teachers_per_seed": "93.4 / 91.2", "table": "I", "A": "AUG",
         "B": "KD", "note": "no finished runs for cell 'KD' in grid 'knob_paired_t0'"},
    ])
    lines = to_markdown(frame).splitlines()
    assert lines[4].startswith("| 0 | 93.4 / 91.2 | I | KD − AUG |")
    assert lines[2].endswith("| 36.8 / 37.7 | 36.1 / 26.7 ⚠ wide |") and "| -4.00 | [-12.00, -0.50] | 0.3000 |" in lines[2]
    assert lines[3].endswith("| no finished runs for cell 'w/o CLS' in grid 'table3_ablations_t0' |")
    assert "nan" not in "\n".join(lines)


def test_the_command_reports_the_chosen_tables_and_says_what_is_missing(mlflow_store, tmp_path):
    from bench.knob import main

    assert main(["--paired", "--tables", "I", "--out", str(tmp_path / "knob")]) == 0
    lines = (tmp_path / "knob.md").read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.startswith("| ") and "KD − AUG" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| 0", "| 2000", "| 6000"]  # Table I only, every knob setting
    assert all("no finished runs for cell 'AUG' in grid 'table1_ja'" in r for r in rows)
    assert sum("not trained: python -m bench.teacher_seeds" in line for line in lines) == 3
    assert (tmp_path / "knob.csv").is_file() and (tmp_path / "knob_teacher_seeds.csv").is_file()

    assert main(["--kd-epochs", "--teacher-images", "6000", "--out", str(tmp_path / "kd9")]) == 0
    rows = [line for line in (tmp_path / "kd9.md").read_text(encoding="utf-8").splitlines() if line.startswith("| 6000") and " − " in line]
    assert [r.split(" | ")[3] for r in rows] == ["KD, 9 KD epochs − AUG", "KD, 9 KD epochs − KD",
                                                 "KD paired, 9 KD epochs − AUG", "KD paired, 9 KD epochs − KD"]
    with pytest.raises(SystemExit) as stop:  # two tables at once: one line from argparse, exit 2
        main(["--paired", "--kd-epochs"])
    assert stop.value.code == 2
