"""Bayesian and Hyperband sweeps on this machine: an Optuna study chooses each trial as results
come in (L5 orchestration, driven by `local.run_trials`).

`bayesian` asks Optuna's TPE sampler for each next trial's parameters from the objectives of
those that finished; `hyperband` does too, and Optuna's Hyperband pruner reads each running
trial's objective per epoch (from its live metrics) and stops the trials its brackets drop.
An epoch is one value of the objective metric, as SageMaker's Hyperband counts its resource.
The study lives in this process only: the sweep's record (its trials' parameters and
objectives) is what is kept, and `--resume` tells a new study what the record holds.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from ..apicheck import HYPERBAND_RESOURCE_KEYS
from .record import SweepRecord
from .spec import Parameter, Sweep, draw, legible, override

if TYPE_CHECKING:
    import optuna

DRAWS = 100  # random draws for an untried trial before a tried one is run again
STUDY_NAME = "sagebook-sweep"  # fixed: Hyperband's brackets are a hash of it and trial numbers
MIN_RESOURCE = 1  # SageMaker's Hyperband default when the sweep gives no hyperband block


def hyperband_resources(sweep: Sweep, training: dict[str, Any]) -> tuple[int, int]:
    """(min, max) epochs of a Hyperband trial: the sweep's `hyperband:` block, else 1 and the
    training config's static epochs, as SageMaker infers MaxResource (the sweep's check has
    refused a hyperband sweep that has neither)."""
    if sweep.hyperband is not None:
        return sweep.hyperband.min_resource, sweep.hyperband.max_resource
    key = next(k for k in HYPERBAND_RESOURCE_KEYS if k in training)
    return MIN_RESOURCE, int(str(training[key]).strip())


class AdaptiveSearch:
    """The trials of one bayesian or hyperband sweep, proposed one at a time by a study that
    learns each finished trial's objective; `max_trials` in all, counting the record's own."""

    def __init__(self, sweep: Sweep, record: SweepRecord, training: dict[str, Any]) -> None:
        import optuna  # reason: heavy (numpy, sqlalchemy), and only an adaptive sweep needs it

        self._optuna = optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.sweep = sweep
        self.prunes = sweep.strategy == "hyperband"
        assert sweep.max_trials is not None
        # A third of the budget explores at random first (Optuna's default of 10 would turn
        # every sweep of 10 trials or fewer into a random search); constant_liar counts a
        # running trial as a poor result, so that trials run at once are proposed apart.
        sampler = optuna.samplers.TPESampler(
            seed=sweep.seed, n_startup_trials=max(1, min(10, sweep.max_trials // 3)),
            constant_liar=True)
        pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
        if self.prunes:
            low, high = hyperband_resources(sweep, training)
            pruner = optuna.pruners.HyperbandPruner(min_resource=low, max_resource=high)
        self.study = optuna.create_study(
            study_name=STUDY_NAME, sampler=sampler, pruner=pruner,
            direction="maximize" if sweep.objective.goal == "maximize" else "minimize")
        self._distributions = {key: _distribution(optuna, p)
                               for key, p in sweep.parameters.items()}
        self._asked: dict[int, optuna.Trial] = {}
        self._reported: dict[int, int] = {}
        self._record = record
        self._rng = random.Random(sweep.seed)
        for entry in record.trials:
            if entry.get("status") == "Completed" and not entry.get("early_stopped"):
                self._learn(entry)

    def more(self) -> bool:
        """Whether the budget holds another new trial."""
        assert self.sweep.max_trials is not None
        return len(self._record.trials) < self.sweep.max_trials

    def propose(self) -> dict[str, Any]:
        """A new trial the study chose, added to the record's trials as Pending. When TPE
        proposes parameters the sweep has run or runs (in a small space of lists it proposes
        its favourite again and again), an untried point drawn at random takes its place (the
        proposal is told to the study as failed, which TPE leaves out): a trial is not spent
        on a known result while others are untried."""
        tried = [t["parameters"] for t in self._record.trials]
        trial = self.study.ask(self._distributions)
        parameters = self._parameters(trial)
        for _ in range(DRAWS):
            if parameters not in tried:
                break
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            self.study.enqueue_trial(self._internal(
                {key: draw(p, self._rng) for key, p in self.sweep.parameters.items()}))
            trial = self.study.ask(self._distributions)
            parameters = self._parameters(trial)
        entry = {"trial": len(self._record.trials), "parameters": parameters,
                 "overrides": [override(k, v) for k, v in parameters.items()],
                 "status": "Pending"}
        self._record.trials.append(entry)
        self._asked[entry["trial"]] = trial
        return entry

    def adopt(self, entry: dict[str, Any]) -> None:
        """A trial of the record run again (`--resume`): the study follows it with the same
        parameters, so that Hyperband can stop it and its objective counts."""
        self.study.enqueue_trial(self._internal(entry["parameters"]))
        self._asked[entry["trial"]] = self.study.ask(self._distributions)

    def observe(self, index: int, series: list[float]) -> bool:
        """Report the trial's new epochs to the study; True when Hyperband drops it."""
        trial = self._asked.get(index)
        if not self.prunes or trial is None:
            return False
        for step in range(self._reported.get(index, 0), len(series)):
            self._reported[index] = step + 1
            trial.report(series[step], step + 1)
            if trial.should_prune():
                return True
        return False

    def tell(self, entry: dict[str, Any]) -> None:
        """Tell the study how the trial ended: its objective, pruned, or failed."""
        trial = self._asked.pop(entry["trial"], None)
        if trial is None:
            return
        state = self._optuna.trial.TrialState
        objective = entry.get("objective")
        if entry.get("early_stopped"):
            self.study.tell(trial, state=state.PRUNED)
        elif entry.get("status") == "Completed" and isinstance(objective, int | float):
            self.study.tell(trial, float(objective))
        else:
            self.study.tell(trial, state=state.FAIL)

    def _learn(self, entry: dict[str, Any]) -> None:
        """A trial the record holds as finished, added to the study as if it had asked it."""
        if not isinstance(entry.get("objective"), int | float):
            return
        try:
            params = self._internal(entry["parameters"])
        except (KeyError, ValueError):
            return  # parameters outside this sweep's space teach the study nothing
        self.study.add_trial(self._optuna.trial.create_trial(
            params=params, distributions=self._distributions, value=float(entry["objective"])))

    def _parameters(self, trial: optuna.Trial) -> dict[str, Any]:
        return {key: self._value(key, trial.params[key]) for key in self.sweep.parameters}

    def _value(self, key: str, proposed: Any) -> Any:
        """The trial's value of `key` from the study's: a listed value by its index, a float
        rounded as a random search's are."""
        parameter = self.sweep.parameters[key]
        if parameter.values is not None:
            return parameter.values[proposed]
        if parameter.kind == "int":
            return int(proposed)
        return legible(float(proposed), float(parameter.min or 0), float(parameter.max or 0))

    def _internal(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """The study's form of a trial's parameters: a listed value as its index."""
        internal = {}
        for key, parameter in self.sweep.parameters.items():
            value = parameters[key]
            internal[key] = parameter.values.index(value) if parameter.values is not None \
                else value
        return internal


def _distribution(optuna: Any, parameter: Parameter) -> optuna.distributions.BaseDistribution:
    """The study's range for a parameter. A list is searched by index: its values may be any
    YAML (mappings too), which Optuna's categorical choices cannot hold."""
    if parameter.values is not None:
        return optuna.distributions.CategoricalDistribution(list(range(len(parameter.values))))
    log = parameter.scale == "log"
    if parameter.kind == "int":
        return optuna.distributions.IntDistribution(int(parameter.min or 0),
                                                    int(parameter.max or 0), log=log)
    return optuna.distributions.FloatDistribution(float(parameter.min or 0),
                                                  float(parameter.max or 0), log=log)
