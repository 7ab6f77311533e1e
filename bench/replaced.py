"""Runs a grid re-run replaced: marked (default) or moved to MLflow's trash, so every view counts one run per seed.

A grid child is one cell × seed. When a re-run trains that cell × seed again (a changed config, a failed attempt
retried), the earlier child stays under the same parent run; MLflow's "Group by cvil.cell" would then average it
with the new one, while `cvil-bench compare` and the leaderboards took only the latest. So after each job the
runner retires the cell × seed's other children:

- ``tag`` (default, nothing is lost): each gets the tag ``cvil.replaced_by = <run id>``. The readers
  (`bench.runs.find_runs`) skip such runs, and in the MLflow UI the filter ``tags.`cvil.replaced_by` IS NULL`` (in the
  run list's search box; `cvil-bench ui` prints a link with it) hides them;
- ``delete``: each is tagged the same way and then deleted (MLflow's trash: `mlflow gc` purges it, the UI's
  "Deleted" view restores it).

A run that is the valid result again (a re-run back to an earlier config skips to that earlier finished run) loses
its own ``cvil.replaced_by`` tag.
"""

from __future__ import annotations

from typing import Callable

from cvil import tracking_schema as schema

MODES = ("tag", "delete")
DEFAULT_MODE = "tag"


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def retire_replaced(client, runs: list, current_run_id: str, *, mode: str = DEFAULT_MODE,
                    call: Callable = _call) -> list[str]:
    """Mark (or delete) every run of `runs` (one cell × seed's children) other than `current_run_id` as replaced by
    it, and clear the mark on `current_run_id`; returns the ids retired now."""
    if mode not in MODES:
        raise ValueError(f"replaced-run mode {mode!r}: expected one of {MODES}")
    retired = []
    for run in runs:
        run_id = run.info.run_id
        tags = run.data.tags
        if run_id == current_run_id:
            if tags.get(schema.REPLACED_BY):
                call(client.delete_tag, run_id, schema.REPLACED_BY)
            continue
        if tags.get(schema.REPLACED_BY) != current_run_id:
            call(client.set_tag, run_id, schema.REPLACED_BY, current_run_id)
        if mode == "delete":
            call(client.delete_run, run_id)
        if tags.get(schema.REPLACED_BY) != current_run_id or mode == "delete":
            retired.append(run_id)
    return retired


def is_replaced(tags: dict) -> bool:
    return bool(tags.get(schema.REPLACED_BY))
