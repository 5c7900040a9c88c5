"""MLflow names shared by the writer (harness/tracking/, the runner) and the reader (reports/).

Every tag, metric and run kind of a store is named here once. Names already in stores never change (old
stores must still read); a new name is added, and readers fall back when it is absent. Tag values are
strings: booleans as "true"/"false" (`flag`), absent or "none" for "no value" (`is_set`).
"""

from __future__ import annotations

from typing import Any

PREFIX = "sepo."

# ------------------------------------------------------------------------------ run kinds (tag KIND)
KIND = PREFIX + "kind"
KIND_EXPERIMENT = "experiment"  # the settings run: config, code version
KIND_CELL = "cell"  # one method x benchmark x seed
KIND_STAGE = "stage"  # a stage shared by cells: SePO's pre-trained p~*, MetaSPO's meta-trained prompt
KIND_TRIAL = "trial"  # one Optuna trial of `sepo-bench tune`
KIND_MLFLOW_OPTIMIZE = "mlflow-optimize"  # a user's run of harness.mlflow_optimizer (mlflow.genai.optimize_prompts)

# ------------------------------------------------------------------------------ tags of every cell run
CELL_KEY = PREFIX + "cell_key"
METHOD = PREFIX + "method"  # the run name in the config's methods:
BENCHMARK = PREFIX + "benchmark"
SEED = PREFIX + "seed"
BASE_METHOD = PREFIX + "base_method"  # the registered method a run name resolves to
FAMILY = PREFIX + "family"  # FAMILIES
ABLATION_OF = PREFIX + "ablation_of"  # the full method an ablation is of (e.g. sepo-generalist), else ""
HELD_OUT = PREFIX + "held_out"  # the target is kept out of every pre-training pool
TARGET_IN_POOL = PREFIX + "target_in_pool"
LOCAL_MODELS = PREFIX + "local_models"  # run on the embedded local models
SYNTHETIC = PREFIX + "synthetic"  # a test fixture with scripted outcomes
SIMULATED = PREFIX + "simulated"  # the rehearsal's simulated endpoint (cfg.simulated); also on the experiment
STATUS = PREFIX + "status"  # STATUS_FINISHED | STATUS_FAILED
FAIL_REASON = PREFIX + "fail_reason"  # why a cell (or stage) failed; also the run's description
STOPPED = PREFIX + "stopped"  # the budget-stop reason, or "None"
SCHEDULE_COMPLETE = PREFIX + "schedule_complete"  # "false": stopped on budget before the method's schedule ended
STAGE_KEYS = PREFIX + "stage_keys"  # JSON list of the stage keys a cell used (for the amortised cost)
RESUMED = PREFIX + "resumed"  # times the run was reopened after a kill or failure
PARAMS_CHANGED = PREFIX + "params_changed_on_resume"
PROMPT_REF = PREFIX + "prompt."  # + name: 'prompts:/<name>/<version>'
PROMPT_REGISTRY_ERROR = PREFIX + "prompt_registry_error"

FAMILY_SEPO, FAMILY_BASELINE, FAMILY_PEER = "sepo", "baseline", "peer"
FAMILIES = (FAMILY_SEPO, FAMILY_BASELINE, FAMILY_PEER)
STATUS_FINISHED, STATUS_FAILED = "finished", "failed"
NOTE = "mlflow.note.content"  # MLflow's run (and experiment) description

# ------------------------------------------------------------------------------ tags of a stage run
STAGE_KIND = PREFIX + "stage_kind"  # STAGE_PRETRAIN | STAGE_META_TRAIN
STAGE_KEY = PREFIX + "stage_key"
STAGE_METHODS = PREFIX + "stage_methods"  # JSON list of the methods it serves
STAGE_TARGETS = PREFIX + "stage_targets"  # JSON list of the target benchmarks it serves
STAGE_PRETRAIN, STAGE_META_TRAIN = "pretrain", "meta-train"

# ------------------------------------------------------------------------------ tags of the experiment run
CONFIG_SHA = PREFIX + "config_sha"
CODE = PREFIX + "code."  # + field of the code version
PAPER_PROTOCOL = PREFIX + "paper_protocol"  # "true": the run follows a protocol of the paper
PROTOCOL = PREFIX + "protocol"  # which: PROTOCOL_PAPER | PROTOCOL_SWAP (absent: none)
PROTOCOL_PAPER, PROTOCOL_SWAP = "paper", "paper-swap"

# ------------------------------------------------------------------------------ tags of prompt versions
RUN_ID = PREFIX + "run_id"
EXPERIMENT = PREFIX + "experiment"
ROLE = PREFIX + "role"

# ------------------------------------------------------------------------------ tags of tune trials
TRIAL_KEY = PREFIX + "trial_key"  # study uid + trial number: a resumed trial reopens its run
STUDY = PREFIX + "study"
TRIAL = PREFIX + "trial"
TRIAL_STATE = PREFIX + "trial_state"  # Optuna's state names
TRIAL_RUNNING, TRIAL_COMPLETE, TRIAL_PRUNED, TRIAL_FAIL = "RUNNING", "COMPLETE", "PRUNED", "FAIL"
PRUNED = PREFIX + "pruned"  # why the pruner stopped it

# ------------------------------------------------------------------------------ metrics (cells; stages share
# the cost ones)
TEST_ACCURACY = "test_accuracy"
INITIAL_TEST_ACCURACY = "initial_test_accuracy"
BEST_TRAIN_SCORE = "best_train_score"
BEST_VAL_SCORE = "best_val_score"
REQUESTS = "requests"
TOKENS = "tokens"
USD = "usd"
EVALUATIONS = "evaluations"
CACHE_HITS = "cache_hits"
WALL_S = "wall_s"
N_TEST = "n_test"
N_CANDIDATES = "n_candidates"
TEST_TRUNCATED = "test_truncated"  # test replies cut off at the reply cap (count)
INITIAL_TRUNCATED = "initial_truncated"  # the same for the initial prompt on the same items
MAX_TOKENS = "max_tokens"  # the task agent's reply cap on the test split (tokens)
COST_METRICS = (REQUESTS, TOKENS, USD, EVALUATIONS, CACHE_HITS, WALL_S)
STAGE_METRICS = (REQUESTS, TOKENS, USD, EVALUATIONS, WALL_S)

# per-candidate step metrics (step = arrival order)
CANDIDATE_GENERATION = "candidate.generation"
CANDIDATE_TRAIN = "candidate.train_score"
CANDIDATE_VAL = "candidate.val_score"
CANDIDATE_BEST_TRAIN = "candidate.best_train_score"


def flag(value: Any) -> bool:
    """A tag value read as a boolean ("true", "1", "yes"; anything else, NaN and None are false)."""
    return str(value).strip().lower() in ("true", "1", "yes")


def bool_tag(value: bool) -> str:
    return "true" if value else "false"


def is_set(value: Any) -> bool:
    """A tag that holds a value: not absent, NaN, empty, or the "None" the runner writes for no value."""
    if value is None or (isinstance(value, float) and value != value):
        return False
    return str(value).strip().lower() not in ("", "none", "null", "nan", "false")
