"""The `sagebook` command: a thin shell over the package, rendering errors without tracebacks.

Imports stay inside the commands so that `sagebook --help` costs no more than argparse.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .inputs import DamagedFile
    from .launch import Run
    from .stores import Store
    from .sweeps.record import SweepRecord


# Seconds a command runs before its cyclic garbage collector starts (see `console`).
STARTUP_SECONDS = 3.0


def console() -> None:
    """The `sagebook` program (`python -m sagebook.cli` too): `main`, and its exit code.

    Its first seconds run without the cyclic garbage collector. Starting a command allocates
    hundreds of thousands of objects that live as long as the process (modules, botocore's
    service models, pydantic's validators) and next to no cyclic garbage, while each
    collection re-traverses them all: about 30 ms of a 0.45 s launch. Then the survivors move
    to the permanent generation (`gc.freeze`), which later collections skip, and the collector
    runs again for the commands that go on for hours (following a job, a local run, the
    dashboard). Only the program does this: `main` called from other code leaves its
    process's collector alone.
    """
    gc.disable()
    resume = threading.Timer(STARTUP_SECONDS, _resume_collector)
    resume.daemon = True
    resume.start()
    code = main()
    if code == 130:
        # Interrupted, its record written: a network read left behind in a worker thread (an
        # S3 transfer's) would hold the exit until its timeout, as Python joins such threads.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _resume_collector() -> None:
    gc.freeze()
    gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from .printing import masked_output

    # Log lines and progress are read live, also through pipes (CI, papermill, `| tee`).
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    # SIGTERM (a closed terminal, a CI timeout) stops a run the way Ctrl-C does: the training
    # process is stopped and the record says so.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with masked_output():  # log lines, failure reasons and AWS messages: as in the record
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The command, its errors rendered as one message each, without a traceback. A message
    may quote a config, a record or a store's key (a damaged file's name): terminal text."""
    from .errors import ArgumentError, ConfigError, SagebookError
    from .inputs import UnreadableFile
    from .printing import terminal_text

    try:
        return args.command(args)
    except ConfigError as exc:  # an argument's, or a config's
        kind = "argument" if isinstance(exc, ArgumentError) else "configuration"
        print(f"sagebook: invalid {kind}:\n{_indent(terminal_text(exc))}", file=sys.stderr)
        return 2
    except UnreadableFile as exc:  # a path given on the command line: bad input
        print(f"sagebook: {terminal_text(exc)}", file=sys.stderr)
        return 2
    except SagebookError as exc:
        print(f"sagebook: {terminal_text(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sagebook: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`sagebook show … | head`): end quietly, as `cat` does, without a
        # second error when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagebook",
        description="Launch SageMaker training jobs from two YAML files and keep a record of "
                    "every run.",
    )
    parser.add_argument("--version", action="version", version=f"sagebook {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    launch = commands.add_parser(
        "launch", help="start a run from a job config",
        description="Validate the configs, start the job and write its record.",
    )
    launch.add_argument("config", help="job config, e.g. configs/sagemaker_config.local.yaml")
    launch.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. -o training.epochs=3 "
                             "-o job.instance_type=local (repeatable)")
    launch.add_argument("--pdb", action="store_true",
                        help="local runs: give the training process this terminal so "
                             "breakpoint() drops into pdb")
    launch.add_argument("--interrupt-after", metavar="DURATION",
                        help="local runs: rehearse a spot interruption after this much training "
                             "(e.g. 30s, 2m): SIGTERM, a fresh start with the checkpoints")
    wait = launch.add_mutually_exclusive_group()
    wait.add_argument("--wait", dest="wait", action="store_true", default=None,
                      help="cloud runs: follow status and logs until the job ends")
    wait.add_argument("--no-wait", dest="wait", action="store_false",
                      help="cloud runs: return once the job is created")
    launch.add_argument("--dry-run", action="store_true",
                        help="validate and print the request; write and start nothing")
    launch.add_argument("--detach", action="store_true",
                        help="local runs: run on in the background, past this terminal, and "
                             "return once the run has started (`sagebook attach` follows it)")
    launch.set_defaults(command=_launch)

    doctor = commands.add_parser(
        "doctor", help="check what a job config needs before a first launch",
        description="Check what this config's run needs, each with what to do when it fails: "
                    "for local runs the training code, its data and /opt/ml; for SageMaker "
                    "(and any s3:// location) credentials, region, execution role, buckets in "
                    "the job's region, write access where the launch writes, and the image in "
                    "ECR. Exits 1 when a check fails (warnings pass).",
    )
    doctor.add_argument("config", help="job config, e.g. configs/sagemaker_config.yaml")
    doctor.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="check the config with this change, as launch -o takes it "
                             "(repeatable)")
    doctor.set_defaults(command=_doctor)

    upload = commands.add_parser(
        "upload", help="copy a local data folder (or file) to S3, e.g. for a job's channels",
        description="Copy SOURCE (a folder, recursively, or one file) to DESTINATION "
                    "(s3://bucket/prefix/), keeping relative paths. With -c, the job config's "
                    "profile, region, s3_kms_key and expected_bucket_owner apply.",
    )
    upload.add_argument("source", help="a local folder or file, e.g. data/digits")
    upload.add_argument("destination", help="e.g. s3://my-ml-bucket/datasets/digits/")
    upload.add_argument("-c", "--config", metavar="JOBCONFIG",
                        help="take AWS profile, region, KMS key and bucket owner from this config")
    upload.set_defaults(command=_upload)

    init = commands.add_parser(
        "init", help="lay out a new training project",
        description="Write a new project into FOLDER: job and training configs with comments, "
                    "the example training code and its schema, the launch, dashboard and form "
                    "notebooks, the example data, Dockerfile, build_and_push.sh, "
                    "environment.yaml and a README. Existing files are never overwritten.",
    )
    init.add_argument("folder", help="the new project's folder (created if needed)")
    init.set_defaults(command=_init)
    _add_sweep_command(commands)
    _add_team_commands(commands)
    _add_job_commands(commands)
    return parser


def _launch(args: argparse.Namespace) -> int:
    from .backends.interruption import parse_after

    interrupt_after = parse_after(args.interrupt_after)  # a bad value: exit 2, nothing run
    if args.detach:
        return _detach(args)
    if args.dry_run:
        return _dry_run(args, interrupt_after)
    from .launch import launch

    run = launch(args.config, args.override, via="cli", pdb=args.pdb, wait=args.wait,
                 interrupt_after=interrupt_after)
    print(run.summary())
    return _exit_code(run)


def _detach(args: argparse.Namespace) -> int:
    """The launch, run by a process of its own session (see backends/detached.py)."""
    from .backends import detached
    from .backends.local import work_dir
    from .errors import ArgumentError

    if args.pdb or args.dry_run:
        raise ArgumentError.one("--detach", None, "--detach runs without a terminal: it cannot "
                              f"take {'--pdb' if args.pdb else '--dry-run'}")
    arguments = [args.config, *(f"--override={o}" for o in args.override),
                 *([f"--interrupt-after={args.interrupt_after}"] if args.interrupt_after else [])]
    if args.wait is not None:
        arguments.append("--wait" if args.wait else "--no-wait")
    started = detached.start(arguments, work_dir("_launches"))
    if started.exit_code is not None:  # it ended before its run existed: bad input, say why
        sys.stderr.write(started.text)
        return started.exit_code
    print(f"run {started.run_id} runs in the background (pid {started.pid}, its launcher's "
          f"output in {started.output}):\n"
          f"  sagebook attach {started.record_uri}   follows it\n"
          f"  sagebook stop {started.record_uri}     stops it\n"
          f"record: {started.record_uri}")
    return 0


def _exit_code(run: Run) -> int:
    """0 done (or submitted), 1 failed or stopped at its limit, 130 when interrupted: the run
    stopped by Ctrl-C, or a detached job that has not finished, so `launch && next` stops."""
    if run.detached or run.interrupted:
        return 130
    return 0 if run.ok else 1


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    report, ok = diagnose(args.config, args.override)
    print(report)
    return 0 if ok else 1


def _upload(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .backends.uploads import upload_folder
    from .runs.lookup import config_store_options

    options = config_store_options(args.config) if args.config else {}
    upload_folder(Path(args.source), args.destination, options,
                  lambda line: print(line, file=sys.stderr))
    return 0


def _init(args: argparse.Namespace) -> int:
    from .project import init

    print(init(args.folder).summary(args.folder))
    return 0


def _dry_run(args: argparse.Namespace, interrupt_after: float | None) -> int:
    """The launch's own path up to its first write or upload (`launch.plan`): the same
    checks, names and request, so a dry run that passes is a launch that starts."""
    import json

    from .backends.contract import describe_environment
    from .config import replicated_hosts_warning
    from .launch import plan

    planned = plan(args.config, args.override, echo=lambda line: print(line, file=sys.stderr),
                   interrupt_after=interrupt_after)
    cfg = planned.config
    print(json.dumps(planned.request, indent=2))
    paying_twice = replicated_hosts_warning(cfg.job)
    if paying_twice:
        print(f"sagebook: warning: {paying_twice}", file=sys.stderr)
    if cfg.job.is_cloud:
        from . import aws, prices

        region = aws.region(cfg.job.profile, cfg.job.region)
        print(prices.describe_worst_case(prices.worst_case(planned.request, region)),
              file=sys.stderr)
    print(f"training code environment: {describe_environment(cfg.job.image_environment)}",
          file=sys.stderr)
    print("configs and request are valid; nothing was written, uploaded or started",
          file=sys.stderr)
    if cfg.job.is_cloud:
        print("asked of AWS only by the launch itself, not by this dry run: the regions of "
              "buckets and image, and the image tag's digest (sagebook doctor checks them)",
              file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# Sweeps


def _add_sweep_command(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep", help="run a grid, random, bayesian or hyperband search here, or a SageMaker "
                      "tuning job",
        description="Run the sweep described by the job config's `sweep:` section or by "
                    "--sweep FILE: its trials in parallel on this machine (bayesian and "
                    "hyperband through Optuna), or one hyperparameter tuning job on SageMaker. "
                    "Every trial is a run with a record.",
    )
    sweep.add_argument("config", nargs="?", help="job config, e.g. configs/sagemaker_config.yaml")
    sweep.add_argument("--sweep", dest="sweep_file", metavar="FILE",
                       help="the sweep block in a file of its own, e.g. configs/sweep.yaml")
    sweep.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting of every trial (repeatable)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="validate and print the trials (or the search space and the "
                            "tuning request); write and start nothing")
    sweep.add_argument("--resume", metavar="SWEEP",
                       help="run the trials of this local sweep that failed or never ran")
    sweep.add_argument("--wait", action="store_true",
                       help="SageMaker: follow the tuning job until it ends")
    _store_options(sweep)
    sweep.set_defaults(command=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from .sweeps import control as sweeps

    if args.resume:
        if args.config or args.sweep_file or args.override:
            from .errors import ArgumentError

            raise ArgumentError.one("--resume", None, "resumes with the sweep's own configs: give "
                                                    "no CONFIG, --sweep or -o with it")
        return _sweep_exit(sweeps.resume(_open_store(args), args.resume))
    if not args.config:
        from .errors import ArgumentError

        raise ArgumentError.one("sagebook sweep", None, "give a job config (or --resume SWEEP)")
    plan = sweeps.plan(args.config, args.sweep_file, args.override)
    if args.dry_run:
        request = None
        if plan.remote:  # checked against the service model before anything is printed
            from .sweeps import tuning

            request = tuning.dry_run_request(plan)
        print(plan.describe())
        if request is not None:
            import json

            print(json.dumps(request, indent=2, default=str))
        print("sweep and configs are valid; nothing was written or started", file=sys.stderr)
        return 0
    return _sweep_exit(sweeps.start(plan, wait=args.wait or None))


def _sweep_exit(record: SweepRecord) -> int:
    """0 once a trial completed (or a tuning job runs), 1 when every trial failed."""
    if record.manifest.get("backend") == "sagemaker":
        return 0
    return 0 if any(t.get("status") == "Completed" for t in record.trials) else 1


# --------------------------------------------------------------------------------------------
# Seeing the team's experiments: list, show, diff, rerun, report


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URI",
                        help="record store: a folder or s3://bucket/prefix (default: "
                             "$SAGEBOOK_EXPERIMENTS_URI, else -c's experiments_uri, else "
                             "the local store of the project around this folder)")
    parser.add_argument("-c", "--config", metavar="JOBCONFIG",
                        help="take the store (and AWS profile/region) from this job config")


def _add_team_commands(commands: argparse._SubParsersAction) -> None:
    ls = commands.add_parser(
        "list", help="table of runs in the record store",
        description="List runs from the record store's index, newest first. Unfinished "
                    "SageMaker runs are refreshed from SageMaker (in batches) and written back.",
    )
    _store_options(ls)
    ls.add_argument("-e", "--experiment", help="only this experiment")
    ls.add_argument("-u", "--user", help="only runs launched by this user")
    ls.add_argument("-s", "--status", action="append", default=[], metavar="STATUS",
                    help="only runs with this status, e.g. Failed (repeatable, or comma list)")
    ls.add_argument("-t", "--tag", action="append", default=[], metavar="KEY[=VALUE]",
                    help="only runs whose job has this tag (repeatable)")
    ls.add_argument("--sweep", metavar="SWEEP",
                    help="only the trials of this sweep, with their parameters, best first")
    ls.add_argument("--since", metavar="WHEN",
                    help="only runs created since: 7d, 12h, 30m, or a date like 2026-11-01")
    ls.add_argument("-w", "--where", action="append", default=[], metavar="EXPR",
                    help="only runs where a column, metric, parameter or tag compares: "
                         "'val_accuracy>0.95', optimizer=adam, 'cost<5', team=ml, "
                         "'note~baseline' (ops: = != > >= < <= ~; repeatable: all must hold)")
    ls.add_argument("--sort", default=None, metavar="COLUMN",
                    help="run, name, experiment, user, created, instance, status, duration, "
                         "cost, commit, or a metric, parameter or tag name "
                         "(default: created, newest first)")
    order = ls.add_mutually_exclusive_group()
    order.add_argument("--desc", dest="descending", action="store_true", default=None,
                       help="largest first")
    order.add_argument("--asc", dest="descending", action="store_false", help="smallest first")
    ls.add_argument("-n", "--limit", type=int, default=50,
                    help="show at most this many runs (default 50; 0: all)")
    ls.add_argument("-m", "--metrics", metavar="A,B",
                    help="metric columns (default: the three most common final metrics)")
    ls.add_argument("-p", "--params", nargs="?", const="", metavar="A,B",
                    help="parameter columns: the named training-config keys, or alone: the "
                         "keys whose values differ among the listed runs")
    ls.add_argument("--json", action="store_true", help="print the runs as JSON lines")
    ls.add_argument("--no-refresh", dest="refresh", action="store_false",
                    help="do not ask SageMaker about unfinished runs")
    ls.add_argument("--reindex", action="store_true",
                    help="first index records the index does not know (reads every manifest)")
    ls.set_defaults(command=_list)

    show = commands.add_parser("show", help="everything about one run (or sweep)",
                               description="Configs, request, status timeline, metrics, "
                                           "failure and artifacts of one run.")
    show.add_argument("run", help="run id (or a unique part of it), job name, "
                                  "experiment/run_id, the record's URI, or a sweep's id")
    _store_options(show)
    show.add_argument("--json", action="store_true", help="print it all as one JSON document")
    show.set_defaults(command=_show)

    tag = commands.add_parser("tag", help="add or remove tags of a run",
                              description="Tag a run after launch (kept in its record as an "
                                          "event; list -t and --where see it).")
    tag.add_argument("run", help="run id (or a unique part of it), job name, "
                                 "experiment/run_id, or the record's URI")
    tag.add_argument("tags", nargs="*", metavar="KEY=VALUE")
    tag.add_argument("--remove", action="append", default=[], metavar="KEY",
                     help="remove this tag (repeatable)")
    _store_options(tag)
    tag.set_defaults(command=_annotate)
    note = commands.add_parser("note", help="add a note to a run",
                               description="Add a note to a run (kept with who and when; the "
                                           "latest shows in list, all in show).")
    note.add_argument("run")
    note.add_argument("note", metavar="TEXT")
    _store_options(note)
    note.set_defaults(command=_annotate)
    rename = commands.add_parser("rename", help="give a run a name",
                                 description="Give a run a human name, shown beside its id.")
    rename.add_argument("run")
    rename.add_argument("name", metavar="NAME")
    _store_options(rename)
    rename.set_defaults(command=_annotate)

    diff = commands.add_parser("diff", help="what differs between two runs",
                               description="Both runs' configs key by key, image, git commit, "
                                           "instance and final metrics side by side.")
    diff.add_argument("run_a")
    diff.add_argument("run_b")
    _store_options(diff)
    diff.add_argument("--all", action="store_true", help="also show keys that are the same")
    diff.add_argument("--json", action="store_true", help="print the rows as JSON")
    diff.set_defaults(command=_diff)

    rerun = commands.add_parser(
        "rerun", help="launch a new run from a run's record",
        description="Launch again from the configs as the run launched them, sending the "
                    "code, data and image (by digest) the run sent, with optional overrides; "
                    "the new record names its parent. Today's code is the source_dir of your "
                    "job config (-c, else the project's config that keeps its records in the "
                    "store). Someone else's record is described first: whose it is, its code, "
                    "image and the settings that differ from your config.",
    )
    rerun.add_argument("run")
    _store_options(rerun)
    rerun.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                       help="change a setting, e.g. -o training.epochs=3 (repeatable)")
    rerun.add_argument("--code", choices=("recorded", "current"), default="recorded",
                       help="recorded (default): the run's own code package, byte for byte; "
                            "current: today's, the source_dir of your job config")
    rerun.add_argument("--resume", action="store_true",
                       help="start from a copy of the run's checkpoints (by default a run "
                            "starts afresh in a checkpoint prefix of its own)")
    rerun.add_argument("--trust-record", action="store_true",
                       help="someone else's record: run it as recorded, also where its "
                            "settings would pass your AWS credentials or profile to its code, "
                            "write to buckets or folders your job config does not name, or "
                            "read your local folders (refused otherwise, exit 2)")
    wait = rerun.add_mutually_exclusive_group()
    wait.add_argument("--wait", dest="wait", action="store_true", default=None,
                      help="cloud runs: follow status and logs until the job ends")
    wait.add_argument("--no-wait", dest="wait", action="store_false",
                      help="cloud runs: return once the job is created")
    rerun.set_defaults(command=_rerun)

    report = commands.add_parser(
        "report", help="write a static HTML site of all runs into the store",
        description="Render _report/index.html (all runs) and a page per run, with its "
                    "executed notebook, into the record store. Opens from a folder or S3 with "
                    "no server; re-running renders only what changed.",
    )
    _store_options(report)
    report.add_argument("--hide-inputs", action="store_true",
                        help="notebooks without their code cells' inputs")
    report.add_argument("--force", action="store_true", help="render every page again")
    report.set_defaults(command=_report)

    export = commands.add_parser(
        "export", help="copy runs to another tool: export mlflow",
        description="Write each record as an MLflow run (parameters, metrics with their steps, "
                    "tags, configs and notebook as artifacts). Again later, it adds only what "
                    "is new. Needs mlflow: pip install 'sagebook[mlflow]'.")
    export.add_argument("target", choices=["mlflow"])
    export.add_argument("runs", nargs="*", metavar="RUN",
                        help="runs to export (default: every run in the store)")
    export.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking server URI, or a SageMaker managed MLflow "
                             "tracking server's ARN (with sagemaker-mlflow installed); "
                             "default: $MLFLOW_TRACKING_URI")
    export.add_argument("--experiment", metavar="NAME",
                        help="MLflow experiment for every run (default: each run's own)")
    _store_options(export)
    export.set_defaults(command=_export)

    price_list = commands.add_parser(
        "prices", help="on-demand SageMaker training prices that costs are computed with",
        description="Show the training prices sagebook uses (a dated table shipped with it, "
                    "and a cache refreshed from the AWS Price List API).")
    price_list.add_argument("--refresh", action="store_true",
                            help="fetch current prices (pricing:GetProducts) into the cache")
    price_list.add_argument("--region", action="append", default=[], metavar="REGION",
                            help="regions to show or refresh (repeatable; default: the known "
                                 "ones and your AWS region)")
    price_list.add_argument("--profile", help="AWS profile for --refresh")
    price_list.set_defaults(command=_prices)


def _open_store(args: argparse.Namespace) -> Store:
    from .runs.lookup import store_from_args

    return store_from_args(args.store, args.config)


def _list(args: argparse.Namespace) -> int:
    import json

    from .printing import terminal_text
    from .runs.listing import (
        Filters,
        differing_params,
        duration,
        list_runs,
        parse_since,
        parse_tags,
        parse_where,
    )
    from .runs.lookup import no_runs_message
    from .runs.text import damage_lines, format_costs, format_table, use_colour

    store = _open_store(args)
    if args.reindex:
        from . import index

        rebuilt = index.rebuild(store, args.experiment)
        print(f"indexed {rebuilt.added} records, dropped {rebuilt.removed} whose folder is "
              "gone", file=sys.stderr)
        for damage in rebuilt.damaged:
            print(f"sagebook: not indexed: {terminal_text(damage, one_line=True)}",
                  file=sys.stderr)
    filters = Filters(
        experiment=args.experiment, user=args.user,
        status=[s.strip() for item in args.status for s in item.split(",") if s.strip()],
        tags=parse_tags(args.tag),
        since=parse_since(args.since) if args.since else None,
        where=[parse_where(w) for w in args.where],
    )
    sort, descending, parameters, objective = args.sort or "created", args.descending, [], None
    if args.sweep:
        from .sweeps import control as sweeps
        from .sweeps import record as sweep_records

        try:
            sweep = sweep_records.find_sweep(store, args.sweep)
        except sweep_records.DamagedSweep as damage:  # its trials name it: listed, newest first
            print(f"sagebook: skipped {damage}; its trials are listed without it (`sagebook "
                  "fsck` says what to do)", file=sys.stderr)
            filters.sweep, filters.experiment = damage.sweep_id, damage.experiment
            parameters = None
        else:
            if args.refresh:
                sweeps.refresh(sweep)  # a SageMaker sweep's new trials become records
            filters.sweep, filters.experiment = sweep.sweep_id, sweep.experiment
            parameters = sweep.manifest.get("parameters") or []
            objective = sweep.manifest["objective"]["metric"]
            if args.sort is None:  # best first
                sort = objective
                if descending is None:
                    descending = sweep.manifest["objective"]["goal"] == "maximize"
    profile = getattr(store, "profile", None)
    listing = list_runs(store, filters, sort=sort, descending=descending,
                        limit=args.limit or None, refresh=args.refresh, profile=profile,
                        strict_sort=args.sort is not None)  # a sweep's objective: no error
    for warning in (listing.warning, listing.order_note):
        if warning:
            print(f"sagebook: {terminal_text(warning, one_line=True)}", file=sys.stderr)
    for line in damage_lines(listing.damaged):
        print(f"sagebook: {line}", file=sys.stderr)
    lost = [e for e in listing.runs if e.get("status") == "Lost"]
    if lost:
        print(terminal_text(
            f"sagebook: {len(lost)} runs lost their launcher ({lost[0]['lost']}); "
            f"`sagebook stop {lost[0]['experiment']}/{lost[0]['run_id']}` stops what is "
            "left of one and closes its record", one_line=True), file=sys.stderr)
    metrics = _names(args.metrics)
    params = _names(args.params) if args.params else []
    for name in metrics:
        listing.names.check("--metrics", name, ("metric",))
    for name in params:
        listing.names.check("--params", name, ("param",))
    if args.json:
        for entry in listing.runs:  # ensure_ascii: controls and bidi marks as \u escapes
            print(json.dumps({**entry, "duration": duration(entry)}, ensure_ascii=True))
        return 0
    if not listing.runs:
        if any((args.experiment, args.user, args.status, args.tag, args.since, args.sweep,
                args.where)):
            print(terminal_text(f"no runs in {store.uri} match these filters"),
                  file=sys.stderr)
        else:
            print(no_runs_message(store), file=sys.stderr)
        return 0
    if not metrics:
        from collections import Counter

        counts = Counter(k for e in listing.runs for k in (e.get("final_metrics") or {}))
        metrics = [name for name, _ in counts.most_common(3)]
        if objective:
            metrics = [objective] + [m for m in metrics if m != objective][:2]
    if args.params == "":
        params = differing_params(listing.runs)
    if parameters is None:  # a damaged sweep's: the parameters its trials name
        parameters = sorted({key for e in listing.runs if isinstance(e.get("parameters"), dict)
                             for key in e["parameters"]})
    print(format_table(listing.runs, metrics, params, colour=use_colour(sys.stdout),
                       sweep_parameters=parameters))
    if listing.matched > len(listing.runs):
        print(f"{len(listing.runs)} of {listing.matched} runs shown (--limit 0 shows all)",
              file=sys.stderr)
    totals = format_costs(listing.costs)
    if totals:
        print(totals, file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .mlflow_export import export

    result = export(_open_store(args), args.runs, tracking_uri=args.tracking_uri,
                    experiment=args.experiment, echo=_say)
    print(f"{result.created} runs created, {result.updated} updated, {result.unchanged} "
          f"unchanged in {result.tracking_uri}")
    if result.failures:
        _say(f"sagebook: {result.failed} runs not exported (export again to finish them):\n"
             + "\n".join(f"  {line}" for line in result.failures[:10]))
        return 1
    return 0


def _prices(args: argparse.Namespace) -> int:
    from . import aws, prices

    regions = list(args.region)
    if not regions:
        try:
            mine = aws.region(args.profile)
        except Exception:  # no AWS configuration at all: the known regions will do
            mine = None
        regions = sorted({*prices.known_regions(), *([mine] if mine else [])})
    if args.refresh:
        path, count = prices.refresh(regions, args.profile)
        print(f"{count} training prices in {path}", file=sys.stderr)
    for region in regions:
        found, sources = prices.table(region)
        print(f"{region}:")
        for instance_type in sorted(found):
            print(f"  {instance_type:<20} {found[instance_type].describe()}")
        if not found:
            print("  no prices known (sagebook prices --refresh)")
    print(f"sources:\n{prices.table(regions[0])[1]}" if regions else "", file=sys.stderr)
    return 0


def _say(line: str) -> None:
    """A progress or warning line to stderr that may quote records (the report's and the
    export's), as terminal text."""
    from .printing import terminal_text

    print(terminal_text(line), file=sys.stderr)


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _show(args: argparse.Namespace) -> int:
    import json

    from .printing import terminal_text
    from .runs.details import details
    from .runs.lookup import RunNotFound, find_run
    from .runs.text import format_details
    from .sweeps import control as sweeps
    from .sweeps import record as sweep_records

    store = _open_store(args)
    try:
        record = (sweep_records.find_sweep(store, args.run) if sweep_records.is_sweep_ref(args.run)
                  else find_run(store, args.run))
    except RunNotFound as not_a_run:
        try:
            record = sweep_records.find_sweep(store, args.run)
        except sweep_records.SweepNotFound:
            raise not_a_run from None
        except sweep_records.DamagedSweep as damage:
            raise _fsck_hint(damage) from None
    except sweep_records.DamagedSweep as damage:
        raise _fsck_hint(damage) from None
    if isinstance(record, sweep_records.SweepRecord):
        sweeps.refresh(record)
        if args.json:  # ensure_ascii: controls and bidi marks as \u escapes
            print(json.dumps(record.manifest, indent=2, default=str, ensure_ascii=True))
        else:
            print(terminal_text(sweeps.format_sweep(record)))
        return 0
    info = details(record, curves=False)
    if args.json:
        print(json.dumps(info.as_json(), indent=2, default=str, ensure_ascii=True))
    else:
        print(format_details(info))
    return 0


def _fsck_hint(damage: DamagedFile) -> DamagedFile:
    """The damage, with where to read what to do about it."""
    from .inputs import DamagedFile

    return DamagedFile(damage.where, f"{damage.reason} (`sagebook fsck` says what to do)")


def _annotate(args: argparse.Namespace) -> int:
    from .printing import terminal_text
    from .runs.details import annotate
    from .runs.lookup import find_run

    record = find_run(_open_store(args), args.run)
    fields = annotate(record, tags=getattr(args, "tags", ()),
                      remove=getattr(args, "remove", ()), note=getattr(args, "note", None),
                      name=getattr(args, "name", None))
    changes = ", ".join(f"{k}={v}" if v is not None else f"-{k}" for k, v in fields.items())
    print(terminal_text(f"{record.experiment}/{record.run_id}: {changes}", one_line=True))
    return 0


def _diff(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from .runs.details import diff
    from .runs.lookup import find_run
    from .runs.text import format_diff

    store = _open_store(args)
    a, b = find_run(store, args.run_a), find_run(store, args.run_b)
    unreadable: list[str] = []
    rows = diff(a, b, unreadable)
    if args.json:
        print(json.dumps([{**dataclasses.asdict(r), "same": r.same} for r in rows
                          if args.all or not r.same or r.section == "metrics"], default=str,
                         ensure_ascii=True))
        for item in unreadable:
            _say(f"sagebook: not compared: {item}")
    else:
        print(format_diff(a, b, rows, show_all=args.all, unreadable=unreadable))
    return 0


def _rerun(args: argparse.Namespace) -> int:
    from .rerun import UntrustedRecord, own_config, rerun
    from .runs.lookup import find_run

    store = _open_store(args)
    parent = find_run(store, args.run)
    _say(f"re-running {parent.experiment}/{parent.run_id}")
    try:
        run = rerun(parent, args.override, resume=args.resume, code=args.code,
                    trust=args.trust_record, config=own_config(store, args.config),
                    via="cli", wait=args.wait)
    except UntrustedRecord as exc:  # refused like a config: nothing ran, exit 2
        _say(f"sagebook: {exc}")
        return 2
    print(run.summary())
    commit = (run.record.manifest.get("git") or {}).get("commit")
    parent_commit = (parent.manifest.get("git") or {}).get("commit")
    if parent_commit and commit != parent_commit:
        _say(f"note: the training code is at {commit or 'no commit'}; the parent ran "
             f"{parent_commit} (both are in the new record)")
    return _exit_code(run)


def _report(args: argparse.Namespace) -> int:
    from .report import render

    result = render(_open_store(args), hide_inputs=args.hide_inputs, force=args.force,
                    echo=_say)
    print(result.index_url)
    return 0


# --------------------------------------------------------------------------------------------
# Runs launched earlier: attach, stop


def _add_job_commands(commands: argparse._SubParsersAction) -> None:
    attach = commands.add_parser(
        "attach", help="follow a run again: a SageMaker job, or a local run on this machine",
        description="Follow a run's SageMaker job: phases, logs, metrics; complete its record "
                    "when it ends. Ctrl-C detaches again; it never stops the job. A run whose "
                    "launch died before creating its job gets the job created now (never a "
                    "second one). A local run (e.g. launched with --detach) is followed on the "
                    "machine where it runs: its log from the start, then live, to its end.",
    )
    attach.add_argument("run", help="the record's URI (as printed at launch), "
                                    "experiment/run_id, a run id or a job name")
    _store_options(attach)
    attach.add_argument("--no-wait", dest="wait", action="store_false",
                        help="refresh the record once and return")
    attach.set_defaults(command=_attach)

    stop = commands.add_parser(
        "stop", help="stop a run: its SageMaker job, or a local run on this machine",
        description="A SageMaker run: send StopTrainingJob (SageMaker sends SIGTERM, then "
                    "SIGKILL 120 s later); the record says Stopping until the job has stopped. "
                    "A local run: its launcher stops the training as Ctrl-C does, or, when the "
                    "launcher is gone (Lost), what is left of it is stopped and the record "
                    "closed as Stopped.",
    )
    stop.add_argument("run", help="the record's URI, experiment/run_id, a run id or a job name")
    _store_options(stop)
    stop.add_argument("--wait", action="store_true",
                      help="follow the job until it has stopped, and complete the record")
    stop.set_defaults(command=_stop)

    fsck = commands.add_parser(
        "fsck", help="list every damaged file of the record store, and what to do",
        description="Read the run index and every record once; list each file that cannot "
                    "be read (garbled, half-written, unreadable, gone) with what to do. Exit "
                    "1 when something is damaged.",
    )
    _store_options(fsck)
    fsck.add_argument("-e", "--experiment", help="only this experiment")
    fsck.add_argument("--repair", action="store_true",
                      help="remove the damaged index files and rebuild the index from the "
                           "records (records themselves are never changed)")
    fsck.set_defaults(command=_fsck)

    sync = commands.add_parser(
        "sync", help="write what a run could not write into its record (full disk, S3 away)",
        description="A run whose store was full or out of reach kept its logs, metrics and "
                    "final manifest in a local folder; write them into the record now.",
    )
    sync.add_argument("run", help="the record's URI, experiment/run_id, a run id or a job name")
    _store_options(sync)
    sync.set_defaults(command=_sync)


def _fsck(args: argparse.Namespace) -> int:
    from . import fsck

    store = _open_store(args)
    findings, runs_seen = fsck.check(store, args.experiment)
    for finding in findings:
        print(finding.describe())
    if findings and args.repair:
        rebuilt = fsck.repair(store, findings, args.experiment)
        print(f"repaired the index: {rebuilt.added} runs indexed again, {rebuilt.removed} "
              "whose folder is gone dropped", file=sys.stderr)
    print(f"{len(findings)} damaged files among {runs_seen} runs in {store.uri}",
          file=sys.stderr)
    return 1 if findings and not args.repair else 0


def _sync(args: argparse.Namespace) -> int:
    from .printing import terminal_text
    from .record import sync
    from .runs.lookup import find_run

    record = find_run(_open_store(args), args.run)
    written = sync(record)
    if written:
        _say(f"wrote {', '.join(written)} into {record.uri}")
    else:
        _say(f"{record.uri} has nothing left to write from this machine")
    print(terminal_text(f"status: {record.status}", one_line=True))
    return 0


def _attach(args: argparse.Namespace) -> int:
    """Whatever a run followed again prints, its log lines included, is terminal text: the run
    and its record may be a teammate's (a local run's log is a file of the record)."""
    from .launch import attach
    from .printing import terminal_text
    from .runs.lookup import find_run

    run = attach(find_run(_open_store(args), args.run), wait=args.wait,
                 echo=lambda line: print(terminal_text(line)))
    print(terminal_text(run.summary()))
    return _exit_code(run)


def _stop(args: argparse.Namespace) -> int:
    from .launch import stop
    from .printing import terminal_text
    from .runs.lookup import find_run

    run = stop(find_run(_open_store(args), args.run), wait=args.wait,
               echo=lambda line: print(terminal_text(line)))
    print(terminal_text(run.summary()))
    return 130 if run.detached else 0


if __name__ == "__main__":
    console()
