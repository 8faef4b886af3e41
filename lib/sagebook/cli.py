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
from .store_commands import (
    add_job_commands,
    add_team_commands,
    exit_code,
    open_store,
    store_options,
)

if TYPE_CHECKING:
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

    iam = commands.add_parser(
        "iam-policy", help="print an IAM policy for SageMaker jobs, filled in for a job config",
        description="Print the execution role's policy (or, with --trust, its trust policy; "
                    "with --launcher, the launching user's) with the config's bucket, account "
                    "and region in place of README's BUCKET, ACCOUNT and REGION.",
    )
    iam.add_argument("-c", "--config", metavar="JOBCONFIG",
                     help="take bucket, account and region from this job config")
    kind = iam.add_mutually_exclusive_group()
    kind.add_argument("--trust", dest="kind", action="store_const", const="trust",
                      default="execution", help="the execution role's trust policy")
    kind.add_argument("--launcher", dest="kind", action="store_const", const="launcher",
                      help="the policy of whoever launches (a person or CI)")
    iam.set_defaults(command=_iam_policy)
    _add_sweep_command(commands)
    add_team_commands(commands)
    add_job_commands(commands)
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
    return exit_code(run)


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


def _iam_policy(args: argparse.Namespace) -> int:
    from .iam_policy import policy

    text, notes = policy(args.kind, args.config)
    for note in notes:
        print(f"sagebook: note: {note}", file=sys.stderr)
    print(text, end="")
    return 0


def _init(args: argparse.Namespace) -> int:
    from .project import init

    print(init(args.folder).summary(args.folder))
    return 0


def _dry_run(args: argparse.Namespace, interrupt_after: float | None) -> int:
    """The launch's own path up to its first write or upload (`launch.plan`): the same
    checks, names and request, so a dry run that passes is a launch that starts."""
    import json

    from .backends import stall
    from .backends.capacity import describe as describe_capacity
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
        print(f"capacity: {describe_capacity(cfg)}", file=sys.stderr)
    print(f"training code environment: {describe_environment(cfg.job.image_environment)}",
          file=sys.stderr)
    print(f"watch: {stall.describe(cfg.job)}", file=sys.stderr)
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
    store_options(sweep)
    sweep.set_defaults(command=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from .sweeps import control as sweeps

    if args.resume:
        if args.config or args.sweep_file or args.override:
            from .errors import ArgumentError

            raise ArgumentError.one("--resume", None, "resumes with the sweep's own configs: give "
                                                    "no CONFIG, --sweep or -o with it")
        return _sweep_exit(sweeps.resume(open_store(args), args.resume))
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


if __name__ == "__main__":
    console()
