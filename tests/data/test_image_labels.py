import json

import pytest

from cvil.data.errors import DataFormatError
from cvil.data.image_labels import DetectedObject, read_image_labels


def test_reads_objects_per_image(tmp_path):
    path = tmp_path / "image_labels.tsv"
    objects = [{"class": "cat", "rect": [0, 1, 5, 6], "conf": 0.9, "attributes": ["white"]}]
    path.write_text(f"7\t{json.dumps({'objects': objects})}\n8\t{json.dumps({'objects': []})}\n")
    assert read_image_labels(path) == {7: [DetectedObject("cat", (0.0, 1.0, 5.0, 6.0), 0.9)], 8: []}


@pytest.mark.parametrize("line, message", [
    ('7\t{"objects": [}', r"line 2 column \d+: expected valid JSON"),
    ('7\t{"objects": [{"class": "cat", "rect": [0, 1], "conf": 1}]}', r"line 2 object 0: expected \{\"class\""),
    ("x\t{}", r"line 2: expected an integer image id"),
    ('1\t{"objects": []}', r"line 2: expected each img_id once"),
])
def test_bad_lines_are_named(tmp_path, line, message):
    path = tmp_path / "image_labels.tsv"
    path.write_text('1\t{"objects": []}\n' + line + "\n")
    with pytest.raises(DataFormatError, match=message):
        read_image_labels(path)
