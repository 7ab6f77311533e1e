"""`cvil embed-plot` (paper Fig. 3) on the tiny world, and its region labelling."""

from __future__ import annotations

import numpy as np
import pytest

from cvil.data.image_labels import DetectedObject
from cvil.analysis.embed_plot import EmbedPlotError, embed_plot, region_classes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _args(world):
    return world.teacher_dir, world.student_init_dir, world.root


def _check_png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    h, w = matplotlib.image.imread(str(path)).shape[:2]
    assert w >= 2.5 * h  # three panels side by side


def test_embed_plot_writes_three_panels_and_counts(tiny_world, tmp_path):
    out = tmp_path / "fig3.png"
    with pytest.warns(UserWarning, match=r"student: no .*vg/image_labels.tsv: its image tokens are skipped"):
        result = embed_plot(*_args(tiny_world), out=out, max_examples=60)
    _check_png(out)
    assert result.path == out and result.method == "t-SNE"
    assert set(result.counts) == {"a", "b", "c"}
    a, b, c = result.counts["a"], result.counts["b"], result.counts["c"]
    assert a["teacher_text"] > 0 and a["student_text"] > 0
    assert b["teacher_image"] > 0 and b["student_image"] == 0  # the JVG-like split has no image_labels.tsv
    assert c == {"student_text": a["student_text"], "student_image": 0}
    assert set(result.pairs) <= {"car", "cat", "elephant", "horse", "umbrella"} and result.pairs.get("cat") == "猫"


def test_student_side_with_image_labels_fills_every_panel(tiny_world, tmp_path):
    result = embed_plot(*_args(tiny_world), out=tmp_path / "fig.png", student_dataset="vqa", objects=["cat", "car"],
                        max_examples=40, max_points_per_class=30)
    assert all(n > 0 for panel in result.counts.values() for n in panel.values())
    assert all(n <= 60 for panel in result.counts.values() for n in panel.values())  # capped per class
    assert set(result.pairs) == {"cat", "car"}


def test_no_chosen_object_occurs_is_a_clear_error(tiny_world, tmp_path):
    with pytest.raises(EmbedPlotError, match=r"none of the objects \['blue'\] occurs in the val split"):
        embed_plot(*_args(tiny_world), out=tmp_path / "x.png", objects=["blue"], pairs={"blue": "青"})
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(EmbedPlotError, match="no translation for \\['spaceship'\\]"):
        embed_plot(*_args(tiny_world), objects=["spaceship"])


def test_cli_logs_the_figure_to_an_mlflow_run(tiny_world, tmp_path, mlflow_store, capsys):
    from mlflow.tracking import MlflowClient

    from cvil.cli import main

    client = MlflowClient(mlflow_store)
    run = client.create_run("0")
    out = tmp_path / "plot.png"
    code = main(["embed-plot", "--teacher", str(tiny_world.teacher_dir), "--student", str(tiny_world.student_init_dir),
                 "--data", str(tiny_world.root), "--objects", "cat,umbrella", "--out", str(out),
                 "--run-id", run.info.run_id, "--max-examples", "30", "--device", "cpu"])
    assert code == 0
    _check_png(out)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "figures")] == ["figures/plot.png"]
    capsys.readouterr()
    assert main(["embed-plot", "--teacher", str(tiny_world.teacher_dir), "--student", str(tiny_world.student_init_dir),
                 "--data", str(tiny_world.root), "--objects", "blue", "--pairs", "blue=青"]) == 2
    out, err = capsys.readouterr()  # the dispatcher's one line on stderr, nothing on stdout
    assert not out and err.startswith("cvil embed-plot: none of the objects ['blue'] occurs") and err.count("\n") == 1


def _feats(boxes, dim=10):
    """Region rows with VinVL box dims (x1, y1, x2, y2, w, h) at the end."""
    rows = np.zeros((len(boxes), dim), np.float32)
    rows[:, :4] = 3.0
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        rows[i, -6:] = (x1, y1, x2, y2, x2 - x1, y2 - y1)
    return rows


def test_region_classes_match_by_box_not_by_order():
    boxes = [(0.1, 0.1, 0.3, 0.4), (0.5, 0.2, 0.9, 0.6), (0.0, 0.6, 0.2, 0.95), (0.4, 0.7, 0.6, 0.9)]
    names = ["cat", "car", "horse", "cup"]
    w, h = 640, 480
    det = lambda i, conf: DetectedObject(names[i], tuple(round(v * s, 2) for v, s in zip(boxes[i], (w, h, w, h))), conf)
    # detections sorted by confidence (not region order), region 3 missed, one hallucination
    dets = [det(2, 0.9), DetectedObject("umbrella", (10.0, 10.0, 50.0, 90.0), 0.8), det(0, 0.7), det(1, 0.6)]
    assert region_classes(dets, _feats(boxes)) == ["cat", "car", "horse", None]
    # no box dims (or not normalised): region r takes detection r, the VinVL file convention
    plain = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32) * 5
    assert region_classes(dets, plain) == ["horse", "umbrella", "cat"]
    assert region_classes([], _feats(boxes)) == [None] * 4
