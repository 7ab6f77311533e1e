"""The MLflow tracking schema: every tag name and artifact path cvil writes or searches for, spelled once.

Writers (`cvil.train`, `bench.grid`, `bench.search`) and readers (`leaderboards`, `bench.compare`) import the names
from here, so a renamed tag cannot leave a reader searching for the old one. The schema is described for users in
docs/architecture.md §3.
"""

from __future__ import annotations

# MLflow's own tags
PARENT_RUN = "mlflow.parentRunId"
NOTE = "mlflow.note.content"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"  # MLflow 3's UI layout

# a training run (cvil.train.api)
SCHEDULE = "cvil.schedule"
LANGUAGE = "cvil.language"
DATASET = "cvil.dataset"
SEED = "cvil.seed"
GIT_COMMIT = "cvil.git_commit"
CONFIG_HASH = "cvil.config_hash"
COMMAND = "cvil.command"
VQA_EVALUATOR = "cvil.vqa_evaluator"
BLEU_SIGNATURE = "cvil.bleu_signature"
MODEL_PATH = "cvil.model_path"
LOCAL_RESULTS = "cvil.local_results"
EFFECTIVE_BATCH_SIZE = "effective_batch_size"  # a param: data.batch_size x processes x train.grad_accum
WORLD = "cvil.world"  # the synthetic world a run read (`cvil.data.synth.manifest.world_identity`: preset, and seed if not 0)

# What a run's numbers depend on besides its config and data (the same config on another torch, or another thread
# count, gives other losses): set by `cvil.train.run_metadata.environment_tags`, listed (and a mix flagged) in every
# leaderboard table's provenance (`leaderboards.table.provenance`).
LIBRARIES = ("torch", "transformers", "tokenizers", "numpy")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
THREADS_INTRA_OP = "cvil.threads.intra_op"  # torch.get_num_threads(), once train.threads is applied
THREADS_INTER_OP = "cvil.threads.inter_op"  # torch.get_num_interop_threads()
THREADS_PARAM = "train.threads"  # the config's value: a param, with the rest of the config (0 = torch's default)
UNSET = "unset"  # the value of a thread variable absent from the environment


def library_tag(name: str) -> str:
    """`cvil.version.<distribution>`: the installed version, build label included (`2.13.0+cpu`)."""
    return f"cvil.version.{name}"


def thread_env_tag(var: str) -> str:
    """`cvil.env.<VAR>`: an environment variable that sets a thread pool's size, or `unset`."""
    return f"cvil.env.{var}"


# grids and searches (bench): set on the children through `tracking.tags.*`, on the parents by bench.tracking
GRID = "cvil.grid"
CELL = "cvil.cell"
STUDY = "cvil.study"
TRIAL = "cvil.trial"
KIND = "cvil.kind"  # "grid" or "search" on parent runs
GRID_FAILED = "cvil.grid.failed"
# a grid child superseded by a later run of the same cell x seed (its id): not counted by readers, hidden in the UI by
# the filter ACTIVE_RUNS_FILTER
REPLACED_BY = "cvil.replaced_by"
ACTIVE_RUNS_FILTER = f"tags.`{REPLACED_BY}` IS NULL"
FAILURE_TAGS = ("cvil.error", "cvil.failure", "cvil.failure_reason", NOTE)  # where a failure reason may be

# artifacts (relative to the run's artifact root; the same names as in the run folder, cvil.train.run_layout)
PREDICTIONS_DIR = "predictions"


def row_keys_tag(split: str) -> str:
    """What a split's per-question `question_id`s are: `q_id`, or `position@<file digest>` (`cvil.data.qla`)."""
    return f"{split}.row_keys"


def answer_source_tag(split: str) -> str:
    """JVG splits: `answer_field` (the `.unknown` strings) or `label_map` (`label2ans[an[0]]`)."""
    return f"{split}.answer_source"


def results_name(split: str) -> str:
    return f"{split}_results.json"


def per_question_name(split: str) -> str:
    return f"{split}_per_question.csv"


def per_question_artifact(split: str) -> str:
    """The artifact path of a split's per-question CSV (`predictions/<split>_per_question.csv`)."""
    return f"{PREDICTIONS_DIR}/{per_question_name(split)}"
