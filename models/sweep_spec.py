"""The SweepSpec (POST /v1/sweeps): a base JobSpec, a search space over its fields, and how to search it.

Plain data: models/sweeps.py turns it into Optuna's samplers and pruners."""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from models.spec import JobSpec, SpecError, Strict, Tag, printable_name
from models.sweep_domains import ChoiceDomain, Domain
from models.sweep_paths import PathError, check_path, with_value

MAX_TRIALS = 256
# random and tpe: TPE learns after a few random trials, and 16 trainings of a small network are an
# evening's wait on a CPU, minutes on a GPU.
DEFAULT_TRIALS = 16
MAX_PATHS = 16
CHECKED_POINTS = 64  # check_points validates at most this many specs (a JobSpec validates in ~0.1 ms)

# ---------------------------------------------------------------- early stopping

# Each pruner's knobs (Optuna's names) and their defaults for trials counted in epochs, which are few:
# median waits for 3 finished trials (Optuna's 5 would leave a 16-trial sweep little to prune) and
# never judges epoch 1, whose numbers say more about the initialisation than about the point;
# asha and hyperband halve by 3 from 1 epoch (rungs at epochs 1, 3, 9: Optuna's factor 4 would
# leave a 10-epoch trial one rung).
PRUNER_KNOBS: dict[str, dict[str, int | None]] = {
    "median": {"n_startup_trials": 3, "n_warmup_steps": 2},
    "asha": {"min_resource": 1, "reduction_factor": 3},
    "hyperband": {"min_resource": 1, "max_resource": None, "reduction_factor": 3},
}


class SweepEarlyStopping(Strict):
    """Stop a trial whose validation objective, reported after every epoch, falls behind the others'.
    Steps are epochs, counted from 1."""

    type: Literal["median", "asha", "hyperband"] = Field(
        description="median: stop a trial whose best so far is worse than the median of the finished "
        "trials at the same epoch (optuna MedianPruner); asha: asynchronous successive halving, keep "
        "the best 1/reduction_factor at each rung (SuccessiveHalvingPruner); hyperband: several asha "
        "brackets of different aggressiveness (HyperbandPruner)"
    )
    n_startup_trials: int | None = Field(
        None, ge=0, le=MAX_TRIALS, description="median: finished trials before any is pruned; default 3"
    )
    n_warmup_steps: int | None = Field(
        None, ge=0, le=1000, description="median: the earliest epoch a trial can be pruned at; default 2"
    )
    min_resource: int | None = Field(
        None, ge=1, le=1000, description="asha, hyperband: epochs in the first rung; default 1"
    )
    max_resource: int | None = Field(
        None, ge=1, le=1000, description="hyperband: epochs of a full trial; default: the base's epochs"
    )
    reduction_factor: int | None = Field(
        None, ge=2, le=16, description="asha, hyperband: 1 in this many goes on at each rung; default 3"
    )

    @model_validator(mode="after")
    def _knobs_of_its_type(self) -> SweepEarlyStopping:
        knobs = PRUNER_KNOBS[self.type]
        given = {name for name in self.model_fields_set if getattr(self, name) is not None}  # a dump's nulls
        foreign = sorted(given - {"type"} - knobs.keys())
        if foreign:
            message = f"{self.type} takes {', '.join(knobs)}"
            _refuse([((name,), message, getattr(self, name)) for name in foreign])
        for name, default in knobs.items():  # resolved here, so the stored spec says what pruned
            if getattr(self, name) is None:
                setattr(self, name, default)
        return self


# ---------------------------------------------------------------- the sweep


class SweepSpec(Strict):
    """A hyperparameter sweep: trials of `base` with the fields named in `space` drawn by `method`.

    model_dump writes `base` as the client sent it, so a stored sweep reloads to the same points: the
    preset defaults (models.spec.PRESET_DEFAULTS) apply anew to each point, e.g. the lr of the
    optimizer type being tried."""

    name: str | None = Field(None, min_length=1, max_length=120)
    base: JobSpec = Field(description="the job every trial starts from, checked like a submitted job")
    space: dict[str, Domain] = Field(
        min_length=1,
        max_length=MAX_PATHS,
        description='dotted paths of the base\'s fields ("optimizer.lr", "regularization.dropout", '
        '"model.layers.0.out_channels") to the domains their values are drawn from',
    )
    method: Literal["grid", "random", "tpe"] = Field(
        "tpe",
        description="grid: every combination of choice domains, in an order shuffled by the seed (so a "
        "max_trials below the grid's size tries a random part of it); random: independent draws; tpe: "
        "Optuna's Tree-structured Parzen Estimator, random for its first trials, then drawn towards the "
        "best so far",
    )
    max_trials: int | None = Field(
        None, ge=1, le=MAX_TRIALS, description=f"default: grid, its size; random and tpe, {DEFAULT_TRIALS}"
    )
    parallelism: int = Field(
        2, ge=1, le=MAX_TRIALS, description="trials running at once; at most max_trials (default: 2 or fewer)"
    )
    objective: Literal["val_acc", "val_loss"] = Field(
        "val_acc", description="what a trial is judged by: val_acc is maximised, val_loss minimised"
    )
    early_stopping: SweepEarlyStopping | None = Field(None, description="prune trials early; null: never")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="the same seed draws the same points")
    tags: list[Tag] = Field(default_factory=list, max_length=16, description="added to every trial's tags")

    _raw_base: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw_base(cls, data: Any, handler: Callable[[Any], SweepSpec]) -> SweepSpec:
        sweep = handler(data)
        raw = data.get("base") if isinstance(data, dict) else None
        if isinstance(raw, dict):
            sweep._raw_base = copy.deepcopy(raw)
        elif not sweep._raw_base:  # a JobSpec given in Python: what it was given is the nearest thing
            sweep._raw_base = sweep.base.model_dump(mode="json", exclude_unset=True)
        return sweep

    @field_serializer("base")
    def _base_as_sent(self, base: JobSpec) -> dict[str, Any]:
        return copy.deepcopy(self._raw_base) or base.model_dump(mode="json")

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str | None) -> str | None:
        return printable_name(name)

    @model_validator(mode="after")
    def _check_space(self) -> SweepSpec:
        errors = []
        for path, domain in self.space.items():
            if message := _path_problem(path, self.space):
                errors.append((("space", path), message, path))
            elif self.method == "grid" and not isinstance(domain, ChoiceDomain):
                message = 'grid tries every combination of choice domains: write {"choice": [...]} here'
                errors.append((("space", path), message, domain.model_dump()))
        if self.base.ensemble.members > 1:
            errors.append((("base", "ensemble", "members"), ONE_MODEL, self.base.ensemble.members))
        _refuse(errors)
        return self

    @model_validator(mode="after")
    def _resolve_budget(self) -> SweepSpec:
        size = self.grid_size()
        if size is not None and self.max_trials is None and size > MAX_TRIALS:
            message = (
                f"the grid has {size} points, more than a sweep's {MAX_TRIALS} trials: make it smaller, or "
                "give max_trials to try a random part of it"
            )
            _refuse([(("space",), message, None)])
        if self.max_trials is None:
            self.max_trials = size if size is not None else DEFAULT_TRIALS
        if size is not None and self.max_trials > size:
            _refuse([(("max_trials",), f"the grid has {size} points only", self.max_trials)])
        if "parallelism" not in self.model_fields_set:
            self.parallelism = min(self.parallelism, self.max_trials)
        elif self.parallelism > self.max_trials:
            message = f"more trials at once than max_trials ({self.max_trials})"
            _refuse([(("parallelism",), message, self.parallelism)])
        if len(set(self.tags) | set(self.base.tags)) > 16:
            _refuse([(("tags",), "with the base's tags, more than a job's 16", self.tags)])
        return self

    @model_validator(mode="after")
    def _resolve_early_stopping(self) -> SweepSpec:
        stopping, epochs = self.early_stopping, self.base.training.epochs
        if stopping is None:
            return self
        if stopping.type == "hyperband" and stopping.max_resource is None:
            stopping.max_resource = epochs
        if stopping.max_resource is not None and stopping.min_resource > stopping.max_resource:
            message = f"above max_resource ({stopping.max_resource})"
            _refuse([(("early_stopping", "min_resource"), message, stopping.min_resource)])
        first = stopping.n_warmup_steps if stopping.type == "median" else stopping.min_resource
        if first > epochs and "training.epochs" not in self.space:
            knob = "n_warmup_steps" if stopping.type == "median" else "min_resource"
            message = f"the base trains {epochs} epochs: no trial would ever be judged"
            _refuse([(("early_stopping", knob), message, first)])
        return self

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if self.objective == "val_acc" else "minimize"

    def grid_size(self) -> int | None:
        """The number of grid points; None unless the method is grid."""
        if self.method != "grid" or not all(isinstance(d, ChoiceDomain) for d in self.space.values()):
            return None
        return math.prod(len(domain.choice) for domain in self.space.values())

    def trial_name(self, number: int) -> str:
        suffix = f": trial {number}"
        label = self.name or self.base.name or self.base.display_name
        return label[: 120 - len(suffix)] + suffix

    def trial_spec(self, params: dict[str, Any], number: int) -> JobSpec:
        """The base with each param written at its path, validated; SpecError for a point that cannot run,
        at ("space", path) for the path it is most likely due to, else at the JobSpec's own loc."""
        if unknown := sorted(params.keys() - self.space.keys()):
            raise ValueError(f"params {unknown} are not paths of the space")
        resolved = self.base.model_dump(mode="json")
        raw = self._raw_base
        for path in self.space:
            if path in params:
                raw = with_value(raw, resolved, path, params[path])
        tags = sorted(set(raw.get("tags", [])) | set(self.tags))
        raw = {**raw, "name": self.trial_name(number), "tags": tags}
        try:
            return JobSpec.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            loc, message = tuple(error["loc"]), error["msg"]
            field = ".".join(map(str, loc)) or "the spec"
            path = self._blamed_path(loc)
            raise SpecError(
                ("space", path) if path else loc, f"at {params}, {field} is refused: {message}"
            ) from exc

    def check_points(self, check: Callable[[JobSpec], None] | None = None) -> None:
        """SpecError at ("space", path) when every point tried is invalid: a grid's every point (up to
        MAX_TRIALS of them), else a fixed sample of CHECKED_POINTS: the domains' ends and middles in
        step, then seeded random draws. Stops at the first valid point. `check` adds a caller's own
        checks of a spec (shapes on the meta device, say), raising SpecError."""
        blamed: Counter[str] = Counter()
        example = None
        for number, params in enumerate(self._points_to_check()):
            try:
                spec = self.trial_spec(params, number)
                if check is not None:
                    check(spec)
                return
            except SpecError as exc:
                blamed[self._blamed_path(exc.loc) or next(iter(self.space))] += 1
                example = example or exc.message
        path, _ = blamed.most_common(1)[0]
        tried = sum(blamed.values())
        raise SpecError(("space", path), f"every point tried ({tried}) is invalid, e.g. {example}")

    def _points_to_check(self) -> Iterator[dict[str, Any]]:
        domains = self.space.values()
        every = math.prod(len(d.choice) if isinstance(d, ChoiceDomain) else math.inf for d in domains)
        if every <= (MAX_TRIALS if self.method == "grid" else CHECKED_POINTS):  # every point, then
            for values in itertools.product(*(domain.choice for domain in domains)):
                yield dict(zip(self.space, values, strict=True))
            return
        marks = {path: domain.marks() for path, domain in self.space.items()}
        in_step = min(CHECKED_POINTS, max(map(len, marks.values())))
        for k in range(in_step):
            yield {path: values[k % len(values)] for path, values in marks.items()}
        draws = random.Random(self.seed)
        for _ in range(CHECKED_POINTS - in_step):
            yield {path: domain.draw(draws) for path, domain in self.space.items()}

    def _blamed_path(self, loc: tuple) -> str | None:
        """The space path that a JobSpec error at `loc` is most likely due to: the one sharing the longest
        run of fields with it (union tags in `loc` skipped); the only path; or None."""
        if loc[:1] == ("space",) and len(loc) > 1 and loc[1] in self.space:
            return loc[1]
        best, best_shared = None, 0
        for path in self.space:
            shared = _shared_fields(path.split("."), [str(part) for part in loc])
            if shared > best_shared:
                best, best_shared = path, shared
        return best or (next(iter(self.space)) if len(self.space) == 1 else None)


# A trial is one training with one objective per epoch; an ensemble job is several, judged together.
ONE_MODEL = (
    "a trial trains one model: give members 1, vary training.seed in the space for repeats, and "
    "build ensembles from the sweep's runs (POST /v1/ensembles with from_sweep)"
)


def _path_problem(path: str, space: dict[str, Any]) -> str | None:
    if path == "name":
        return "each trial is named after the sweep: give the sweep a name instead"
    if path == "ensemble.members":
        return ONE_MODEL
    try:
        check_path(path)
    except PathError as exc:
        return str(exc)
    if outer := next((other for other in space if path.startswith(other + ".")), None):
        return f"lies inside '{outer}', which the space sets too"
    return None


def _shared_fields(path: list[str], loc: list[str]) -> int:
    """How many leading parts of `path` appear in order in `loc`, which starts with the first."""
    if not loc or loc[0] != path[0]:
        return 0
    shared = 0
    for part in loc:
        if shared < len(path) and part == path[shared]:
            shared += 1
    return shared


def _refuse(errors: list[tuple[tuple, str, Any]]) -> None:
    """Refusals of (loc, message, value) at their own paths (a model validator's errors would otherwise
    sit at the root); nothing when the list is empty."""
    if errors:
        details = [
            InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)
            for loc, message, value in errors
        ]
        raise ValidationError.from_exception_data("SweepSpec", details)
