import base64
import json

import numpy as np
import pytest
import torch

from cvil.data.errors import DataFormatError
from cvil.data.region_features import FeatureSource, open_feature_source

D = 8


def make_features(seed=0, counts=(3, 60, 1)):
    rng = np.random.default_rng(seed)
    return {img_id: rng.standard_normal((n, D)).astype(np.float32) for img_id, n in zip((5, 12, 40), counts)}


def write_pt_dir(folder, features):
    folder.mkdir(parents=True, exist_ok=True)
    for img_id, array in features.items():
        torch.save(torch.from_numpy(array), folder / f"{img_id}.pt")
    return folder


def write_vinvl_pt(path, features):
    torch.save({img_id: torch.from_numpy(a) for img_id, a in features.items()}, path)
    return path


def write_tsv(path, features):
    """VinVL TSV + offset map, keys as strings (as VinVL writes them)."""
    offsets, position = {}, 0
    with open(path, "wb") as handle:
        for img_id, array in features.items():
            line = f"{img_id}\t{len(array)}\t".encode() + base64.b64encode(array.astype("<f4").tobytes()) + b"\n"
            offsets[str(img_id)] = position
            position += handle.write(line)
    offset_map = path.with_name(path.stem + "_offset_map.json")
    offset_map.write_text(json.dumps(offsets))
    return path, offset_map


@pytest.fixture
def sources(tmp_path):
    features = make_features()
    tsv, offset_map = write_tsv(tmp_path / "train_img_frcnn_feats.tsv", features)
    return features, [
        open_feature_source("pt-dir", write_pt_dir(tmp_path / "train", features)),
        open_feature_source("vinvl-pt", write_vinvl_pt(tmp_path / "train_img_frcnn_feats.pt", features)),
        open_feature_source("tsv", tsv, offset_map),
        open_feature_source("tsv", tsv),  # no offset map: one scan
    ]


def test_three_formats_read_the_same_ids_and_tensors(sources):
    features, readers = sources
    for reader in readers:
        assert isinstance(reader, FeatureSource)
        assert reader.ids() == sorted(features)
        for img_id, expected in features.items():
            got = reader.get(img_id)
            assert got.dtype == np.float32 and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)


def test_missing_image_is_named(sources):
    _, readers = sources
    for reader in readers:
        with pytest.raises(DataFormatError, match=r"img_id 999: expected region features for this image"):
            reader.get(999)


def test_wrong_dim_and_nan_are_named(tmp_path):
    features = make_features()
    features[12] = np.zeros((4, D + 1), np.float32)
    features[40][0, 3] = np.nan
    source = open_feature_source("pt-dir", write_pt_dir(tmp_path / "f", features), dim=D)
    with pytest.raises(DataFormatError, match=rf"12.pt: img_id 12: expected feature dim {D}, got dim {D + 1}"):
        source.get(12)
    with pytest.raises(DataFormatError, match=r"40.pt: img_id 40: expected finite features, got NaN/inf at region 0, dim 3"):
        source.get(40)


class Arbitrary:
    pass


def test_pt_file_with_other_content_is_refused(tmp_path):
    torch.save([1, 2], tmp_path / "1.pt")
    with pytest.raises(DataFormatError, match=r"1.pt: img_id 1: expected a feature tensor, got list"):
        open_feature_source("pt-dir", tmp_path).get(1)
    torch.save(Arbitrary(), tmp_path / "2.pt")  # weights_only=True refuses to rebuild arbitrary objects
    with pytest.raises(DataFormatError, match=r"2.pt: file: expected a tensor file loadable with weights_only=True"):
        open_feature_source("pt-dir", tmp_path).get(2)


def test_truncated_tsv_row_names_the_line(tmp_path):
    tsv, offset_map = write_tsv(tmp_path / "f.tsv", make_features())
    lines = tsv.read_bytes().split(b"\n")
    lines[1] = lines[1][: len(lines[1]) // 2 + 1]  # cut the base64 payload of the second row
    tsv.write_bytes(b"\n".join(lines))
    source = open_feature_source("tsv", tsv)
    np.testing.assert_array_equal(source.get(5), make_features()[5])
    with pytest.raises(DataFormatError, match=r"f.tsv: line 2 \(img_id 12\): expected .*truncated row"):
        source.get(12)
    lines[1] = b"12\t60"
    tsv.write_bytes(b"\n".join(lines))
    with pytest.raises(DataFormatError, match=r"line 2 \(img_id 12\): expected img_id .t num_boxes .t base64"):
        open_feature_source("tsv", tsv).get(12)


def test_offset_map_past_end_or_misaligned(tmp_path):
    tsv, offset_map = write_tsv(tmp_path / "f.tsv", make_features())
    size = tsv.stat().st_size
    offset_map.write_text(json.dumps({"5": 0, "12": size + 10}))
    with pytest.raises(DataFormatError, match=rf"f_offset_map.json: key '12': expected an offset inside f.tsv \({size} bytes\)"):
        open_feature_source("tsv", tsv, offset_map)
    offset_map.write_text(json.dumps({"5": 0, "12": 0}))
    with pytest.raises(DataFormatError, match=r"line 1 \(img_id 12\): expected the row of img_id 12 at byte 0, got key '5'"):
        open_feature_source("tsv", tsv, offset_map).get(12)


def test_unknown_source_suggests_a_name():
    with pytest.raises(ValueError, match=r"did you mean 'tsv'"):
        open_feature_source("tvs", "x")


def test_packing_any_format_gives_the_same_store(sources, tmp_path):
    from cvil.data.feature_store import FEATURES_FILE, INDEX_FILE, pack_features

    _, readers = sources
    packed = [tmp_path / f"packed{k}" for k in range(len(readers))]
    for reader, out in zip(readers, packed):
        pack_features(reader, out)
    for file in (FEATURES_FILE, INDEX_FILE):
        assert len({(out / file).read_bytes() for out in packed}) == 1


def test_vinvl_dict_file_is_memory_mapped_not_read_whole(tmp_path, monkeypatch):
    """A zip-format VinVL `.pt` is opened with torch.load(mmap=True): each image's bytes are read when used."""
    import torch as torch_module

    features = make_features()
    calls = []
    real_load = torch_module.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("mmap", False))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch_module, "load", spy)
    source = open_feature_source("vinvl-pt", write_vinvl_pt(tmp_path / "zip.pt", features))
    assert calls == [True]
    for img_id, array in features.items():
        np.testing.assert_array_equal(source.get(img_id), array)
    legacy = tmp_path / "legacy.pt"  # the pre-1.6 format cannot be mapped: read whole, as before
    torch.save({k: torch.from_numpy(v) for k, v in features.items()}, legacy, _use_new_zipfile_serialization=False)
    calls.clear()
    old = open_feature_source("vinvl-pt", legacy)
    assert calls == [False] and old.ids() == sorted(features)
    np.testing.assert_array_equal(old.get(12), features[12])
