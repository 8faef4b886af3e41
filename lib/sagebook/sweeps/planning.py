"""A sweep read and checked against the configs it varies, before anything runs (L5
orchestration, with the rest of `sweeps`): what `start` runs, the tuning job is built from, and
`--dry-run` prints. Its own module, so that `tuning` takes it without importing the package
that starts tuning jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import LaunchConfig
from ..printing import cell_text
from . import spec as spec_mod
from .adaptive import hyperband_resources


@dataclass
class SweepPlan:
    """A validated sweep over validated configs: what `start` runs and `--dry-run` prints."""

    spec: spec_mod.SweepFile
    config: LaunchConfig
    job_path: Path
    overrides: list[str]
    remote: bool
    trials: list[spec_mod.Trial] = field(default_factory=list)

    @property
    def sweep(self) -> spec_mod.Sweep:
        return self.spec.sweep

    def describe(self) -> str:
        """The trial table (grid, random on this machine) or the search space and its limits
        (SageMaker, or bayesian and hyperband anywhere: their trials are chosen as results
        come in), then the overrides every trial runs with, if any."""
        shared = f"\noverrides, in every trial: {', '.join(self.overrides)}"
        return self._search() + (shared if self.overrides else "")

    def _search(self) -> str:
        sweep = self.sweep
        head = (f"sweep of {self.config.job.experiment}: {sweep.strategy}, "
                f"{sweep.objective.goal} {sweep.objective.metric}")
        if not self.remote and sweep.strategy not in spec_mod.ADAPTIVE:
            keys = list(sweep.parameters)
            rows = [["trial", *keys]] + [[str(t.index), *(cell_text(t.parameters[k]) for k in keys)]
                                         for t in self.trials]
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                              .rstrip() for r in rows)
            return (f"{head}; {len(self.trials)} trials, {sweep.max_parallel} at a time on "
                    f"{self.config.job.instance_type}\n{table}")
        if not self.remote:
            chooser = "TPE sampler" if sweep.strategy == "bayesian" else \
                "TPE sampler, Hyperband pruner"
            head += f"; trials chosen by Optuna ({chooser}) on {self.config.job.instance_type}"
        lines = [head, "search space:"]
        for key, parameter in sweep.parameters.items():
            if parameter.values is not None:
                lines.append(f"  {key}: one of {', '.join(cell_text(v) for v in parameter.values)}")
            else:
                low, high = parameter.bounds()
                lines.append(f"  {key}: {parameter.kind} in [{low}, {high}], "
                             f"{parameter.scale} scale")
        lines.append("limits: " + ", ".join(
            f"{name} {value}" for name, value in (
                ("max_trials", sweep.max_trials), ("max_parallel", sweep.max_parallel),
                ("max_runtime", sweep.max_runtime), ("seed", sweep.seed),
                ("early_stopping", "median rule" if sweep.early_stopping else None),
                ("target", sweep.stop_when and sweep.stop_when.target),
                ("no_improvement", sweep.stop_when and sweep.stop_when.no_improvement),
                ("epochs per trial", self._hyperband_epochs()),
            ) if value is not None))
        return "\n".join(lines)


    def _hyperband_epochs(self) -> str | None:
        """Hyperband's resource, when the sweep gives it or a local sweep infers it (SageMaker
        infers it from the static epochs itself)."""
        sweep = self.sweep
        if sweep.strategy != "hyperband" or (self.remote and sweep.hyperband is None):
            return None
        low, high = hyperband_resources(sweep, self.config.training)
        return f"{low} to {high}"
