"""The `sagebook` commands that read and act on a record store: list, show, tag, note, rename,
diff, rerun, report, export, prices, and attach, stop, shell, fsck, sync for runs launched
earlier.

Kept apart from `cli` (the program, launch, sweep, doctor, init) so each stays readable; as
there, imports stay inside the commands so that `sagebook --help` costs no more than argparse.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .inputs import DamagedFile
    from .launch import Run
    from .stores import Store


def exit_code(run: Run) -> int:
    """0 done (or submitted), 1 failed or stopped at its limit, 130 when interrupted: the run
    stopped by Ctrl-C, or a detached job that has not finished, so `launch && next` stops."""
    if run.detached or run.interrupted:
        return 130
    return 0 if run.ok else 1


# --------------------------------------------------------------------------------------------
# Seeing the team's experiments: list, show, diff, rerun, report


def store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URI",
                        help="record store: a folder or s3://bucket/prefix (default: "
                             "$SAGEBOOK_EXPERIMENTS_URI, else -c's experiments_uri, else "
                             "the local store of the project around this folder)")
    parser.add_argument("-c", "--config", metavar="JOBCONFIG",
                        help="take the store (and AWS profile/region) from this job config")


def add_team_commands(commands: argparse._SubParsersAction) -> None:
    ls = commands.add_parser(
        "list", help="table of runs in the record store",
        description="List runs from the record store's index, newest first. Unfinished "
                    "SageMaker runs are refreshed from SageMaker (in batches) and written back.",
    )
    store_options(ls)
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
    store_options(show)
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
    store_options(tag)
    tag.set_defaults(command=_annotate)
    note = commands.add_parser("note", help="add a note to a run",
                               description="Add a note to a run (kept with who and when; the "
                                           "latest shows in list, all in show).")
    note.add_argument("run")
    note.add_argument("note", metavar="TEXT")
    store_options(note)
    note.set_defaults(command=_annotate)
    rename = commands.add_parser("rename", help="give a run a name",
                                 description="Give a run a human name, shown beside its id.")
    rename.add_argument("run")
    rename.add_argument("name", metavar="NAME")
    store_options(rename)
    rename.set_defaults(command=_annotate)

    diff = commands.add_parser("diff", help="what differs between two runs",
                               description="Both runs' configs key by key, image, git commit, "
                                           "instance and final metrics side by side.")
    diff.add_argument("run_a")
    diff.add_argument("run_b")
    store_options(diff)
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
    store_options(rerun)
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
    store_options(report)
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
    store_options(export)
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


def open_store(args: argparse.Namespace) -> Store:
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

    store = open_store(args)
    if args.reindex:
        from . import index

        rebuilt = index.rebuild(store, args.experiment, _progress("reindex: read"))
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
                from .sweeps import control as sweeps  # 0.25 s of imports: for a refresh only

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

    result = export(open_store(args), args.runs, tracking_uri=args.tracking_uri,
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


PROGRESS_SECONDS = 2.0  # at most one progress line in this long
PROGRESS_FROM = 1_000  # records: a pass over fewer is over in a moment and says nothing


def _progress(what: str) -> Callable[[int, int], None]:
    """A `progress(done, total)` that says on stderr how far a long pass over every record is
    (`fsck`, `--reindex`): at most one line in PROGRESS_SECONDS, and the last; nothing for a
    store of fewer than PROGRESS_FROM records, whose output stays the findings alone."""
    said = [time.monotonic()]

    def say(done: int, total: int) -> None:
        if total < PROGRESS_FROM:
            return
        if done == total or time.monotonic() - said[0] >= PROGRESS_SECONDS:
            said[0] = time.monotonic()
            print(f"{what}: {done:,} of {total:,} records", file=sys.stderr, flush=True)
    return say


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _show(args: argparse.Namespace) -> int:
    import json

    from .printing import terminal_text
    from .runs.details import details
    from .runs.lookup import RunNotFound, find_run
    from .runs.text import format_details
    from .sweeps import record as sweep_records

    store = open_store(args)
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
        from .sweeps import control as sweeps  # 0.6 s of imports (the configs' models): a run's
        # `show` does not need them

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

    record = find_run(open_store(args), args.run)
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

    store = open_store(args)
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

    store = open_store(args)
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
    return exit_code(run)


def _report(args: argparse.Namespace) -> int:
    from .report import render

    result = render(open_store(args), hide_inputs=args.hide_inputs, force=args.force,
                    echo=_say)
    print(result.index_url)
    if result.index_url.startswith("s3://"):  # a browser cannot open that: say what can
        site = result.index_url.rsplit("/", 1)[0]
        _say(f"to open it here: aws s3 sync {site}/ sagebook-report/ && open "
             "sagebook-report/index.html (xdg-open on Linux); for the team, see README's "
             "\"The static report\"")
    return 0


# --------------------------------------------------------------------------------------------
# Runs launched earlier: attach, stop


def add_job_commands(commands: argparse._SubParsersAction) -> None:
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
    store_options(attach)
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
    store_options(stop)
    stop.add_argument("--wait", action="store_true",
                      help="follow the job until it has stopped, and complete the record")
    stop.set_defaults(command=_stop)

    shell = commands.add_parser(
        "shell", help="a shell (or a command) in a run's view: its /opt/ml, folder, environment",
        usage="sagebook shell RUN [--host algo-N] [--store URI] [--enable-remote-debug] "
              "[-- COMMAND...]",
        description="Local runs: in the training process's namespaces while it runs, else a "
                    "view of the folders it kept. local-docker: docker exec into its container. "
                    "ml.*: an AWS Systems Manager session (needs remote_debug: true, or "
                    "--enable-remote-debug, and the Session Manager plugin).",
    )
    shell.add_argument("run", help="the record's URI, experiment/run_id, a run id or a job name")
    shell_options(shell)
    # what follows RUN: its options, then `--` and the command (argparse alone would not take
    # a command's own options, `ls -la`, after the subcommand's positional)
    shell.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    shell.set_defaults(command=_shell)

    fsck = commands.add_parser(
        "fsck", help="list every damaged file of the record store, and what to do",
        description="Read the run index and every record once; list each file that cannot "
                    "be read (garbled, half-written, unreadable, gone) with what to do. Exit "
                    "1 when something is damaged.",
    )
    store_options(fsck)
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
    store_options(sync)
    sync.set_defaults(command=_sync)


def shell_options(parser: argparse.ArgumentParser) -> None:
    store_options(parser)
    parser.add_argument("--host", metavar="algo-N", help="which host of the job (default algo-1)")
    parser.add_argument("--enable-remote-debug", action="store_true",
                        help="ml.*: turn remote debugging on for a running job first "
                             "(UpdateTrainingJob)")


def _fsck(args: argparse.Namespace) -> int:
    from . import fsck

    store = open_store(args)
    findings, runs_seen = fsck.check(store, args.experiment, _progress("fsck: checked"))
    for finding in findings:
        print(finding.describe())
    if findings and args.repair:
        rebuilt = fsck.repair(store, findings, args.experiment, _progress("repair: read"))
        print(f"repaired the index: {rebuilt.added} runs indexed again, {rebuilt.removed} "
              "whose folder is gone dropped", file=sys.stderr)
    print(f"{len(findings)} damaged files among {runs_seen} runs in {store.uri}",
          file=sys.stderr)
    return 1 if findings and not args.repair else 0


def _sync(args: argparse.Namespace) -> int:
    from .printing import terminal_text
    from .record import sync
    from .runs.lookup import find_run

    record = find_run(open_store(args), args.run)
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

    run = attach(find_run(open_store(args), args.run), wait=args.wait,
                 echo=lambda line: print(terminal_text(line)))
    print(terminal_text(run.summary()))
    return exit_code(run)


def _stop(args: argparse.Namespace) -> int:
    from .launch import stop
    from .printing import terminal_text
    from .runs.lookup import find_run

    run = stop(find_run(open_store(args), args.run), wait=args.wait,
               echo=lambda line: print(terminal_text(line)))
    print(terminal_text(run.summary()))
    return 130 if run.detached else 0


def _shell(args: argparse.Namespace) -> int:
    from .runs.lookup import find_run
    from .shell import enter, plan

    rest = args.rest
    if "--" in rest:
        given, command = rest[:rest.index("--")], rest[rest.index("--") + 1:]
    elif rest and not rest[0].startswith("-"):  # argparse drops a `--` right after RUN
        given, command = [], rest
    else:
        given, command = rest, []
    if given:
        options = argparse.ArgumentParser(prog="sagebook shell RUN")
        shell_options(options)
        _, unknown = options.parse_known_args(given, namespace=args)
        if unknown:
            from .errors import ArgumentError

            raise ArgumentError.one("sagebook shell", None, f"{shlex.join(unknown)}: a "
                                    "command to run goes after --, as in: sagebook shell RUN "
                                    f"-- {shlex.join(unknown)}")
    entry = plan(find_run(open_store(args), args.run), args.host, command,
                 enable_remote_debug=args.enable_remote_debug, echo=_say)
    return enter(entry, echo=_say)
