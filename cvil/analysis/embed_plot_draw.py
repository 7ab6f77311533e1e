"""Fig. 3's drawing: three panels, each its own 2-D projection (t-SNE, or PCA without scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

PANELS = {
    "a": ("teacher_text", "student_text"),
    "b": ("teacher_image", "student_image"),
    "c": ("student_text", "student_image"),
}
TITLES = {"a": "(a) word tokens: teacher vs student", "b": "(b) image tokens: teacher vs student",
          "c": "(c) student: word vs image tokens"}
MARKERS = {"teacher_text": ("o", "teacher word (en)"), "student_text": ("^", "student word (ja)"),
           "teacher_image": ("s", "teacher image"), "student_image": ("x", "student image")}



def project(x: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates: scikit-learn t-SNE, or a PCA (torch.pca_lowrank) when scikit-learn is missing."""
    if len(x) < 2:
        return np.zeros((len(x), 2)), "t-SNE"
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        xt = torch.from_numpy(np.asarray(x, np.float32))
        _, _, v = torch.pca_lowrank(xt, q=min(2, *xt.shape), center=True)
        out = ((xt - xt.mean(0)) @ v[:, :2]).numpy()
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))), "PCA"
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x), "t-SNE"


def draw(points: dict[str, tuple[list[str], np.ndarray]], objects: Sequence[str], out: Path, seed: int) -> tuple[dict, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colours = {o: plt.get_cmap("tab10")(i % 10) for i, o in enumerate(objects)}
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    counts: dict[str, dict[str, int]] = {}
    methods = set()
    for ax, (panel, groups) in zip(axes, PANELS.items()):
        counts[panel] = {g: len(points[g][0]) for g in groups}
        labels = [lab for g in groups for lab in points[g][0]]
        ax.set_title(TITLES[panel])
        ax.set_xticks([])
        ax.set_yticks([])
        if not labels:
            ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes)
            continue
        xy, method = project(np.concatenate([points[g][1] for g in groups]), seed)
        methods.add(method)
        start = 0
        for g in groups:
            n = len(points[g][0])
            marker, _ = MARKERS[g]
            ax.scatter(xy[start:start + n, 0], xy[start:start + n, 1], c=[colours[lab] for lab in points[g][0]],
                       marker=marker, s=22, alpha=0.75, linewidths=1.0)
            start += n
        handles = [Line2D([], [], color="gray", marker=MARKERS[g][0], linestyle="", label=f"{MARKERS[g][1]} ({counts[panel][g]})")
                   for g in groups]
        ax.legend(handles=handles, loc="best", fontsize=8)
    method = "PCA" if "PCA" in methods else "t-SNE"
    fig.legend(handles=[Line2D([], [], color=colours[o], marker="o", linestyle="", label=o) for o in objects],
               loc="lower center", ncol=len(objects), frameon=False)
    title = "Last-layer token embeddings (t-SNE)" if method == "t-SNE" else \
        "Last-layer token embeddings (PCA: scikit-learn is not installed, this is NOT t-SNE)"
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return counts, method

