"""Issue 19: untrusted and corrupted files. No plain unpickling anywhere in the source; bad `.pt` files fail with a
message naming the file and never with torch's advice to retry with `weights_only=False`."""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import pytest
import torch

from cvil.torch_files import UnreadableFileError, load_torch_file

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for top in ("cvil", "bench", "leaderboards") for p in (REPO / top).rglob("*.py"))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that unpickle without restriction: pickle.load(s) / Unpickler(...).load() from the stdlib module (names
    imported from it count too), torch.load without weights_only=True, numpy.load with allow_pickle=True."""
    from_pickle = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   and node.module in ("pickle", "_pickle", "cPickle", "dill", "joblib") for alias in node.names}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kwargs = {k.arg: k.value for k in node.keywords}
        if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "dill.loads", "joblib.load") or (
                name in from_pickle and name in ("load", "loads", "Unpickler")):
            found.append((node.lineno, name))
        elif name == "torch.load" or name.endswith(".torch.load"):
            value = kwargs.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                found.append((node.lineno, f"{name} without weights_only=True"))
        elif name in ("np.load", "numpy.load"):
            value = kwargs.get("allow_pickle")
            if isinstance(value, ast.Constant) and value.value is True:
                found.append((node.lineno, f"{name}(allow_pickle=True)"))
    return found


def test_the_walker_finds_what_it_looks_for():
    bad = ("import pickle, torch\nfrom pickle import loads\npickle.load(f)\nloads(b)\ntorch.load(p)\n"
           "torch.load(p, weights_only=False)\nimport numpy as np\nnp.load(p, allow_pickle=True)\n")
    good = "import torch\ntorch.load(p, map_location='cpu', weights_only=True)\n"
    assert [line for line, _ in _unsafe_calls(ast.parse(bad))] == [3, 4, 5, 6, 8]
    assert _unsafe_calls(ast.parse(good)) == []


def test_no_plain_unpickling_in_the_source():
    assert len(SOURCES) > 50
    offenders = [f"{path.relative_to(REPO)}:{line}: {what}" for path in SOURCES
                 for line, what in _unsafe_calls(ast.parse(path.read_text(encoding="utf-8")))]
    assert offenders == []


def test_probe_reads_label_maps_through_the_restricted_unpickler(tmp_path):
    from cvil.data import layout
    from cvil.data.errors import DataFormatError
    from cvil.data.synth.probe import _num_labels

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / layout.LABEL2ANS).write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DataFormatError, match=rf"{layout.LABEL2ANS}: pickle: expected only builtin data"):
        _num_labels(tmp_path)
    assert not marker.exists()
    (tmp_path / layout.LABEL2ANS).write_bytes(pickle.dumps(["a", "b", "c"]))
    assert _num_labels(tmp_path) == 3


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.randn(64, 8)}, good)
    data = good.read_bytes()
    files = {"empty": b"", "truncated_head": data[:100], "truncated_half": data[: len(data) // 2],
             "truncated_tail": data[:-30], "garbage": bytes(range(256)) * 4}

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    files["pickled_code"] = pickle.dumps(Payload())
    out = {}
    for name, content in files.items():
        out[name] = tmp_path / f"{name}.pt"
        out[name].write_bytes(content)
    code = tmp_path / "torch_saved_code.pt"
    torch.save(Payload(), code)
    out["torch_saved_code"] = code
    return out


@pytest.mark.parametrize("kind", ["empty", "truncated_head", "truncated_half", "truncated_tail", "garbage",
                                  "pickled_code", "torch_saved_code"])
def test_a_bad_pt_file_is_named_and_no_unsafe_advice_is_given(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(UnreadableFileError) as err:
        load_torch_file(path, what="a cvil checkpoint")
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read it as a cvil checkpoint (") and "\n" not in message
    assert "weights_only" not in message.replace("weights_only=True", "") and "will likely succeed" not in message


def test_bad_feature_and_checkpoint_files_are_named(tmp_path):
    from cvil.data.errors import DataFormatError
    from cvil.data.region_features import PtDirSource
    from cvil.fileio import sha256_file
    from cvil.train.checkpointing import atomic_torch_save, verified_torch_load

    folder = tmp_path / "train"
    folder.mkdir()
    torch.save(torch.ones(2, 4), folder / "1.pt")
    (folder / "2.pt").write_bytes((folder / "1.pt").read_bytes()[:50])
    with pytest.raises(DataFormatError, match=rf"{folder / '2.pt'}: file: expected a tensor file loadable with "
                                              r"weights_only=True, got RuntimeError"):
        PtDirSource(folder).get(2)
    ckpt = tmp_path / "last.pt"
    atomic_torch_save({"w": torch.ones(3)}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:-40])  # truncated after the save, checksum fixed up to match
    (tmp_path / "last.pt.sha256").write_text(sha256_file(ckpt) + "\n")
    with pytest.raises(UnreadableFileError, match=rf"{ckpt}: cannot read it as a cvil checkpoint"):
        verified_torch_load(ckpt)
