"""The `sagebook` command: a thin shell over the package, rendering errors without tracebacks.

Imports stay inside the commands so that `sagebook --help` costs no more than argparse.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from . import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from .errors import ConfigError, SagebookError

    # SIGTERM (a closed terminal, a CI timeout) stops a run the way Ctrl-C does: the training
    # process is stopped and the record says so.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return args.command(args)
    except ConfigError as exc:
        print(f"sagebook: invalid configuration:\n{_indent(str(exc))}", file=sys.stderr)
        return 2
    except SagebookError as exc:
        print(f"sagebook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sagebook: interrupted", file=sys.stderr)
        return 130


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
    wait = launch.add_mutually_exclusive_group()
    wait.add_argument("--wait", dest="wait", action="store_true", default=None,
                      help="cloud runs: follow status and logs until the job ends")
    wait.add_argument("--no-wait", dest="wait", action="store_false",
                      help="cloud runs: return once the job is created")
    launch.add_argument("--dry-run", action="store_true",
                        help="validate and print the request; write and start nothing")
    launch.set_defaults(command=_launch)
    return parser


def _launch(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    from .launch import launch

    run = launch(args.config, args.override, via="cli", pdb=args.pdb, wait=args.wait)
    print(run.summary())
    return 0 if run.ok else 1


def _dry_run(args: argparse.Namespace) -> int:
    import json

    from . import request as request_mod
    from .launch import prepare

    cfg = prepare(args.config, args.override)
    identity = request_mod.RunIdentity(
        run_id="DRY-RUN", job_name=f"{cfg.job.experiment}-DRY-RUN",
        record_uri=f"{cfg.job.experiments_uri}/{cfg.job.experiment}/DRY-RUN",
        config_uri=f"{cfg.job.experiments_uri}/{cfg.job.experiment}/DRY-RUN/config",
        user="you",
    )
    request = request_mod.build(cfg, identity)
    if cfg.job.is_cloud:
        request_mod.validate(request)
    print(json.dumps(request, indent=2))
    print("configs are valid; nothing was written or started", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
