import json

import numpy as np
import pytest
import torch

from cvil.data.errors import DataFormatError
from cvil.data.feature_store import FEATURES_FILE, INDEX_FILE, PackedFeatureStore, pack_features
from cvil.data.region_features import open_feature_source

D = 6


class ArraySource:
    """A FeatureSource over in-memory arrays (the readers themselves are tested in test_region_features)."""

    def __init__(self, features, path="mem"):
        self.features, self.path = features, __import__("pathlib").Path(path)

    def ids(self):
        return sorted(self.features)

    def get(self, img_id):
        return self.features[img_id]


def make_features(seed=0):
    rng = np.random.default_rng(seed)
    return {img_id: rng.standard_normal((n, D)).astype(np.float32) for img_id, n in [(3, 2), (1, 7), (9, 0), (4, 5)]}


def test_round_trip_within_fp16(tmp_path):
    features = make_features()
    store = pack_features(ArraySource(features), tmp_path / "packed")
    index = json.loads((tmp_path / "packed" / INDEX_FILE).read_text())
    assert index["dim"] == D and index["dtype"] == "float16"
    assert index["ids"] == {"1": [0, 7], "3": [7, 2], "4": [9, 5], "9": [14, 0]}
    store = PackedFeatureStore(tmp_path / "packed")  # reopen from disk
    assert store.ids() == [1, 3, 4, 9] and store.total_regions == 14 and store.dim == D
    for img_id, expected in features.items():
        got, n = store.get(img_id, max_regions=10)
        assert got.dtype == torch.float32 and got.shape == (10, D) and n == len(expected)
        np.testing.assert_allclose(got[:n].numpy(), expected, rtol=1e-3, atol=1e-3)
        assert not got[n:].any()


def test_truncates_to_max_regions_and_zero_pads(tmp_path):
    features = make_features()
    store = pack_features(ArraySource(features), tmp_path)
    got, n = store.get(1, max_regions=4)
    assert n == 4 and got.shape == (4, D)
    np.testing.assert_allclose(got.numpy(), features[1][:4], atol=1e-3)
    got, n = store.get(3, max_regions=4)
    assert n == 2 and not got[2:].any()
    batch, counts = store.get_batch([1, 9, 3, 1], max_regions=4)
    assert batch.shape == (4, 4, D) and counts.dtype == torch.long and counts.tolist() == [4, 0, 2, 4]
    for b, img_id in enumerate([1, 9, 3, 1]):
        assert torch.equal(batch[b], store.get(img_id, 4)[0])


def test_pack_is_deterministic(tmp_path):
    for name in ("a", "b"):
        pack_features(ArraySource(make_features()), tmp_path / name)
    for file in (FEATURES_FILE, INDEX_FILE):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


@pytest.mark.parametrize("value, message", [
    (np.nan, r"mem: img_id 4: expected finite features"),
    (1e6, r"mem: img_id 4: expected values within the float16 range"),
])
def test_pack_rejects_non_finite_and_overflowing_values(tmp_path, value, message):
    features = make_features()
    features[4][2, 1] = value
    with pytest.raises(DataFormatError, match=message):
        pack_features(ArraySource(features), tmp_path)
    assert not (tmp_path / INDEX_FILE).exists()  # nothing that looks like a finished store


def test_pack_rejects_a_second_width(tmp_path):
    features = make_features()
    features[4] = np.zeros((2, D + 2), np.float32)
    with pytest.raises(DataFormatError, match=rf"img_id 4: expected feature dim {D} \(as 2 images\), got dim {D + 2}"):
        pack_features(ArraySource(features), tmp_path)


def test_pack_blames_the_odd_width_even_when_it_sorts_first(tmp_path):
    """Issue 19: the first image fixed the width, so the good second image was blamed; name the odd `.pt` file."""
    folder = tmp_path / "train"
    folder.mkdir()
    for img_id, width in [(1, D + 1), (2, D), (3, D), (4, D)]:
        torch.save(torch.ones(3, width), folder / f"{img_id}.pt")
    with pytest.raises(DataFormatError) as err:
        pack_features(open_feature_source("pt-dir", folder), tmp_path / "packed")
    assert str(err.value).startswith(f"{folder / '1.pt'}: img_id 1: expected feature dim {D} (as 3 images), "
                                     f"got dim {D + 1}")


def test_missing_image_and_damaged_store(tmp_path):
    store = pack_features(ArraySource(make_features()), tmp_path)
    with pytest.raises(DataFormatError, match=r"img_id 77: expected region features for this image, got not in the packed store"):
        store.get_batch([1, 77], 4)
    with open(tmp_path / FEATURES_FILE, "ab") as handle:
        handle.write(b"\0\0")
    with pytest.raises(DataFormatError, match=r"features.f16: file size: expected 168 bytes"):
        PackedFeatureStore(tmp_path)


def test_store_pickles_without_its_memmap(tmp_path):
    import pickle

    store = pack_features(ArraySource(make_features()), tmp_path)
    store.get(1, 2)
    clone = pickle.loads(pickle.dumps(store))
    assert clone._array is None and torch.equal(clone.get(1, 3)[0], store.get(1, 3)[0])


def test_pack_from_a_real_reader(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    features = {k: v for k, v in make_features().items() if len(v)}
    for img_id, array in features.items():
        torch.save(torch.from_numpy(array), folder / f"{img_id}.pt")
    store = pack_features(open_feature_source("pt-dir", folder), tmp_path / "packed")
    assert store.ids() == sorted(features)


# ------------------------------------------------------------------------------------------- packing at scale

def test_pack_keeps_the_regions_training_reads_and_records_it(tmp_path):
    rng = np.random.default_rng(1)
    features = {1: rng.standard_normal((80, D)).astype(np.float32), 2: rng.standard_normal((7, D)).astype(np.float32)}
    store = pack_features(ArraySource(features), tmp_path / "default")  # new packs: the first 50 regions
    index = json.loads((tmp_path / "default" / INDEX_FILE).read_text())
    assert (index["max_regions"], index["truncated_images"], store.max_regions) == (50, 1, 50)
    assert store.num_regions(1) == 50 and store.total_regions == 57
    got, n = store.get(1, max_regions=50)
    assert n == 50 and torch.equal(got, torch.from_numpy(features[1][:50].astype(np.float16).astype(np.float32)))
    every = pack_features(ArraySource(features), tmp_path / "all", max_regions=None)
    assert every.max_regions is None and every.num_regions(1) == 80
    assert torch.equal(every.get(1, max_regions=50)[0], got)  # what training reads is the same


def test_pack_with_worker_processes_is_byte_identical(tmp_path):
    folder = tmp_path / "pt"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for img_id in range(12):
        torch.save(torch.from_numpy(rng.standard_normal((int(rng.integers(0, 70)), D)).astype(np.float32)),
                   folder / f"{img_id}.pt")
    source = open_feature_source("pt-dir", folder)
    pack_features(source, tmp_path / "one")
    pack_features(source, tmp_path / "two", workers=2)
    for name in (FEATURES_FILE, INDEX_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    torch.save(torch.full((3, D), float("nan")), folder / "5.pt")  # an error in a worker: the same one-line error
    with pytest.raises(DataFormatError, match=r"5\.pt: img_id 5: expected finite features"):
        pack_features(source, tmp_path / "bad", workers=2)


def test_training_refuses_a_store_packed_with_fewer_regions(tmp_path):
    from cvil.data import layout
    from cvil.data.errors import DataSetupError
    from cvil.train.data_setup import feature_store
    from cvil.train.distributed import DistInfo

    folder = tmp_path / "vg"
    pack_features(ArraySource(make_features()), layout.packed_store_path(folder, "train"), max_regions=4)
    assert feature_store(folder, "train", DistInfo(), max_regions=4).max_regions == 4
    with pytest.raises(DataSetupError, match=r"packed with at most 4 regions per image, but data.max_regions is 5: "
                                             r"re-pack it with `cvil data pack \.\.\. --max-regions 5`"):
        feature_store(folder, "train", DistInfo(), max_regions=5)
