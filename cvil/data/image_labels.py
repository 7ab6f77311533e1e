"""Reader for `image_labels.tsv`: the detector's objects per image (VinVL `predictions.tsv` format).

Each line is `img_id \\t {"objects": [{"class": str, "rect": [x1, y1, x2, y2], "conf": float}, ...]}`. The reference
reads it only to build the teacher's tag input; other keys of an object (attributes, scores) are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cvil.data.errors import DataFormatError
from cvil.data.json_file import text_lines


@dataclass(frozen=True)
class DetectedObject:
    cls: str
    rect: tuple[float, float, float, float]
    conf: float


def _parse_object(path: Path, where: str, raw: object) -> DetectedObject:
    expected = '{"class": str, "rect": [x1, y1, x2, y2], "conf": number}'
    if not isinstance(raw, dict):
        raise DataFormatError(path, where, expected, repr(raw)[:80])
    cls, rect, conf = raw.get("class"), raw.get("rect"), raw.get("conf")
    numbers = (int, float)
    if (not isinstance(cls, str) or not isinstance(rect, list) or len(rect) != 4
            or not all(isinstance(v, numbers) and not isinstance(v, bool) for v in [*rect, conf])):
        raise DataFormatError(path, where, expected, repr(raw)[:80])
    return DetectedObject(cls=cls, rect=tuple(float(v) for v in rect), conf=float(conf))


def read_image_labels(path: str | Path) -> dict[int, list[DetectedObject]]:
    """Objects per image id, in file order; a duplicate image id is an error (the file would be ambiguous)."""
    path = Path(path)
    labels: dict[int, list[DetectedObject]] = {}
    for line_no, line in text_lines(path, 'an image_labels.tsv (img_id \\t {"objects": [...]})'):
        if not line.strip():
            continue
        key, sep, payload = line.rstrip("\r\n").partition("\t")
        if not sep:
            raise DataFormatError(path, f"line {line_no}", "img_id \\t JSON", "no tab")
        try:
            img_id = int(key)
        except ValueError:
            raise DataFormatError(path, f"line {line_no}", "an integer image id", repr(key)) from None
        if img_id in labels:
            raise DataFormatError(path, f"line {line_no}", "each img_id once", f"img_id {img_id} again")
        try:
            value = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, f"line {line_no} column {len(key) + 1 + exc.colno}", "valid JSON", exc.msg) from None
        except RecursionError:
            raise DataFormatError(path, f"line {line_no}", "JSON nested at most ~1000 levels deep", "deeper") from None
        if not isinstance(value, dict) or not isinstance(value.get("objects"), list):
            raise DataFormatError(path, f"line {line_no}", '{"objects": [...]}', repr(value)[:80])
        labels[img_id] = [_parse_object(path, f"line {line_no} object {k}", obj) for k, obj in enumerate(value["objects"])]
    return labels
