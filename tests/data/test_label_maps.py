import pickle

import pytest

from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.label_maps import load_label_maps, save_label_maps
from cvil.data.safe_pickle import load_restricted_pickle


def test_save_load_round_trip(tmp_path):
    saved = save_label_maps(tmp_path, ["yes", "no", "白", "2"])
    loaded = load_label_maps(tmp_path)
    assert loaded == saved and loaded.num_labels == 4
    assert loaded.ans2label == {"yes": 0, "no": 1, "白": 2, "2": 3} and loaded.label2ans[2] == "白"
    with pytest.raises(ValueError, match="duplicate answer 'no'"):
        save_label_maps(tmp_path, ["no", "no"])


def test_label2ans_as_int_dict_and_optional(tmp_path):
    (tmp_path / layout.ANS2LABEL).write_bytes(pickle.dumps({"a": 0, "b": 1}))
    assert load_label_maps(tmp_path).label2ans == ["a", "b"]  # derived from ans2label
    (tmp_path / layout.LABEL2ANS).write_bytes(pickle.dumps({1: "b", 0: "a"}))
    assert load_label_maps(tmp_path).label2ans == ["a", "b"]


def test_inconsistent_maps_name_the_label(tmp_path):
    (tmp_path / layout.ANS2LABEL).write_bytes(pickle.dumps({"a": 0, "b": 1}))
    (tmp_path / layout.LABEL2ANS).write_bytes(pickle.dumps(["b", "a"]))
    with pytest.raises(DataFormatError, match=r"trainval_label2ans.pkl: label 0: expected 'a'"):
        load_label_maps(tmp_path)


def _malicious_pickle(marker):
    """Protocol-0 opcodes: GLOBAL os.system, push a command string, TUPLE, REDUCE -> os.system(command)."""
    command = f"touch {marker}"
    return b"cos\nsystem\n(V" + command.encode() + b"\ntR."


def test_rejects_pickle_that_imports_os_system_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = _malicious_pickle(marker)
    path = tmp_path / layout.ANS2LABEL
    path.write_bytes(payload)
    with pytest.raises(DataFormatError, match=r"trainval_ans2label.pkl: pickle: .*refusing to import.*os.system"):
        load_label_maps(tmp_path)
    assert not marker.exists()


def test_rejects_stack_global_and_non_builtin_types(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": __import__("collections").OrderedDict()}, protocol=4))  # STACK_GLOBAL
    with pytest.raises(DataFormatError, match=r"collections.OrderedDict"):
        load_restricted_pickle(path)
    path.write_bytes(pickle.dumps({"a": {1, 2}}, protocol=4))  # EMPTY_SET needs no import: caught by the type walk
    with pytest.raises(DataFormatError, match=r"x.pkl: pickle: expected only .*got a set"):
        load_restricted_pickle(path)
    path.write_bytes(b"\x80\x04\x95")  # truncated
    with pytest.raises(DataFormatError, match=r"expected a valid pickle"):
        load_restricted_pickle(path)


def test_wrong_shapes_of_content(tmp_path):
    (tmp_path / layout.ANS2LABEL).write_bytes(pickle.dumps(["a"]))
    with pytest.raises(DataFormatError, match=r"top level: expected a dict"):
        load_label_maps(tmp_path)
    (tmp_path / layout.ANS2LABEL).write_bytes(pickle.dumps({"a": 0, "b": 2}))
    with pytest.raises(DataFormatError, match=r"values: expected distinct label ids 0..1"):
        load_label_maps(tmp_path)
