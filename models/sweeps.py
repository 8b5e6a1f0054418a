"""A sweep's decisions (the next point, prune or not, importances, the best trial), made by Optuna.

The trials live in trainyard's own tables, not in Optuna's storage (its RDBStorage brings its own
Alembic history and would split a sweep's state across two stores). So each decision builds an
in-memory study named after the sweep and replays the stored trials into it, in trial-number order
(Hyperband assigns brackets by hashing the study name and the trial number). What a sampler or a pruner
writes into a trial's system_attrs (GridSampler's grid_id, ASHA's completed_rung_k) comes back in the
returned records, to be stored and replayed next time.

Reproducibility: the sampler is rebuilt for every ask, so it is seeded from (sweep seed, trial number);
one seeded once and rebuilt would restart its random stream, and draw the same point for every trial.
Random points then depend on the seed and the trial number alone, whatever the parallelism; grid
points too (GridSampler shuffles the grid by the sweep's seed and gives trial k the k-th point); TPE's
on the history as well, so a TPE sweep repeats exactly with parallelism 1 (and the same results).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from optuna.trial import TrialState

from models.sweep_domains import ChoiceDomain, Domain, IntDomain, LogUniformDomain, UniformDomain
from models.sweep_spec import SweepEarlyStopping, SweepSpec

__all__ = [
    "ChoiceDomain",
    "Domain",
    "IntDomain",
    "LogUniformDomain",
    "SweepEarlyStopping",
    "SweepSpec",
    "TrialRecord",
    "UniformDomain",
    "best_trial",
    "importances",
    "next_trial",
    "no_trials_left",
    "should_prune",
]

# Optuna logs every study and trial at INFO: a worker deciding every epoch would log little else.
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

SEED_STRIDE = 1_000_003  # above max_trials: two (seed, number) pairs share a sampler seed only modulo 2**32


@dataclass
class TrialRecord:
    """One trial as trainyard stores it: what Optuna needs to replay it."""

    number: int
    params: dict[str, Any]
    # Optuna's own states: RUNNING (queued or training), COMPLETE, PRUNED, or FAIL (failed, cancelled or
    # refused: the samplers leave those out).
    state: TrialState
    # The objective: of the kept weights when complete, of the last epoch when pruned.
    value: float | None = None
    values: dict[int, float] = field(default_factory=dict)  # epoch (from 1) -> objective, as reported
    system_attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = TrialState(self.state)  # an int read back from JSON is Optuna's state again


def next_trial(spec: SweepSpec, sweep_id: str, trials: list[TrialRecord]) -> TrialRecord | None:
    """The next point to try, as a running trial numbered len(trials); None once max_trials are made
    (a grid's max_trials is at most its size, so that is also when the grid is exhausted)."""
    if no_trials_left(spec, trials):
        return None
    number = len(trials)
    study = _replayed(spec, sweep_id, trials, _sampler(spec, number))
    asked = study.ask(fixed_distributions=distributions(spec))
    frozen = study.get_trials(deepcopy=False)[asked.number]
    params = {path: asked.params[path] for path in spec.space}
    return TrialRecord(number, params, TrialState.RUNNING, system_attrs=dict(frozen.system_attrs))


def no_trials_left(spec: SweepSpec, trials: list[TrialRecord]) -> bool:
    """Whether next_trial would answer None: a check that asks no sampler."""
    return len(trials) >= spec.max_trials


def should_prune(
    spec: SweepSpec, sweep_id: str, trials: list[TrialRecord], number: int
) -> tuple[bool, dict[str, Any]]:
    """Whether running trial `number`, its values reported up to its latest epoch, stops now; and its
    system_attrs after the pruner's writes (ASHA's rungs), to be stored."""
    record = _by_number(trials, number)
    if spec.early_stopping is None or record.state != TrialState.RUNNING or not record.values:
        return False, dict(record.system_attrs)
    study = _replayed(spec, sweep_id, trials, optuna.samplers.RandomSampler(seed=0))  # nothing is sampled
    prune = study.pruner.prune(study, study.get_trials(deepcopy=False)[number])
    return bool(prune), dict(study.get_trials(deepcopy=False)[number].system_attrs)


def importances(spec: SweepSpec, sweep_id: str, trials: list[TrialRecord]) -> dict[str, float] | None:
    """Each path's share of the objective's variance over the complete trials (fANOVA, seeded so it
    repeats), summing to 1; None where it cannot say (fewer than 2 complete trials, no variance)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and _finite(t.value)]
    if len(complete) < 2:
        return None
    try:
        study = optuna.create_study(study_name=sweep_id, direction=spec.direction)
        for record in complete:
            study.add_trial(_frozen(spec, record))
        shares = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=spec.seed))
    except Exception:  # a display nicety: whatever Optuna cannot rank must not fail the sweep's page
        return None
    if not shares or not all(math.isfinite(share) for share in shares.values()):
        return None
    return {path: float(shares.get(path, 0.0)) for path in spec.space}


def best_trial(spec: SweepSpec, trials: list[TrialRecord]) -> TrialRecord | None:
    """The complete trial with the best objective (val_acc highest, val_loss lowest); ties: lower number."""
    sign = -1.0 if spec.direction == "maximize" else 1.0
    complete = [t for t in trials if t.state == TrialState.COMPLETE and _finite(t.value)]
    return min(complete, key=lambda t: (sign * t.value, t.number), default=None)


def distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """Each path's domain as Optuna's distribution."""
    return {path: _distribution(domain) for path, domain in spec.space.items()}


def _distribution(domain: Domain) -> BaseDistribution:
    if isinstance(domain, ChoiceDomain):
        return CategoricalDistribution(domain.choice)
    if isinstance(domain, UniformDomain):
        return FloatDistribution(*domain.uniform)
    if isinstance(domain, LogUniformDomain):
        return FloatDistribution(*domain.loguniform, log=True)
    return IntDistribution(*domain.int)


def _sampler(spec: SweepSpec, number: int) -> optuna.samplers.BaseSampler:
    if spec.method == "grid":
        # The one seed that is not per trial: GridSampler shuffles its points by the seed and gives
        # trial k the k-th, so every ask must see the same shuffle.
        grid = {path: domain.choice for path, domain in spec.space.items()}
        return optuna.samplers.GridSampler(grid, seed=spec.seed)
    seed = (spec.seed * SEED_STRIDE + number) % 2**32  # numpy's seeds are 32-bit
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tpe_startup_trials(spec.max_trials))


def tpe_startup_trials(max_trials: int) -> int:
    """TPE's random trials before it models the results: Optuna's 10 in a large sweep, a quarter of a
    small one (10 of the default 16 would leave TPE 6 trials to use what it learnt)."""
    return max(2, min(10, max_trials // 4))


def _pruner(stopping: SweepEarlyStopping | None) -> optuna.pruners.BasePruner:
    if stopping is None:
        return optuna.pruners.NopPruner()
    if stopping.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=stopping.n_startup_trials, n_warmup_steps=stopping.n_warmup_steps
        )
    if stopping.type == "asha":  # Optuna's SuccessiveHalvingPruner is the asynchronous one (ASHA)
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=stopping.min_resource, reduction_factor=stopping.reduction_factor
        )
    return optuna.pruners.HyperbandPruner(
        min_resource=stopping.min_resource,
        max_resource=stopping.max_resource,
        reduction_factor=stopping.reduction_factor,
    )


def _replayed(
    spec: SweepSpec, sweep_id: str, trials: list[TrialRecord], sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    """An in-memory study holding `trials`, numbered as stored.

    Its Hyperband pruner is new, so TPE learns from every bracket's trials (a long-lived Optuna study
    narrows TPE to the asking trial's bracket once its pruner has pruned once): in a sweep's few
    trials, the others' results are worth more than the brackets' separation."""
    ordered = sorted(trials, key=lambda t: t.number)
    if [t.number for t in ordered] != list(range(len(ordered))):
        raise ValueError(f"sweep {sweep_id}: trial numbers must run 0..{len(ordered) - 1} without gaps")
    study = optuna.create_study(
        storage=None,
        study_name=sweep_id,
        direction=spec.direction,
        sampler=sampler,
        pruner=_pruner(spec.early_stopping),
    )
    for record in ordered:
        study.add_trial(_frozen(spec, record))
    return study


def _frozen(spec: SweepSpec, record: TrialRecord) -> optuna.trial.FrozenTrial:
    known = distributions(spec)
    params = {path: value for path, value in record.params.items() if path in known}
    state = record.state
    steps = {int(epoch): float(value) for epoch, value in record.values.items()}  # JSON keys are strings
    value = record.value
    if state is TrialState.PRUNED and value is None and steps:
        value = steps[max(steps)]
    if state is TrialState.COMPLETE and value is None:
        state = TrialState.FAIL  # a trial without its objective cannot be ranked: the samplers skip it
    return optuna.trial.create_trial(
        state=state,
        value=value if state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
        params=params,
        distributions={path: known[path] for path in params},
        intermediate_values=steps,
        system_attrs=dict(record.system_attrs),
    )


def _by_number(trials: list[TrialRecord], number: int) -> TrialRecord:
    for record in trials:
        if record.number == number:
            return record
    raise ValueError(f"no trial {number} among {len(trials)}")


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
