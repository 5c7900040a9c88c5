"""`sepo-bench tune`: an Optuna study over a method's settings (SePO's evolution hyperparameters by default).

Modules: validate (the tune section against the method), study (storage, sampler, pruner, trial slots, the
sqlite ask-lock), trial (one trial and its cells), generations (intermediate values and the pruner's verdict),
workers (processes and signals; `tune()`), outputs (best.yaml, summary, trials.csv, plots). The `tune`
subcommand's flags are in harness/cli.py; `python -m harness.tune` runs it too.

The `tune:` section of an experiment file (harness/config.py:TuneConfig) names the method, the search space
(each key a setting of that method: int/float ranges, optionally log or stepped, or categorical choices), the
number of trials, the objectives, the storage, the sampler and the pruner.

A trial runs the method with the trial's settings on top of the method's own on every benchmark x seed of the
file, on train and validation data only: the benchmarks are opened here and only their train and val splits
are ever loaded, so test data never reaches a trial. Each cell's optimizer gets the experiment's
`budget_per_cell`, as in `sepo-bench optimize`. The trial's value is the validation accuracy of the method's
best prompt (mean over cells), scored by the task's evaluator on the whole val split after the method
returns (replies the method already paid for come from the cache). With a second objective (tokens, usd,
requests or evaluations the method spent, minimized) the study is multi-objective and its Pareto front is
reported. Costs count every reply the method used, cached or not (the ledger's Usage.used), so a trial's cost does not
depend on what earlier trials left in the response cache; for the same reason a per-cell budget for tuning
is best given in `max_evaluations` (request, token and dollar caps count paid requests only). Note the method
may itself choose its best prompt on val (SePO's `val_top_n`), so the value is an optimistic estimate; test
accuracy is measured by running the written best experiment file.

Pruning: the method reports every candidate and every finished generation (optimizer events); the best
admitted train (minibatch) score so far is reported to Optuna once per finished generation (step =
generation; cell i of a trial adds i * 1000), and the pruner (median by default) stops a trial that lags the
others at the same generation: the method's `should_stop` then ends its run as a budget stop would.

Storage: sqlite under the run folder by default (`<run dir>/tune/optuna.db`); an RDB URL
(`postgresql://user@host:port/db`, in `tune.storage` or `--storage`) lets workers on several machines share
one study, each started with the same command. `--workers N` starts N worker processes here. `n_trials` is
the study's total: a worker starts a trial only while fewer than n_trials are finished, running or queued,
and a trial that finds its slot already taken (two workers asked at once) is marked FAIL with user attr
`surplus` and runs nothing, so the study ends with exactly n_trials COMPLETE or PRUNED trials. RDB storages
record heartbeats: a killed worker's trial is failed after a grace period and its slot freed, and rerunning
the command finishes the study.

Tracking: every trial is one MLflow run in the experiment (through harness.tracking, tag `sepo.kind=trial`, so
reports of the experiment's cells do not count them) with the trial's settings as params, its candidates,
per-generation intermediate values, its value(s) and its state (COMPLETE / PRUNED / FAIL).

Outputs (`<run dir>/tune/`): `best.yaml` (the experiment file with the best trial's settings and no tune
section, ready for `sepo-bench optimize` or `make reproduce REPRODUCE_CONFIG=...`), `summary.json` (best vs
the method's own settings, the Pareto front, states), `trials.csv`, and Optuna's plots as PNG under `plots/`
(optimization history, parameter importances, intermediate values; Pareto front for two objectives).
"""


from harness.tune.study import with_driver
from harness.tune.validate import TuneError, TuneSetup, prepare
from harness.tune.workers import tune

__all__ = ["TuneError", "TuneSetup", "prepare", "tune", "with_driver"]
