"""Sweep files a SageMaker tuning job accepts or refuses, and what sagebook must say about each
(tests/test_tuning_limits.py). Each case is run with `sagebook sweep JOB --sweep FILE
--dry-run` against a job config of its own: `where` is `cloud` (ml.m5.large) or `local` (the
same sweep, rehearsed: checked as the tuning job it stands for).

- `sweep`: the sweep file, verbatim; `training`: keys added to the training config (whose
  defaults are DEFAULT_TRAINING); `keys`: pad the training config to this many keys.
- `refused`: the message (`expect`), the line (the first line of the file holding `at`) and
  the key it must name; `file` is `sweep` (default) or `training`.
- `sent` (cloud, accepted): fields of the printed request, by path, and the value each must
  have: the bounds exactly as written.
"""

from __future__ import annotations

from typing import Any

HEAD = "objective: {metric: val_accuracy, goal: maximize}\n"
RANDOM = HEAD + "strategy: random\nmax_trials: 4\n"
DEFAULT_TRAINING = {"epochs": 9, "lr": 0.01, "units": 8, "optimizer": "adam", "alpha": 0.0001}
RANGES = ("HyperParameterTuningJobConfig", "ParameterRanges")


def ranges(categorical: int = 0, continuous: int = 0, integer: int = 0) -> str:
    """A `parameters:` block of that many ranges of each kind, over keys c0…, f0…, i0…."""
    lines = ["parameters:"]
    lines += [f"  training.c{i}: [a, b]" for i in range(categorical)]
    lines += [f"  training.f{i}: {{min: 0.1, max: 0.9}}" for i in range(continuous)]
    lines += [f"  training.i{i}: {{min: 1, max: 9}}" for i in range(integer)]
    return "\n".join(lines) + "\n"


def values(count: int, width: int = 1) -> str:
    """A categorical parameter with `count` values, each `width` characters or more."""
    return "parameters:\n  training.optimizer:\n" + "".join(
        f"    - v{i}{'x' * max(0, width - len(str(i)) - 1)}\n" for i in range(count))


TWO_TUNED = "parameters:\n  training.lr: {min: 0.001, max: 0.1}\n  training.units: [8, 16]\n"
LONG_BOUND = "0." + "0" * 300 + "1"
ELEVEN_TYPES = ["ml.m5.large", "ml.m5.xlarge", "ml.m5.2xlarge", "ml.m5.4xlarge", "ml.c5.xlarge",
                "ml.c5.2xlarge", "ml.c5.4xlarge", "ml.m4.xlarge", "ml.m4.2xlarge",
                "ml.c4.xlarge", "ml.c4.2xlarge"]

CASES: list[dict[str, Any]] = [
    # ---- the five requests of issue 23, refused where SageMaker would refuse them
    {"name": "16 categorical and 15 continuous ranges", "where": "cloud",
     "sweep": RANDOM + ranges(categorical=16, continuous=15),
     "refused": {"expect": "31 hyperparameter ranges (15 continuous, 16 categorical); a tuning "
                           "job searches at most 30 in total",
                 "at": "parameters:", "key": "sweep.parameters"}},
    {"name": "hyperband max_resource above 20,000", "where": "cloud",
     "sweep": HEAD + "strategy: hyperband\nmax_trials: 4\n"
                     "hyperband:\n  min_resource: 1\n  max_resource: 30000\n"
                     "parameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "refused": {"expect": "at most 20,000 allowed (epochs, or whatever the resource is), got "
                           "30,000", "at": "max_resource", "key": "sweep.hyperband.max_resource"}},
    {"name": "hyperband without a hyperband block whose epochs is tuned", "where": "cloud",
     "sweep": HEAD + "strategy: hyperband\nmax_trials: 4\n"
                     "parameters:\n  training.epochs: [5, 10]\n",
     "refused": {"expect": "Hyperband without MaxResource: SageMaker infers it from a static "
                           "hyperparameter named epochs, numepochs, n-epochs, n_epochs, "
                           "num_epochs, and epochs is tuned, not static",
                 "at": "strategy", "key": "sweep.strategy"}},
    {"name": "99 static and 2 tuned hyperparameters", "where": "cloud", "keys": 101,
     "sweep": RANDOM + TWO_TUNED,
     "refused": {"expect": "102 hyperparameters in total: 99 static + 2 tuned + "
                           "_tuning_objective_metric, which SageMaker adds; a tuning job takes "
                           "at most 100", "at": "parameters:", "key": "sweep.parameters"}},
    {"name": "continuous bounds of seven significant digits", "where": "cloud",
     "sweep": RANDOM + "parameters:\n  training.lr: {min: 0.1234561, max: 0.1234564}\n",
     "sent": {RANGES + ("ContinuousParameterRanges", 0): {
         "Name": "lr", "MinValue": "0.1234561", "MaxValue": "0.1234564",
         "ScalingType": "Linear"}}},
    # ---- the documented limits, at their edges
    {"name": "exactly 30 ranges", "where": "cloud",
     "sweep": RANDOM + ranges(categorical=10, continuous=10, integer=10),
     "sent": {RANGES + ("IntegerParameterRanges", 9, "Name"): "i9"}},
    {"name": "31 integer ranges", "where": "cloud", "sweep": RANDOM + ranges(integer=31),
     "refused": {"expect": "at most 30 items allowed, got 31", "at": "parameters:",
                 "key": "sweep.parameters"}},
    {"name": "99 static and 2 tuned on two instance types, said once", "where": "cloud",
     "keys": 101, "sweep": HEAD + "strategy: bayesian\nmax_trials: 4\n" + TWO_TUNED
                            + "  job.instance_type: [ml.m5.large, ml.c5.xlarge]\n",
     "refused": {"expect": "102 hyperparameters in total", "at": "parameters:",
                 "key": "sweep.parameters"}},
    {"name": "98 static and 2 tuned: 101 with the objective", "where": "cloud", "keys": 100,
     "sweep": RANDOM + TWO_TUNED,
     "refused": {"expect": "101 hyperparameters in total: 98 static + 2 tuned",
                 "at": "parameters:", "key": "sweep.parameters"}},
    {"name": "97 static and 2 tuned: 100 with the objective", "where": "cloud", "keys": 99,
     "sweep": RANDOM + TWO_TUNED,
     "sent": {RANGES + ("ContinuousParameterRanges", 0, "Name"): "lr"}},
    {"name": "hyperband max_resource at 20,000", "where": "cloud",
     "sweep": HEAD + "strategy: hyperband\nmax_trials: 4\n"
                     "hyperband: {min_resource: 1, max_resource: 20000}\n"
                     "parameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "sent": {("HyperParameterTuningJobConfig", "StrategyConfig", "HyperbandStrategyConfig",
               "MaxResource"): 20000}},
    {"name": "hyperband inferring max_resource from a static epochs", "where": "cloud",
     "sweep": HEAD + "strategy: hyperband\nmax_trials: 4\n"
                     "parameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "sent": {("TrainingJobDefinition", "StaticHyperParameters", "epochs"): "9"}},
    {"name": "hyperband with no epochs-like hyperparameter", "where": "cloud",
     "training": {"epochs": None, "passes": 9},
     "sweep": HEAD + "strategy: hyperband\nmax_trials: 4\n"
                     "parameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "refused": {"expect": "and there is no such static hyperparameter; give "
                           "HyperbandStrategyConfig.MaxResource",
                 "at": "strategy", "key": "sweep.strategy"}},
    {"name": "hyperband inferring 30000 from num_epochs", "where": "cloud",
     "training": {"epochs": None, "num_epochs": 30000},
     "sweep": HEAD + "strategy: hyperband\nmax_trials: 4\n"
                     "parameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "refused": {"expect": "the static hyperparameter num_epochs, '30000', which is not a whole "
                           "number from 1 to 20,000", "at": "strategy", "key": "sweep.strategy"}},
    # ---- the shapes of CreateHyperParameterTuningJob, each at its line
    {"name": "31 values of one categorical parameter", "where": "cloud",
     "sweep": RANDOM + values(31),
     "refused": {"expect": "at most 30 items allowed, got 31", "at": "training.optimizer",
                 "key": "sweep.parameters.training.optimizer"}},
    {"name": "a categorical value of 300 characters", "where": "cloud",
     "sweep": RANDOM + "parameters:\n  training.optimizer:\n    - adam\n    - " + "s" * 300
              + "\n",
     "refused": {"expect": "at most 256 characters allowed, got 300", "at": "sssss",
                 "key": "sweep.parameters.training.optimizer"}},
    {"name": "a categorical value over two lines", "where": "cloud",
     "sweep": RANDOM + 'parameters:\n  training.optimizer: [adam, "sg\\nd"]\n',
     "refused": {"expect": "does not match the pattern .*", "at": "training.optimizer",
                 "key": "sweep.parameters.training.optimizer"}},
    {"name": "a bound of 303 characters, sent as written", "where": "cloud",
     "sweep": RANDOM + f"parameters:\n  training.lr:\n    min: '{LONG_BOUND}'\n    max: 0.1\n",
     "refused": {"expect": "at most 256 characters allowed, got 303", "at": "min:",
                 "key": "sweep.parameters.training.lr"}},
    {"name": "eleven instance types", "where": "cloud",
     "sweep": HEAD + "strategy: bayesian\nmax_trials: 4\nparameters:\n"
                     "  training.lr: {min: 0.001, max: 0.1}\n  job.instance_type:\n"
              + "".join(f"    - {t}\n" for t in ELEVEN_TYPES),
     "refused": {"expect": "at most 10 items allowed, got 11", "at": "job.instance_type",
                 "key": "sweep.parameters.job.instance_type"}},
    {"name": "max_runtime under two minutes", "where": "cloud",
     "sweep": RANDOM + "max_runtime: 1m\nparameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "refused": {"expect": "at least 120 allowed, got 60", "at": "max_runtime",
                 "key": "sweep.max_runtime"}},
    {"name": "max_runtime over half a year", "where": "cloud",
     "sweep": RANDOM + "max_runtime: 200d\nparameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "refused": {"expect": "at most 15,768,000 allowed", "at": "max_runtime",
                 "key": "sweep.max_runtime"}},
    {"name": "no_improvement under three", "where": "cloud",
     "sweep": RANDOM + "stop_when:\n  no_improvement: 2\n"
                       "parameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "refused": {"expect": "at least 3 allowed, got 2", "at": "no_improvement",
                 "key": "sweep.stop_when.no_improvement"}},
    {"name": "six parent sweeps to warm start from", "where": "cloud",
     "sweep": RANDOM + "warm_start:\n  sweeps: [s1, s2, s3, s4, s5, s6]\n"
                       "parameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "refused": {"expect": "at most 5 items allowed, got 6", "at": "warm_start",
                 "key": "sweep.warm_start"}},
    {"name": "a parent sweep name SageMaker cannot hold", "where": "cloud",
     "sweep": RANDOM + "warm_start:\n  sweeps: [sweep_with_underscores]\n"
                       "parameters:\n  training.lr: {min: 0.001, max: 0.1}\n",
     "refused": {"expect": "does not match the pattern", "at": "warm_start",
                 "key": "sweep.warm_start"}},
    {"name": "a static hyperparameter of 3,000 characters", "where": "cloud",
     "training": {"notes": "n" * 3000}, "sweep": RANDOM + TWO_TUNED,
     "refused": {"expect": "at most 2,500 characters allowed, got 3,000", "at": "notes:",
                 "key": "training.notes", "file": "training"}},
    {"name": "a range bound written as infinity", "where": "cloud",
     "sweep": RANDOM + "parameters:\n  training.lr: {min: 0.001, max: .inf}\n",
     "refused": {"expect": "min and max must be finite numbers", "at": "training.lr",
                 "key": "sweep.parameters.training.lr"}},
    # ---- bounds as written
    {"name": "exponent bounds on a log scale", "where": "cloud",
     "sweep": RANDOM + "parameters:\n  training.lr: {min: 1e-7, max: 2.5e-3, scale: log}\n",
     "sent": {RANGES + ("ContinuousParameterRanges", 0): {
         "Name": "lr", "MinValue": "1e-7", "MaxValue": "2.5e-3",
         "ScalingType": "Logarithmic"}}},
    {"name": "bounds of seventeen significant digits", "where": "cloud",
     "sweep": RANDOM + "parameters:\n  training.lr: {min: 0.12345678901234567, "
                       "max: 0.98765432109876543}\n",
     "sent": {RANGES + ("ContinuousParameterRanges", 0, "MinValue"): "0.12345678901234567",
              RANGES + ("ContinuousParameterRanges", 0, "MaxValue"): "0.98765432109876543"}},
    {"name": "quoted bounds and a whole-number float bound", "where": "cloud",
     "sweep": RANDOM + "parameters:\n  training.lr: {min: '0.00100', max: 1, type: float}\n",
     "sent": {RANGES + ("ContinuousParameterRanges", 0, "MinValue"): "0.00100",
              RANGES + ("ContinuousParameterRanges", 0, "MaxValue"): "1"}},
    {"name": "integer bounds", "where": "cloud",
     "sweep": RANDOM + "parameters:\n  training.units: {min: 16, max: 1024, scale: log}\n",
     "sent": {RANGES + ("IntegerParameterRanges", 0): {
         "Name": "units", "MinValue": "16", "MaxValue": "1024", "ScalingType": "Logarithmic"}}},
    {"name": "a grid of categorical values", "where": "cloud",
     "sweep": HEAD + "parameters:\n  training.units: [8, 16]\n  training.optimizer: [adam, sgd]\n",
     "sent": {RANGES + ("CategoricalParameterRanges", 0, "Values"): ["8", "16"]}},
    # ---- a local sweep is held to the tuning job it rehearses
    {"name": "local: 31 values of one categorical parameter", "where": "local",
     "sweep": HEAD + values(31),
     "refused": {"expect": "at most 30 items allowed, got 31", "at": "training.optimizer",
                 "key": "sweep.parameters.training.optimizer"}},
    {"name": "local: a value of 300 characters", "where": "local",
     "sweep": HEAD + "parameters:\n  training.optimizer:\n    - adam\n    - " + "s" * 300 + "\n",
     "refused": {"expect": "at most 256 characters allowed, got 300", "at": "sssss",
                 "key": "sweep.parameters.training.optimizer"}},
    {"name": "local: 16 categorical and 15 continuous ranges", "where": "local",
     "sweep": RANDOM + ranges(categorical=16, continuous=15),
     "refused": {"expect": "31 hyperparameter ranges", "at": "parameters:",
                 "key": "sweep.parameters"}},
    {"name": "local: 99 static and 2 tuned hyperparameters", "where": "local", "keys": 101,
     "sweep": RANDOM + TWO_TUNED,
     "refused": {"expect": "102 hyperparameters in total", "at": "parameters:",
                 "key": "sweep.parameters"}},
    {"name": "local: a static hyperparameter of 3,000 characters", "where": "local",
     "training": {"notes": "n" * 3000}, "sweep": HEAD + "parameters:\n  training.units: [8, 16]\n",
     "refused": {"expect": "at most 2,500 characters allowed, got 3,000", "at": "notes:",
                 "key": "training.notes", "file": "training"}},
    {"name": "local: a grid of 30 values", "where": "local", "sweep": HEAD + values(30)},
    {"name": "local: exactly 30 ranges", "where": "local",
     "sweep": RANDOM + ranges(categorical=10, continuous=10, integer=10)},
    {"name": "local: a job key varied with a hyperparameter", "where": "local",
     "sweep": HEAD + "parameters:\n  training.units: [8, 16]\n  job.max_runtime: [60, 120]\n"},
    {"name": "local: seven-digit bounds", "where": "local",
     "sweep": RANDOM + "parameters:\n  training.lr: {min: 0.1234561, max: 0.1234564}\n"},
]
