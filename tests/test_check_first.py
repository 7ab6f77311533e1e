"""Check before you build: every command checks its arguments, configs and paths before minutes of work (one line,
exit 2); an interrupted world build ends with one line, no traceback; help on every option of every command; the
README's install and test lines stay true (CI runs the test line verbatim)."""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import COMMANDS as BENCH_COMMANDS
from bench.cli import build_parser as bench_parser
from bench.cli import main as bench_main
from cvil.cli import COMMANDS as CVIL_COMMANDS
from cvil.cli import build_parser as cvil_parser
from cvil.cli import main as cvil_main

REPO = Path(__file__).resolve().parents[1]


def _run(main, argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------------ search


@pytest.mark.parametrize("argv, message", [
    (["--config", "nonexist.yaml", "--trials", "1"], "cvil-bench search: config file not found: "),
    (["--config", "{base}", "--trials", "0"], "cvil-bench search: --trials must be at least 1, got 0"),
    (["--config", "{base}", "no.such_key=1"], "cvil-bench search: "),
])
def test_search_checks_its_config_before_building_the_world(argv, message, tmp_path, monkeypatch, capsys):
    from cvil.world import CONFIG_DIR

    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{base}", str(CONFIG_DIR / "synthetic" / "kd.yaml")) for a in argv]
    line = _one_line(*_run(bench_main, ["search", *argv], capsys)[::2])
    assert line.startswith(message)
    assert not (tmp_path / "worlds").exists() and not (tmp_path / "runs").exists()  # nothing was built


def test_search_layer_candidates_are_checked_by_argparse(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(bench_main, ["search", "--config", "x.yaml", "--layer-candidates", "3,six"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "argument --layer-candidates: expected comma-separated layer numbers, got '3,six'" in err


# ------------------------------------------------------------------------------------------- align, add-language


def _encoder(folder: Path, layers: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": layers}))
    return folder


def _qla(tmp_path: Path) -> Path:
    src = tmp_path / "q.json"
    src.write_text(json.dumps([{"en": "what color is it ?", "ja": "何色ですか", "q_id": 1}]), encoding="utf-8")
    return src


def test_align_refuses_a_too_deep_layer_before_loading_the_model(tmp_path, capsys):
    model = _encoder(tmp_path / "enc6", 6)  # config only: a load would fail, so a pass means nothing was loaded
    line = _one_line(*_run(cvil_main, ["align", "--input", str(_qla(tmp_path)), "--lang", "ja", "--model",
                                       str(model)], capsys)[::2])
    assert line == (f"cvil align: --layer 8 is outside 0..6 for the 6-layer encoder in {model} (0 = the embeddings; "
                    "awesome-align's 8 is for 12-layer models): pass e.g. --layer 4")


def test_align_with_a_missing_model_folder_is_one_line(tmp_path, capsys):
    line = _one_line(*_run(cvil_main, ["align", "--input", str(_qla(tmp_path)), "--lang", "ja", "--model",
                                       str(tmp_path / "nope")], capsys)[::2])
    assert line.startswith(f"cvil align: --model {tmp_path / 'nope'}: no such folder")


@pytest.mark.parametrize("missing", ["--input", "--model"])
def test_align_without_input_or_model_is_an_argparse_error(missing, tmp_path, capsys):
    argv = {"--input": str(_qla(tmp_path)), "--lang": "ja", "--model": str(_encoder(tmp_path / "m", 12))}
    argv.pop(missing)
    code, _, err = _run(cvil_main, ["align", *[x for kv in argv.items() for x in kv]], capsys)
    assert code == 2 and "Traceback" not in err and f"the following arguments are required: {missing}" in err


def test_add_language_checks_the_aligner_before_reading_or_translating(tmp_path, capsys):
    model = _encoder(tmp_path / "enc6", 6)
    # --mt-model points nowhere: the aligner is refused before the (hours-long) translation step is even tried
    line = _one_line(*_run(cvil_main, [
        "data", "add-language", "--qla", str(_qla(tmp_path)), "--lang", "ja", "--translations",
        str(tmp_path / "t.tsv"), "--aligner", str(model), "--mt-model", str(tmp_path / "no-mt"),
        "--out", str(tmp_path / "o.json")], capsys)[::2])
    assert line.startswith("cvil data: --layer 8 is outside 0..6 for the 6-layer encoder")
    from cvil.data.prepare.add_language import add_language
    from cvil.errors import UsageError

    with pytest.raises(UsageError, match="--aligner .*no-such: no such folder"):  # the library call too, no ValueError
        add_language(qla=tmp_path / "q.json", lang="ja", translations=tmp_path / "t.tsv", out=tmp_path / "o.json",
                     aligner=str(tmp_path / "no-such"))


# ------------------------------------------------------------------------------------------------ nox


class _Stop(Exception):
    pass


class _Session:
    def __init__(self, posargs):
        self.posargs, self.installed = posargs, []

    def error(self, message):
        raise _Stop(message)

    def install(self, *args):
        self.installed.append(args)

    def run(self, *args, **kwargs):
        pass


def test_nox_dashboard_checks_the_journal_before_installing(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO))
    try:
        import noxfile
    finally:
        sys.path.remove(str(REPO))
    monkeypatch.chdir(tmp_path)
    session = _Session([str(tmp_path / "missing.journal")])
    with pytest.raises(_Stop, match="missing.journal: no such journal file"):
        noxfile.dashboard(session)
    assert session.installed == []  # refused before the minutes-long install
    session = _Session([])
    with pytest.raises(_Stop, match="found 0 journals under runs/search/"):
        noxfile.dashboard(session)
    assert session.installed == []
    journal = tmp_path / "runs" / "search" / "s.journal"
    journal.parent.mkdir(parents=True)
    journal.write_text("")
    session = _Session(["--port", "8081"])
    noxfile.dashboard(session)
    assert session.installed and noxfile.dashboard_args(["--port", "8081"], session.error) == [
        str(Path("runs/search/s.journal")), "--port", "8081"]


# ------------------------------------------------------------------------------------------- interrupted world


def test_sigterm_while_generating_the_world_is_one_line_and_leaves_nothing_half_built(tmp_path, monkeypatch,
                                                                                      capsys):
    import cvil.data.synth.writer as writer

    def killed(*args, **kwargs):
        handler = signal.getsignal(signal.SIGTERM)  # what a SIGTERM now would run (the default would kill pytest)
        assert callable(handler), "no SIGTERM handler while the world is generated"
        handler(signal.SIGTERM, None)
        raise AssertionError("the SIGTERM handler did not stop the world build")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(writer, "_jvg", killed)  # inside generate(), after its temporary folder exists
    root = tmp_path / "w"
    code, _, err = _run(cvil_main, ["demo", "--preset", "tiny", "--root", str(root), "--out", str(tmp_path / "r")],
                        capsys)
    assert code == 128 + signal.SIGTERM and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"cvil demo: stopped by SIGTERM while generating the synthetic world in {root}; run the same command again "
        "to continue (finished parts are kept)")
    assert not list(tmp_path.glob(".w.synth-tmp-*")) and not (root / "world.json").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the build's only


def test_sigterm_in_a_real_process_during_the_world_build_prints_no_traceback(tmp_path):
    """The whole path in a child process: SIGTERM while `cvil demo` generates its world."""
    code = ("import os, signal, cvil.data.synth.writer as w\n"
            "w._jvg = lambda *a, **k: os.kill(os.getpid(), signal.SIGTERM)\n"
            "from cvil.cli import main\n"
            f"raise SystemExit(main(['demo', '--preset', 'tiny', '--root', {str(tmp_path / 'w')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 143 and "Traceback" not in proc.stderr, proc.stderr
    assert "cvil demo: stopped by SIGTERM while generating the synthetic world" in proc.stderr


# ------------------------------------------------------------------------------------------------- help


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    bare = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                bare += _options_without_help(sub, f"{path} {name}")
        elif isinstance(action, argparse._HelpAction):
            continue
        elif not action.help or action.help == argparse.SUPPRESS:
            bare.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return bare


def _walk(prog: str, commands: dict[str, str], build) -> list[str]:
    bare = []
    for name in commands:
        parser = build([name])  # only the command's own module registers fully
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        assert sub.description or sub.format_help(), name
        bare += _options_without_help(sub, f"{prog} {name}")
    return bare


def test_every_option_of_every_cvil_command_has_help():
    assert _walk("cvil", CVIL_COMMANDS, cvil_parser) == []


def test_every_option_of_every_cvil_bench_command_has_help():
    assert _walk("cvil-bench", BENCH_COMMANDS, bench_parser) == []


# ------------------------------------------------------------------------------------------------ README


def _readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command_verbatim():
    readme_lines = [ln for ln in _readme().splitlines() if "pytest" in ln and ln.startswith("python3 -m venv")]
    assert readme_lines, "the README's test command is missing"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert readme_lines[0] in ci


def test_readme_says_which_torch_build_the_install_gets():
    text = " ".join(_readme().split())
    assert "resolves to a CPU build where no GPU exists" not in text  # false on the public index
    assert "https://download.pytorch.org/whl/cpu" in text and "CUDA build" in text
    assert re.search(r"--index-url https://download.pytorch.org/whl/cu\d+", text)
