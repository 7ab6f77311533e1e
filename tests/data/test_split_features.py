"""The one choice "current packed store, else per-image .pt files" (`cvil.data.split_features`)."""

import os

import pytest
import torch

from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.feature_store import pack_features, source_fingerprint
from cvil.data.region_features import PtDirSource
from cvil.data.split_features import open_split_features, store_is_current


def _pt_dir(folder, dim=4):
    pt = layout.feature_dir(folder, "train")
    pt.mkdir(parents=True)
    torch.save(torch.ones(3, dim), pt / "1.pt")
    torch.save(torch.zeros(0, dim), pt / "2.pt")
    return pt


def test_neither_is_one_error_naming_both_paths(tmp_path):
    with pytest.raises(DataFormatError) as err:
        open_split_features(tmp_path, "train")
    message = str(err.value)
    assert "\n" not in message
    assert str(layout.feature_dir(tmp_path, "train")) in message
    assert str(layout.packed_store_path(tmp_path, "train")) in message


def test_per_image_files_when_there_is_no_store(tmp_path):
    _pt_dir(tmp_path)
    features = open_split_features(tmp_path, "train")
    assert features.store is None and not features.stale and not store_is_current(tmp_path, "train")
    assert features.ids() == [1, 2] and features.dim == 4
    feats, n = features.get(1, 5)
    assert feats.shape == (5, 4) and n == 3 and features.width(2) == -1


def test_a_current_store_is_read_and_a_stale_one_is_not(tmp_path):
    pt = _pt_dir(tmp_path)
    packed = layout.packed_store_path(tmp_path, "train")
    pack_features(PtDirSource(pt), packed, source_key=source_fingerprint(pt), progress=False)
    features = open_split_features(tmp_path, "train")
    assert features.store is not None and features.source is None and not features.stale
    assert features.ids() == [1, 2] and features.dim == 4 and features.get(1, 2)[1] == 2
    torch.save(torch.ones(1, 4), pt / "3.pt")  # a file added after packing: the store is out of date
    os.utime(pt / "3.pt")
    features = open_split_features(tmp_path, "train")
    assert features.stale and features.store is None and features.ids() == [1, 2, 3]
    assert not store_is_current(tmp_path, "train")


def test_a_store_without_a_per_image_folder_is_taken_as_it_is(tmp_path):
    pt = _pt_dir(tmp_path / "elsewhere")
    pack_features(PtDirSource(pt), layout.packed_store_path(tmp_path, "train"), progress=False)
    features = open_split_features(tmp_path, "train")
    assert features.store is not None and store_is_current(tmp_path, "train") and features.dim == 4
