"""`cvil-bench search`: Optuna search over the per-layer KD weights λ_m (and optionally which layers are distilled).

Parametrisation. For every distilled teacher layer m the trial suggests ``lambda_m = suggest_float("lambda_<m>",
0, 1)`` and the run uses ``kd.layer_weights = (λ_m for m in kd.layers)`` as they are — *not* normalised to sum 1.
The released code weights every layer 1, which is a corner of this box, so the default stays reachable; a sum-1
simplex would silently rescale the whole KD loss (which `stages.*.kd_weight` and the learning rate already own).
With ``--search-layers`` each candidate layer except the top one also gets ``use_layer_<m>`` ∈ {True, False}, and
λ_m is only suggested for the layers in use (a conditional space, hence `TPESampler(multivariate=True,
group=True)`). The top candidate layer is always kept, so "distil nothing" is not a trial (Table III's
"w/o intermediate layers" cell is the top layer alone).

Objective: the final `--metric` (default `val.accuracy`, the official score on the validation split) of a short
run of the base config (`--stage-epochs` sets every stage's epochs; any `key=value` override refines the budget),
maximised. Every intermediate evaluation reaches the trial through `cvil.train.api.run(cfg, on_eval=...)`, whose
`--eval-metric` (default `score`, the in-loop val score that also selects checkpoints) is reported at a monotone
step (the evaluation count across stages); a `MedianPruner` stops unpromising trials early (raising
`cvil.errors.StopTrial` inside `on_eval`, which the trainer lets through after closing its run as KILLED, and which
the trial re-raises as `optuna.TrialPruned`).

Storage: a local journal file by default (safe for a few processes on one machine), or any RDB URL (`--storage
postgresql://...`) for many workers. The study and its MLflow parent run are found again by name, so the same
command resumes an interrupted search up to `--trials` finished trials; a journal damaged by a kill mid-write or a
bad disk is cut back to its readable lines first (`repair_journal`, the file as found kept as `.corrupt`), and trial
runs a killed search left RUNNING are closed KILLED. Each trial is a child run of the study's
parent run with the λ_m as params and the objective as a metric; the best weights are written as a YAML config
that `extends:` the base config, ready for `cvil train --config`.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import tracking
from cvil import tracking_schema as schema
from cvil.paths import safe_component
from bench.grid.spec import slug, world_overrides


@dataclass(frozen=True)
class LayerSpace:
    """The searched space: λ per layer in [0, 1]; with `search_layers`, also which layers (the top one kept)."""

    candidates: tuple[int, ...]
    search_layers: bool = False

    def suggest(self, trial) -> tuple[tuple[int, ...], tuple[float, ...]]:
        top = max(self.candidates)
        layers = tuple(
            m for m in sorted(self.candidates)
            if m == top or not self.search_layers or trial.suggest_categorical(f"use_layer_{m}", [True, False])
        )
        weights = tuple(trial.suggest_float(f"lambda_{m}", 0.0, 1.0) for m in layers)
        return layers, weights


def open_study(name: str, storage: str, *, seed: int, group: bool, startup: int, warmup: int):
    """Create or load (same name) the study: journal file for a path, RDB for a URL; returns (study, storage).

    The RDB storage gets a heartbeat, so Optuna itself fails trials whose worker died; the journal has none.
    """
    import optuna

    if "://" in storage:
        store: Any = optuna.storages.RDBStorage(storage, heartbeat_interval=60, grace_period=180)
    else:
        from optuna.storages.journal import JournalFileBackend

        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        store = optuna.storages.JournalStorage(JournalFileBackend(storage))
    def sampler(offset: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(multivariate=True, group=group, seed=seed + offset)

    pruner = optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    study = optuna.create_study(study_name=name, storage=store, sampler=sampler(0), pruner=pruner,
                                direction="maximize", load_if_exists=True)
    # Optuna keeps the trials, not the sampler's RNG: a resumed study re-seeded with `seed` would replay the same
    # random start-up points (optuna/optuna#3255). Offsetting by the trials so far keeps a fresh study reproducible
    # and makes every resumed process propose new points.
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = sampler(existing)
    return study, store


def repair_journal(path: str | Path) -> str:
    """Make a damaged journal file readable again; "" when it was, else what was done (one line).

    A process killed mid-write leaves a torn last line, a damaged disk a flipped byte: either stops Optuna from
    reading the study at all (a traceback at every resume). The lines before the first damaged one (not a complete
    JSON record, or one Optuna cannot replay) become the journal; the file as found is kept beside it as
    `<journal>.corrupt`. Runs under Optuna's own journal lock, so no other worker appends meanwhile.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    path = Path(path)
    if not path.is_file():
        return ""
    from cvil.errors import UsageError

    lock = JournalFileSymlinkLock(str(path))
    try:
        lock.acquire()
    except OSError as exc:
        raise UsageError(f"search journal {path}: cannot take its lock ({exc.strerror or exc})") from None
    try:
        try:
            lines = path.read_bytes().splitlines(keepends=True)
        except OSError as exc:
            raise UsageError(f"search journal {path}: cannot be read ({exc.strerror or exc})") from None
        bad = _first_bad_line(lines)
        if bad is None:
            return ""
        kept = path.with_name(path.name + ".corrupt")
        n = 1
        while kept.exists():
            kept, n = path.with_name(f"{path.name}.corrupt{n}"), n + 1
        os.replace(path, kept)
        from cvil.fileio import atomic_write

        atomic_write(path, b"".join(lines[:bad]))
        return (f"search journal {path}: line {bad + 1} of {len(lines)} is damaged (a torn or corrupted record); "
                f"resuming from its first {bad} lines, the file as found is kept as {kept}")
    finally:
        lock.release()


def _first_bad_line(lines: list[bytes]) -> int | None:
    """The index of the first line that is not a complete JSON record Optuna can replay, or None."""
    import json

    replay = None
    try:
        from optuna.storages.journal._storage import JournalStorageReplayResult

        replay = JournalStorageReplayResult("")
    except Exception:  # an Optuna without it: the syntax check alone
        pass
    for i, line in enumerate(lines):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("torn")
            log = json.loads(line)
            if not isinstance(log, dict) or not isinstance(log.get("op_code"), int):
                raise ValueError("not a journal record")
            if replay is not None:
                replay.apply_logs([log])
        except Exception:
            return i
    return None


def _fail_dead_trials(study, storage) -> None:
    """A trial left RUNNING by a killed process on this host will never finish: mark it FAIL so resume is clean.

    (Ctrl-C needs no help: Optuna marks that trial FAIL itself. Journal storage has no heartbeat to do this.)
    """
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        w_host, _, w_pid = worker.rpartition(":")
        if w_host == host and w_pid.isdigit() and not _pid_alive(int(w_pid)):
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def metric_of(metrics: dict, name: str) -> float | None:
    """A finite number under `name`, else None (a KD-only stage's evaluation has no task score)."""
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def carried_fields(base_config: str, overrides: list[str] | tuple[str, ...]) -> dict:
    """The config fields the search's overrides set (world paths, user overrides), as resolved values.

    Each override contributes its whole field (`stages` as a list, `kd.layers` as a list, `data.batch_size`), taken
    from the resolved config, so the YAML merge of `extends:` reproduces it exactly. Per-run keys (`output_dir`,
    `tracking.*`) are left out.
    """
    from cvil.config import load_config, to_dict

    resolved = to_dict(load_config(base_config, list(overrides)))
    body: dict = {}
    for item in overrides:
        path = item.split("=", 1)[0].strip().split(".")
        if path[0] in ("output_dir", "tracking"):
            continue
        if len(path) == 1 or path[0] == "stages":
            body[path[0]] = resolved[path[0]]
        else:
            body.setdefault(path[0], {})[path[1]] = resolved[path[0]][path[1]]
    return body


def best_config_yaml(base_config: str, out_path: Path, layers, weights, note: str,
                     overrides: list[str] | tuple[str, ...] = ()) -> str:
    """A config that `extends:` the base config, carries the search's own overrides (world, user) and sets the
    searched KD fields: `cvil train --config best.yaml` runs the best trial's setup (at the full budget)."""
    import yaml

    rel = os.path.relpath(os.path.abspath(base_config), os.path.abspath(out_path.parent))  # no symlink resolving
    body = {"extends": rel, **carried_fields(base_config, overrides)}
    body.setdefault("kd", {}).update({"layers": list(layers), "layer_weights": [round(w, 6) for w in weights]})
    header = "".join(f"# {line}\n" for line in note.splitlines())
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)


class KDWeightSearch:
    """One study: builds each trial's config, runs it in-process, reports to Optuna and MLflow."""

    def __init__(self, config: str, overrides: Sequence[str] = (), *, study: str | None = None, trials: int = 20,
                 storage: str | None = None, metric: str = "val.accuracy", eval_metric: str = "score",
                 stage_epochs: float | None = None, search_layers: bool = False,
                 layer_candidates: Sequence[int] | None = None, pruner_startup_trials: int = 5,
                 pruner_warmup_evals: int = 1, seed: int = 0, best_out: str | Path | None = None,
                 experiment: str = "cvil", tracking_uri: str | None = None, runs_dir: str | Path = "runs",
                 world_root: str | None = "worlds/small", world_preset: str = "small"):
        """`world_root=None`: build no synthetic world, the config's paths are used as they are (real data). The other
        parameters are the options of `cvil-bench search` (see `register`)."""
        from cvil.config import ConfigError, load_config

        self.config, self.trials, self.metric, self.eval_metric = config, trials, metric, eval_metric
        self.stage_epochs, self.search_layers = stage_epochs, search_layers
        self.seed, self.experiment = seed, experiment
        self.pruner_startup_trials, self.pruner_warmup_evals = pruner_startup_trials, pruner_warmup_evals
        self.best_out = best_out
        self.study_name = safe_component(study, "study name") if study is not None \
            else f"kd-weights-{slug(Path(config).stem)}"
        self.uri = tracking.tracking_uri(tracking_uri)
        user = tuple(overrides)
        load_config(config, list(user))  # the config and the overrides first: a typo must not cost a world build
        if trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {trials}")
        self.world = "config paths (--no-world)" if world_root is None else f"{world_root} (preset {world_preset})"
        world = [] if world_root is None else world_overrides({"root": world_root, "preset": world_preset,
                                                               "seed": 0}, None, user)
        base = load_config(config, [*world, *user])
        budget = [f"stages.{i}.epochs={stage_epochs}" for i in range(len(base.stages))] \
            if stage_epochs is not None else []
        self.overrides = [*world, *user, *budget]
        self.carried = [*world, *user]  # what best.yaml keeps (the short budget is the search's, not the result's)
        cands = tuple(layer_candidates) if layer_candidates else base.kd.layers
        if not cands:
            raise ConfigError("no KD layers to search (kd.layers is empty; give --layer-candidates)")
        self.space = LayerSpace(tuple(cands), search_layers)
        self.storage = storage or str(Path(runs_dir) / "search" / f"{self.study_name}.journal")
        self.out_dir = Path(runs_dir) / "search" / slug(self.study_name)

    def run(self) -> int:
        from optuna.trial import TrialState

        if "://" not in self.storage:
            repaired = repair_journal(self.storage)
            if repaired:
                self._warn(f"warning: {repaired}")
        study, storage = open_study(self.study_name, self.storage, seed=self.seed, group=self.search_layers,
                                    startup=self.pruner_startup_trials, warmup=self.pruner_warmup_evals)
        _fail_dead_trials(study, storage)
        self.store = store = tracking.Store(self.uri, self._warn)  # unusable: one warning, tracking off
        self.exp_id = store.run(lambda c: tracking.experiment_id(c, self.experiment), "")
        self.parent = store.run(lambda c: tracking.open_parent(c, self.exp_id, "search", self.study_name,
                                                               tags={"cvil.search.storage": self.storage}), "")
        self._close_dead_trial_runs(study)
        self._describe_study(study)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        remaining = max(0, self.trials - done)
        print(f"[search {self.study_name}] {done} trials done, running {remaining} more "
              f"(storage {self.storage}, parent run {self.parent})", flush=True)
        if remaining:
            try:
                study.optimize(self.objective, n_trials=remaining, catch=(Exception,), gc_after_trial=True)
            except KeyboardInterrupt:
                store.call("set_terminated", self.parent, status="KILLED")
                print(f"[search {self.study_name}] interrupted; run the same command to resume", file=sys.stderr)
                return 130
        return self._finish(study)

    def _describe_study(self, study) -> None:
        """Name the objective (Optuna's dashboard and `trials_dataframe` show it instead of "value") and record what
        the study searches: base config, world, sampler seed, the metrics and their unit (%, as `val.score`)."""
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([self.metric])
        for key, value in {"config": str(self.config), "world": self.world, "seed": self.seed,
                           "objective": f"{self.metric} (final, maximised, %)",
                           "intermediate": f"val.{self.eval_metric} per evaluation (%)"}.items():
            study.set_user_attr(key, value)

    def _warn(self, line: str) -> None:
        print(f"[search {self.study_name}] {line}", file=sys.stderr, flush=True)

    def _close_dead_trial_runs(self, study) -> None:
        """A search killed mid-trial (SIGKILL, OOM) left that trial's run RUNNING: once Optuna counts the trial as
        failed (`_fail_dead_trials`) or no longer has it (a repaired journal), close the run KILLED, saying why.
        A trial Optuna still counts as running (a live worker) keeps its run."""
        from optuna.trial import TrialState

        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
        for run in self.store.run(lambda c: tracking.children(c, self.exp_id, self.parent), []):
            number = run.data.tags.get(schema.TRIAL, "")
            if run.info.status != "RUNNING" or not number.isdigit():
                continue
            state = states.get(int(number))
            if state is not None and state != TrialState.FAIL:
                continue
            why = (f"left RUNNING by a search process that died during trial {number}; closed KILLED when study "
                   f"{self.study_name!r} resumed (Optuna: {state.name if state is not None else 'no such trial'})")
            self.store.call("set_tag", run.info.run_id, "cvil.failure_reason", why)
            self.store.call("set_terminated", run.info.run_id, status="KILLED")
            print(f"[search {self.study_name}] closed stale RUNNING run {run.info.run_id} of trial {number} as "
                  "KILLED", flush=True)

    # --------------------------------------------------------------------------------------------- a trial

    def objective(self, trial) -> float:
        import optuna

        from cvil.config import load_config
        from cvil.errors import StopTrial
        from cvil.train import api

        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        layers, weights = self.space.suggest(trial)
        n = trial.number
        cfg = load_config(self.config, [
            *self.overrides,
            f"kd.layers={list(layers)}",
            f"kd.layer_weights={list(weights)}",
            f"output_dir={self.out_dir / f'trial{n}'}",
            *([f"tracking.uri={self.uri}", f"tracking.parent_run_id={self.parent}"] if self.store.on
              else ["tracking.enabled=false"]),  # the search found the store unusable: trials do not wait on it
            f"tracking.experiment={self.experiment}",
            f"tracking.run_name={slug(self.study_name)}-t{n}",
            f"tracking.tags.{schema.STUDY}={self.study_name}",
            f"tracking.tags.{schema.TRIAL}={n}",
        ])
        evals = 0

        def on_eval(stage: str, step: int, metrics: dict) -> None:
            nonlocal evals
            value = metric_of(metrics, self.eval_metric)
            if value is None:
                return
            trial.report(value, evals)  # a monotone step across stages: the eval count
            evals += 1
            if trial.should_prune():
                raise StopTrial(f"{self.eval_metric}={value:.4f} at evaluation {evals} ({stage}, step {step})")

        state, value = "FAIL", None
        try:
            metrics = api.run(cfg, on_eval=on_eval)
            value = metric_of(metrics, self.metric)
            if value is None:
                raise KeyError(f"metric {self.metric!r} not in the run's final metrics {sorted(metrics)}")
            state = "COMPLETE"
            return value
        except StopTrial as exc:
            state = "PRUNED"
            raise optuna.TrialPruned(str(exc)) from exc
        finally:
            self._log_trial(n, layers, weights, state, value)
            print(f"[search {self.study_name}] trial {n} {state}"
                  + (f" {self.metric}={value:.4f}" if value is not None else "")
                  + f" layers={list(layers)} weights={[round(w, 3) for w in weights]}", flush=True)

    def _log_trial(self, n: int, layers, weights, state: str, value: float | None) -> None:
        """λ_m, the layer set and the objective on the trial's own child run (which the trainer created)."""
        runs = self.store.run(lambda c: tracking.children(c, self.exp_id, self.parent, {schema.TRIAL: str(n)}), [])
        if not runs:
            return
        run_id = runs[0].info.run_id
        from mlflow.entities import Metric, Param, RunTag

        params = [Param(f"lambda_{m}", repr(round(w, 6))) for m, w in zip(layers, weights)]
        params.append(Param("search.layers", ",".join(map(str, layers))))
        existing = runs[0].data.params
        params = [p for p in params if p.key not in existing]
        metrics = [Metric("objective", value, int(time.time() * 1000), 0)] if value is not None else []
        self.store.call("log_batch", run_id, metrics=metrics, params=params,
                        tags=[RunTag("optuna.state", state), RunTag("optuna.study", self.study_name)])

    # ------------------------------------------------------------------------------------------------ results

    def _finish(self, study) -> int:
        from optuna.trial import TrialState

        store, parent = self.store, self.parent
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        trials_csv = self.out_dir / "trials.csv"
        study.trials_dataframe().to_csv(trials_csv, index=False)
        store.call("log_artifact", parent, str(trials_csv), "search")
        if not complete:
            print(f"[search {self.study_name}] no completed trial", file=sys.stderr)
            store.call("set_terminated", parent, status="FAILED")
            return 1
        best = study.best_trial
        if len(complete) > 1 and len({t.value for t in complete}) == 1:
            self._warn(f"warning: all {len(complete)} completed trials scored {self.metric}={best.value:.4f}: the "
                       f"search could not tell the weights apart, so trial {best.number} is best only by order; "
                       "give the trials more budget (--stage-epochs), a finer metric, or check the runs")
        layers, weights = self.space.suggest(optuna_fixed(best.params))
        out = Path(self.best_out) if self.best_out else self.out_dir / "best.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        note = (f"Best KD layer weights from Optuna study {self.study_name!r}: trial {best.number}, "
                f"{self.metric}={best.value:.6f} over {len(complete)} completed trials.\n"
                f"Generated by `cvil-bench search`; lambda_m in [0, 1], not normalised (see bench/search.py).\n"
                f"Carries the search's overrides {self.carried}"
                + (f"; trials ran with --stage-epochs {self.stage_epochs} (not carried: this config trains "
                   "at the base config's full length)." if self.stage_epochs is not None else "."))
        out.write_text(best_config_yaml(self.config, out, layers, weights, note, self.carried), encoding="utf-8")
        store.call("log_artifact", parent, str(out), "search")
        store.call("log_metric", parent, "best.objective", best.value)
        store.call("set_tag", parent, "cvil.search.best_trial", str(best.number))
        store.call("set_terminated", parent, status="FINISHED")
        print(f"[search {self.study_name}] best trial {best.number}: {self.metric}={best.value:.4f} "
              f"layers={list(layers)} weights={[round(w, 3) for w in weights]} -> {out}", flush=True)
        return 0


def optuna_fixed(params: dict):
    """A trial stand-in replaying stored params, so `LayerSpace.suggest` decodes the best trial the same way."""
    import optuna

    return optuna.trial.FixedTrial(params)


# ------------------------------------------------------------------------------------------------------- CLI


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="Optuna search over the per-layer KD weights (lambda_m)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="base KD config (e.g. configs/synthetic/kd.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every trial")
    p.add_argument("--study", default=None, help="study name (default kd-weights-<config stem>); reuse to resume")
    p.add_argument("--trials", type=int, default=20, help="finished (complete or pruned) trials wanted in total")
    p.add_argument("--storage", default=None,
                   help="journal file path (default runs/search/<study>.journal) or an RDB URL")
    p.add_argument("--metric", default="val.accuracy", help="the maximised final metric (default val.accuracy)")
    p.add_argument("--eval-metric", default="score",
                   help="the in-loop evaluation metric reported for pruning (default score)")
    p.add_argument("--stage-epochs", type=float, default=None, help="set every stage's epochs (the short budget)")
    p.add_argument("--search-layers", action="store_true", help="also search which layers are distilled")
    p.add_argument("--layer-candidates", default=None, type=_layer_list,
                   help="comma-separated teacher layers (default kd.layers)")
    p.add_argument("--pruner-startup-trials", type=int, default=5, help="MedianPruner n_startup_trials")
    p.add_argument("--pruner-warmup-evals", type=int, default=1, help="MedianPruner n_warmup_steps (evaluations)")
    p.add_argument("--seed", type=int, default=0,
                   help="sampler seed (default 0); a resumed study reseeds with seed + trials so far, so every "
                        "process proposes new points (give parallel workers different seeds)")
    p.add_argument("--best-out", default=None,
                   help="where to write the best config (default runs/search/<study>/best.yaml)")
    p.add_argument("--experiment", default="cvil", help="MLflow experiment of the study's runs (default cvil)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--runs-dir", default="runs",
                   help="root of the trials' output folders and of the default journal (default runs/)")
    p.add_argument("--world-root", default="worlds/small",
                   help="synthetic world to build (if missing) and use (default worlds/small)")
    p.add_argument("--world-preset", default="small", choices=_presets(),
                   help="preset of that world: tiny, small, medium (default small)")
    p.add_argument("--no-world", action="store_true",
                   help="build no synthetic world: use the config's paths (real data) as they are")
    p.set_defaults(func=main)


def _layer_list(text: str) -> tuple[int, ...]:
    """An argparse type: `3,6,9` -> (3, 6, 9), named in argparse's one-line error when it is not that."""
    try:
        layers = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer numbers, got {text!r}") from None
    if not layers:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer numbers, got {text!r}")
    return layers


def _presets() -> list[str]:
    from cvil.data.synth.presets import PRESETS

    return list(PRESETS)


def main(args: argparse.Namespace) -> int:
    layers = args.layer_candidates
    return KDWeightSearch(
        args.config, args.overrides, study=args.study, trials=args.trials, storage=args.storage, metric=args.metric,
        eval_metric=args.eval_metric, stage_epochs=args.stage_epochs, search_layers=args.search_layers,
        layer_candidates=layers, pruner_startup_trials=args.pruner_startup_trials,
        pruner_warmup_evals=args.pruner_warmup_evals, seed=args.seed, best_out=args.best_out,
        experiment=args.experiment, tracking_uri=args.tracking_uri, runs_dir=args.runs_dir,
        world_root=None if args.no_world else args.world_root, world_preset=args.world_preset,
    ).run()
