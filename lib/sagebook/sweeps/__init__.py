"""Sweeps: one YAML block runs a grid, random, bayesian or hyperband search here, or a SageMaker
tuning job. The package spans layers, each module in its own (README, Layout):

    spec.py      the sweep block: parsing, validation against the configs, grid/random trials
                                                                        (L1 configuration)
    shape.py     the types a sweep record's fields must have                (L2 storage)
    record.py    the sweep's own record in the store                        (L2 storage)
    planning.py  SweepPlan: a sweep checked against its configs, before anything runs
                                                                        (L5 orchestration)
    local.py     trials in parallel on this machine, each a run with its own record  (L5)
    adaptive.py  bayesian and hyperband here: the Optuna study that proposes each trial (L5)
    trial.py     the process that runs one local trial                      (L5)
    tuning.py    the CreateHyperParameterTuningJob request, and its training jobs as records
                                                                        (L5)
    control.py   plan, start, resume and refresh a sweep                    (L5)
    page.py      a sweep's page in the report and the dashboard             (L6 presentation)
    form.py      the Sweep part of the config form                          (L7 front ends)

This file imports nothing: a module that reads a sweep's record does not load its orchestration.
"""
