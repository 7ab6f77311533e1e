"""What a user meets on the command line: one-line errors with exit 2 (no traceback) and help on every option."""

from __future__ import annotations

import json

import pytest

from bench.cli import main as bench_main
from cvil.cli import main as cvil_main


def _run(main, argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_synth_into_a_non_empty_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mine.txt").write_text("keep me")
    code, _, err = _run(cvil_main, ["synth", "--preset", "tiny", "--out", str(tmp_path / "w")], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"cvil synth: {tmp_path / 'w'} is not empty; pass --force to replace the "
                                        "synthetic world in it"]


def test_demo_unknown_preset_lists_the_presets(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(cvil_main, ["demo", "--preset", "huge"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "invalid choice: 'huge'" in err and "'tiny', 'small', 'small-v2', 'medium'" in err
    assert not (tmp_path / "worlds").exists()  # refused before any work


def test_demo_refuses_a_world_of_another_preset(capsys, tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "world.json").write_text(json.dumps({"preset": "tiny", "seed": 0}))
    code, _, err = _run(cvil_main, ["demo", "--root", str(tmp_path / "w")], capsys)  # default preset small
    assert code == 2 and "Traceback" not in err
    assert "holds the synthetic world preset 'tiny' seed 0, not preset 'small' seed 0" in err


def test_demo_uses_one_folder_per_preset(capsys):
    code, out, _ = _run(cvil_main, ["demo", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0 and "worlds/<preset>" in text and "runs/demo/<preset>" in text
    assert "tiny, small, small-v2, medium" in text


def test_ui_port_out_of_range_names_the_port(capsys):
    code, _, err = _run(bench_main, ["ui", "--port", "99999999"], capsys)
    assert code == 2 and "Traceback" not in err and "exited with code 0" not in err
    assert "argument --port: port must be in 1-65535, got 99999999" in err


def test_unknown_grid_is_one_line(capsys):
    code, _, err = _run(bench_main, ["grid", "no_such_grid"], capsys)
    assert code == 2 and err.count("\n") == 1 and "unknown grid 'no_such_grid'; shipped grids:" in err


def test_compare_of_a_missing_file_is_one_line(tmp_path, capsys):
    missing = tmp_path / "a.csv"
    code, _, err = _run(bench_main, ["compare", str(missing), str(missing)], capsys)
    assert code == 2 and err.strip().splitlines() == [f"cvil-bench compare: {missing}: no such file"]


def test_leaderboard_of_an_unknown_table_is_one_line(tmp_path, capsys):
    code, _, err = _run(bench_main, ["leaderboard", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                                     "--out", str(tmp_path / "lb"), "--tables", "no_such_table"], capsys)
    assert code == 2 and "Traceback" not in err  # (MLflow logs its own INFO lines when it creates the store)
    assert err.strip().splitlines()[-1].startswith("cvil-bench leaderboard: unknown table id(s) ['no_such_table']")


def test_align_without_the_language_field_names_the_row(tmp_path, capsys):
    src = tmp_path / "q.json"
    src.write_text(json.dumps([{"en": "what is it ?", "q_id": 4}]), encoding="utf-8")
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 12}))  # an encoder folder (not loaded)
    code, _, err = _run(cvil_main, ["align", "--input", str(src), "--lang", "ja", "--model", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"cvil align: {src} row 0 (q_id 4): fields: expected a 'ja' question field" in err


def test_kd_cache_of_a_config_without_a_kd_stage_is_one_line(tmp_path, capsys):
    from cvil.world import CONFIG_DIR

    config = CONFIG_DIR / "synthetic" / "baseline.yaml"
    code, _, err = _run(cvil_main, ["kd-cache", "--config", str(config), "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and err.strip().splitlines() == [f"cvil kd-cache: {config} has no KD stage"]


@pytest.mark.parametrize("argv", [["predict", "--help"], ["demo", "--help"]])
def test_cvil_options_all_have_help(argv, capsys):
    _assert_every_option_has_help(cvil_main, argv, capsys)


@pytest.mark.parametrize("argv", [["search", "--help"], ["ui", "--help"], ["grid", "--help"]])
def test_bench_options_all_have_help(argv, capsys):
    _assert_every_option_has_help(bench_main, argv, capsys)


def _assert_every_option_has_help(main, argv, capsys):
    """Every `--option` line of the help has a description, on the same or the next line."""
    code, out, _ = _run(main, argv, capsys)
    assert code == 0
    lines = out.split("options:", 1)[1].splitlines()
    bare = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not line.startswith("  -"):  # an option line (wrapped help lines are indented further)
            continue
        parts = stripped.split("  ", 1)  # argparse puts two spaces between the option and its help
        has_next = i + 1 < len(lines) and lines[i + 1].startswith(" " * 8) and not lines[i + 1].strip().startswith("-")
        if len(parts) == 1 and not has_next:
            bare.append(stripped)
    assert not bare, f"options without help in `{' '.join(argv)}`: {bare}"
