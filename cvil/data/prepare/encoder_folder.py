"""The embedding aligner's options checked against its encoder folder, without importing torch or loading the model.

`cvil align` and `cvil data add-language --aligner` call `check_encoder` first: a wrong folder or a `--layer` deeper
than the model is a one-line error at once, not after the model load (about 20 s) or an hours-long MT step.
"""

from __future__ import annotations

import json
from pathlib import Path

METHODS = ("argmax", "softmax")


def check_encoder(model_dir: str | Path, *, layer: int = 8, method: str = "argmax", similarity: str | None = None,
                  option: str = "--model") -> int:
    """Check an aligner's options against the encoder folder before anything is loaded (a model load costs ~20 s):
    the folder and its `config.json` exist, `layer` is within `0..num_hidden_layers` (0 = the embeddings), the
    method and similarity are known. A `UsageError` (one line) names the option and the fix; returns the depth."""
    from cvil.errors import UsageError

    if method not in METHODS:
        raise UsageError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if similarity is not None and similarity not in ("cosine", "dot"):
        raise UsageError(f"--similarity {similarity!r}: expected cosine or dot")
    folder = Path(model_dir)
    config = folder / "config.json"
    if not folder.is_dir():
        raise UsageError(f"{option} {model_dir}: no such folder (an HF encoder folder with config.json and its "
                         "tokenizer, e.g. bert-base-multilingual-cased)")
    if not config.is_file():
        raise UsageError(f"{option} {model_dir}: no config.json there (an HF encoder folder, e.g. mBERT)")
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
        depth = int(raw.get("num_hidden_layers", raw.get("n_layers", raw.get("num_layers"))))
    except (ValueError, TypeError, OSError) as exc:
        raise UsageError(f"{config}: cannot read num_hidden_layers ({exc})") from None
    if not 0 <= layer <= depth:
        raise UsageError(f"--layer {layer} is outside 0..{depth} for the {depth}-layer encoder in {model_dir} (0 = the "
                         f"embeddings; awesome-align's 8 is for 12-layer models): pass e.g. --layer "
                         f"{max(0, round(depth * 2 / 3))}")
    return depth
