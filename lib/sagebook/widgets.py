"""The config form: edit a job config and its training config in widgets, save, launch.

The fields are generated from the two pydantic models that validate the files — `JobConfig`
and the training code's own schema (`sagebook.form_fields`). Nothing here decides what is
valid: every change runs the values through `sagebook.config.validate`, the same rules and
messages as `sagebook launch`, and each problem is shown under the field it names. Saving
rewrites only what changed (`sagebook.yaml_update`), so the user's comments and key order
survive. Launching runs the launch notebook with papermill, exactly as the CLI documents, in a
background thread, and follows the run through its output and its record.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import re
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from IPython.display import display
from pydantic import BaseModel

from . import config, config_files, notebooks
from .errors import ConfigError, SagebookError
from .form_fields import INPUT_WIDTH, LABEL_WIDTH, Editor, ModelEditor, Spec
from .kinds import is_remote
from .launch import check_request
from .project import job_configs
from .record import Record
from .runs.lookup import config_store_options
from .secrets import redact
from .sweeps.form import SweepPart
from .yaml_update import same, update_yaml

# How the job config's flat fields are grouped on screen. Fields not listed here (a new
# option) still get their widget, under "Other settings".
JOB_SECTIONS: list[tuple[str, list[str]]] = [
    ("Experiment and code",
     ["experiment", "training_config", "source_dir", "entry_point", "training_schema"]),
    ("Compute", ["instance_type", "instance_count", "volume_size_gb", "image_uri", "role_arn",
                 "max_runtime", "max_cost", "wait"]),
    ("Spot, checkpoints and warm pool",
     ["spot", "max_wait", "checkpoint_uri", "checkpoint_local_path", "keep_alive"]),
    ("Input data", ["channels"]),
    ("Outputs and records", ["output_uri", "config_uri", "experiments_uri"]),
    ("Environment, tags and metrics", ["environment", "tags", "metric_definitions", "mlflow"]),
    ("AWS account, network and encryption",
     ["region", "profile", "subnets", "security_group_ids", "network_isolation",
      "inter_container_encryption", "volume_kms_key", "output_kms_key"]),
]

# A problem's link: bring its field to the middle of the window (the sticky controls cover
# the top) and put the cursor in it.
JUMP = ("var f=document.querySelector('.{css}');if(f){{f.scrollIntoView({{block:'center'}});"
        "var i=f.querySelector('input,select,textarea');if(i)i.focus({{preventScroll:true}});}}"
        "return false;")

CSS = f"""
<style>
.sagebook-form .sagebook-title {{ font-size: 1.3em; font-weight: 600; margin: 0.3em 0; }}
.sagebook-form .sagebook-section {{ font-size: 1.1em; font-weight: 600;
  margin: 1em 0 0.2em 0; border-bottom: 1px solid #ccc; }}
.sagebook-form .sagebook-nested {{ margin-left: 2em; padding-left: 0.6em;
  border-left: 2px solid #e4e4e4; }}
.sagebook-form .sagebook-help {{ color: #666; font-size: 0.85em; margin: 0 0 6px {LABEL_WIDTH};
  min-height: 0; }}
.sagebook-form .sagebook-error {{ color: #b00020; font-size: 0.9em; margin: 0 0 6px {LABEL_WIDTH};
  min-height: 0; }}
.sagebook-form .sagebook-help > .widget-html-content,
.sagebook-form .sagebook-error > .widget-html-content,
.sagebook-form .sagebook-log > .widget-html-content {{ line-height: 1.3; height: auto; }}
.sagebook-form .sagebook-actions {{ position: sticky; top: -10px; z-index: 10;
  background: white; border-bottom: 1px solid #ccc; padding: calc(0.3em + 10px) 0 0.3em 0; }}
/* sticky holds only below the nearest scrolling box: the page's (voila pads it by 10px, which
   the negative top covers), not the output area's */
.widget-box:has(.sagebook-actions), .jp-OutputArea:has(.sagebook-actions),
.jp-OutputArea-child:has(.sagebook-actions), .jp-OutputArea-output:has(.sagebook-actions) {{
  overflow: visible !important; }}
.sagebook-form .sagebook-actions .sagebook-problems ul {{ max-height: 9em; overflow: auto;
  margin: 0.2em 0; }}
.sagebook-form .sagebook-problem-link {{ color: #b00020; text-decoration: underline; }}
.sagebook-form .sagebook-key-job-training_config input:disabled {{ color: inherit;
  opacity: 1; background: #f6f6f6; }}
.sagebook-form .sagebook-changed {{ background: #fff4cc; box-shadow: -4px 0 0 #f0a500; }}
.sagebook-form .sagebook-problems {{ color: #b00020; }}
.sagebook-form .sagebook-ok {{ color: #1b7f3b; }}
.sagebook-form .sagebook-log {{ font-family: monospace; font-size: 0.85em; white-space: pre-wrap;
  background: #f6f6f6; padding: 0.4em; }}
.sagebook-form .sagebook-record {{ font-family: monospace; font-weight: 600; }}
</style>
"""


# --------------------------------------------------------------------------------------------
# The form


class ConfigForm:
    """A form for one job config and its training config: edit, validate, save, launch.

    `ConfigForm(path).show()` in a notebook; tests drive the same widgets headlessly.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.widget = widgets.VBox()
        self.widget.add_class("sagebook-form")
        self.status = widgets.HTML()
        self.problems: list[str] = []
        self.launch_thread: threading.Thread | None = None
        self.running = False
        # Save writes the open files; "Save as…" opens the row that asks for new names.
        self.save_name = widgets.Text(description="job config", continuous_update=True,
                                      style={"description_width": "7em"},
                                      layout=widgets.Layout(width="26em"))
        self.training_save_name = widgets.Text(
            description="training", continuous_update=True,
            style={"description_width": "7em"}, layout=widgets.Layout(width="26em"),
            tooltip="written only when the training section changed",
        )
        self.overwrite = widgets.Checkbox(description="overwrite existing files", indent=False)
        self.save_button = widgets.Button(description="Save", icon="save",
                                          button_style="primary")
        self.save_as_button = widgets.Button(description="Save as…")
        self.save_copy_button = widgets.Button(description="Save copy", icon="save",
                                               button_style="primary")
        self.launch_button = widgets.Button(description="Launch", icon="play",
                                            button_style="success")
        self.revert_button = widgets.Button(description="Revert", icon="undo")
        for button, name in ((self.save_button, "save"), (self.save_as_button, "save-as"),
                             (self.save_copy_button, "save-copy"),
                             (self.launch_button, "launch")):
            button.add_class(f"sagebook-{name}")
        self.save_button.on_click(lambda _b: self._guarded(self.save))
        self.save_as_button.on_click(lambda _b: self._ask_names())
        self.save_copy_button.on_click(lambda _b: self._guarded(self.save, True))
        self.launch_button.on_click(lambda _b: self._guarded(self.launch))
        self.revert_button.on_click(lambda _b: self._guarded(self.open, self.job_path))
        self.save_as = widgets.HBox([self.save_name, self.training_save_name, self.overwrite,
                                     self.save_copy_button],
                                    layout=widgets.Layout(display="none"))
        self.save_as.add_class("sagebook-save-as-names")
        self.progress = widgets.IntProgress(value=0, min=0, max=4, description="launch",
                                            layout=widgets.Layout(display="none"))
        self.run_status = widgets.HTML()
        self.run_status.add_class("sagebook-run-status")
        self.log = widgets.HTML()
        self.log.add_class("sagebook-log")
        self.log.layout.display = "none"
        self.record = widgets.HTML()
        self.record.add_class("sagebook-record")
        self.summary = widgets.HTML()
        self.summary.add_class("sagebook-problems")
        self.on_open: list[Callable[[Path], None]] = []
        self.style = widgets.HTML(CSS)
        self.header = widgets.HTML()
        # Buttons, status and problems stay in view (sticky) while the user scrolls the fields.
        self.actions = widgets.VBox([
            widgets.HBox([self.save_button, self.save_as_button, self.launch_button,
                          self.revert_button]),
            self.save_as, self.summary, self.status, self.progress, self.run_status, self.log,
            self.record,
        ])
        self.actions.add_class("sagebook-actions")
        self.open(path)

    def _guarded(self, action: Callable[..., Any], *args: Any) -> None:
        """Run a button's action; a failure is shown in the form, where the user looks (a
        callback's traceback goes to the kernel's log, which nobody sees in voila)."""
        try:
            action(*args)
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self._say(f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))} "
                      f"({html.escape(Path(where.filename).name)}:{where.lineno})", error=True)

    # ---------------------------------------------------------------- opening

    def open(self, path: str | os.PathLike[str]) -> None:
        """(Re)build the form from the files: the job config at `path` and its training config."""
        self.job_path = Path(path).expanduser().resolve()
        self.status.value = ""
        for callback in self.on_open:
            callback(self.job_path)
        self.job: ModelEditor | None = None
        self.training: Editor | None = None
        self.header.value = (f"<div class='sagebook-title'>Job config "
                             f"<code>{html.escape(str(self.job_path))}</code></div>")
        try:
            self._read()
        except ConfigError as exc:
            self.problems = list(exc.problems)
            listing = widgets.HTML(self._problem_list([(p, None) for p in exc.problems]))
            listing.add_class("sagebook-problems")
            self.widget.children = [self.style, self.header, listing]
            return
        self.header.value += (f"<div>Training config "
                              f"<code>{html.escape(str(self.training_path))}</code></div>")
        self._offer_names()
        self.job = ModelEditor(
            Spec("", ("job",), config.JobConfig), self.job_data, self.refresh,
            sections=JOB_SECTIONS,
        )
        training_title = f"Training config ({self.training_path.name})"
        if self.schema is not None:
            self.training = ModelEditor(Spec("", ("training",), self.schema), self.training_data,
                                        self.refresh, title=training_title)
        else:
            self.training = ModelEditor(Spec("", ("training",), _Free), self.training_data,
                                        self.refresh, title=training_title)
        metrics = [m.get("name") for m in self.job_data.get("metric_definitions") or []
                   if isinstance(m, dict)]
        self.sweep = SweepPart(self.job_path, metrics)
        self.widget.children = [self.style, self.header, self.actions, self.job.box,
                                self.training.box, self.sweep.box]
        self.refresh()

    def _read(self) -> None:
        self.job_data, self.job_lines = config_files.read_yaml(self.job_path)
        self.job_text = self.job_path.read_text()
        reference = self.job_data.get("training_config")
        if not isinstance(reference, str) or not reference:
            raise ConfigError.one(f"{self.job_path}:{self.job_lines.get(('training_config',), 1)}",
                                  "job.training_config", "required key is missing")
        self.training_path = (self.job_path.parent / Path(reference).expanduser()).resolve()
        self.training_data, self.training_lines = config_files.read_yaml(
            self.training_path, referenced_from=(self.job_path, self.job_lines))
        self.training_text = self.training_path.read_text()
        self.schema_source = self._schema_source(self.job_data)
        self.schema = self._load_schema(self.job_data)

    def _schema_source(self, job_data: dict[str, Any]) -> tuple[Any, Any]:
        fields = config.JobConfig.model_fields
        return (job_data.get("source_dir", fields["source_dir"].default),
                job_data.get("training_schema", fields["training_schema"].default))

    def _load_schema(self, job_data: dict[str, Any]) -> type[BaseModel] | None:
        """The training code's model, found as `load()` finds it (an invalid job config
        elsewhere must not hide the training options)."""
        source_dir, schema = self._schema_source(job_data)
        if not schema or not isinstance(source_dir, str) or not isinstance(schema, str):
            return None
        job = config.JobConfig.model_construct(
            source_dir=str((self.job_path.parent / Path(source_dir).expanduser()).resolve()),
            training_schema=schema,
        )
        try:
            return config.load_training_schema(job)
        except ConfigError:
            return None  # validation reports it under job.training_schema

    # ---------------------------------------------------------------- values and validation

    def field(self, key: str) -> Editor:
        """The editor of a dotted key such as `training.epochs` or `job.channels.train.uri`."""
        top, *rest = key.split(".")
        editor = {"job": self.job, "training": self.training}[top]
        assert editor is not None
        found, unmatched = editor.find(rest)
        if unmatched:
            raise KeyError(key)
        return found

    def values(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The job and training data as the form now stands (what Save would write)."""
        assert self.job is not None and self.training is not None
        job = self.job.value()
        training = self.training.value()
        return (job if isinstance(job, dict) else {},
                training if isinstance(training, dict) else {})

    def changed(self) -> bool:
        return bool(self.job and self.job.changed()) or bool(
            self.training and self.training.changed())

    def refresh(self) -> None:
        """Validate what the form shows and put every problem under its field."""
        if self.job is None or self.training is None:
            return
        editors = [*self.job.walk(), *self.training.walk()]
        messages: dict[int, list[str]] = {id(e): [] for e in editors}
        form_problems = self.job.form_problems() + self.training.form_problems()
        for editor, message in form_problems:
            messages[id(editor)].append(message)
        listed: list[tuple[str, Editor | None]] = [(m, e) for e, m in form_problems]
        if not form_problems:
            job_data, training_data = self.values()
            same_schema = self._schema_source(job_data) == self.schema_source
            try:
                checked = config.validate(
                    job_data, training_data, self.job_path, self.training_path,
                    schema=self.schema if same_schema else None, job_lines=self.job_lines,
                    training_lines=self.training_lines)
                check_request(checked)  # the service model's limits, as a launch checks them
            except ConfigError as exc:
                listed = []
                for problem in exc.problems:
                    for editor, message in self._place(problem):
                        messages[id(editor)].append(message)
                        listed.append((problem, editor if getattr(problem, "key", None)
                                       else None))
        for editor in editors:
            editor.show_errors(messages[id(editor)])
            editor.highlight()
        self.problems = [problem for problem, _ in listed]
        self.summary.value = self._problem_list(listed) if listed else ""
        self._update_buttons()

    def _place(self, problem: str) -> list[tuple[Editor, str]]:
        """Where a problem is shown: under the field its key path names (the nearest one the
        form has), else at the top of the config its file names."""
        assert self.job is not None and self.training is not None
        key = getattr(problem, "key", None)
        message = getattr(problem, "message", str(problem))
        if key:
            top, *rest = key.split(".")
            root = self.job if top == "job" else self.training
            return [(root.find(rest)[0], f"{key}: {message}")]
        where = str(getattr(problem, "where", ""))
        root = self.training if where.startswith(str(self.training_path)) else self.job
        return [(root, message)]

    def _problem_list(self, problems: list[tuple[str, Editor | None]]) -> str:
        """Every problem, each a link to the field it is shown under. A field's problem reads
        `key: message`, about the value the form shows: the file's line may hold another."""
        items = []
        for problem, editor in problems:
            key = getattr(problem, "key", None)
            text = html.escape(f"{key}: {getattr(problem, 'message', problem)}" if key
                               else str(problem))
            if editor is not None:
                jump = html.escape(JUMP.format(css=editor.css_class), quote=True)
                text = f"<a href='#' class='sagebook-problem-link' onclick=\"{jump}\">{text}</a>"
            items.append(f"<li>{text}</li>")
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        return (f"<div class='sagebook-problems'><b>{count}</b> (as "
                f"<code>sagebook launch</code> reports them):<ul>{''.join(items)}</ul></div>")

    def _update_buttons(self) -> None:
        blocked = bool(self.problems) or self.job is None or self.running
        for button in (self.save_button, self.save_copy_button, self.launch_button):
            button.disabled = blocked
        self.save_as_button.disabled = self.job is None
        self.revert_button.disabled = self.running
        self.launch_button.description = "Save and launch" if self.changed() else "Launch"

    # ---------------------------------------------------------------- saving

    def save(self, as_copy: bool = False) -> Path | None:
        """Write the form's values; return the job config's path (None when nothing could be
        written, with the reason in the status line).

        Save writes the files that are open: the job config and, when the training section
        changed, its training config. Save as (`as_copy`) writes them to `save_name` and
        `training_save_name` instead, each next to the file it came from so that relative
        paths keep their meaning, and the form then shows the copies.
        """
        self.refresh()
        if self.problems or self.job is None:
            self._say("Not saved: fix the problems first.", error=True)
            return None
        job_data, training_data = self.values()
        try:
            job_target = (self._target(self.job_path, self.save_name.value) if as_copy
                          else self.job_path)
            writes: list[tuple[Path, str]] = []
            if not same(training_data, self.training_data):
                training_target = self.training_path
                if as_copy:
                    training_target = self._target(self.training_path,
                                                   self.training_save_name.value)
                    if training_target == job_target:
                        raise SagebookError("the job and training configs need different names")
                    reference = str(training_target) if Path(
                        self.job_data["training_config"]).is_absolute() else os.path.relpath(
                        training_target, job_target.parent)
                    job_data = {**job_data, "training_config": reference}
                writes.append((training_target, update_yaml(
                    self.training_text, self.training_data, training_data)))
            writes.append((job_target, update_yaml(self.job_text, self.job_data, job_data)))
        except (SagebookError, ValueError) as exc:
            self._say(f"Not saved: {html.escape(str(exc))}", error=True)
            return None
        for target, text in writes:  # training first: the job config must never dangle
            _write_atomic(target, text)
        if as_copy or self._schema_source(job_data) != self.schema_source:
            self.open(job_target)  # other files, or another training schema: new fields
            self.save_as.layout.display = "none"
        else:
            self._settle()
        names = " and ".join(f"<code>{html.escape(str(t))}</code>" for t, _ in writes)
        self._say(f"Saved {names}.")
        return job_target

    def _settle(self) -> None:
        """After a Save to the open files: read them back, and let the widgets on the page go
        on showing them. Rebuilding them raced the browser, which still drew the old ones
        ("widget model not found") and could leave the form empty."""
        assert self.job is not None and self.training is not None
        self._read()
        self.job.settle(self.job_data)
        self.training.settle(self.training_data)
        self._offer_names()
        self.refresh()

    def _ask_names(self) -> None:
        """Save as…: show (or hide again) the names to save under."""
        shown = self.save_as.layout.display != "none"
        if not shown:
            self._offer_names()
        self.save_as.layout.display = "none" if shown else "flex"

    def _offer_names(self) -> None:
        """Save as's suggestion: the next numbered name free next to each file."""
        self.save_name.value = _next_free(self.job_path).name
        self.training_save_name.value = _next_free(self.training_path).name

    def _target(self, source: Path, name: str) -> Path:
        name = name.strip()
        if not name or "/" in name or os.sep in name or name in (".", ".."):
            raise SagebookError(f"{name!r} is not a file name (the file is saved next to "
                                f"{source.name}, so that relative paths keep their meaning)")
        target = source.parent / name
        if target.exists() and not self.overwrite.value:
            raise SagebookError(f"{target} exists: tick 'overwrite existing files' to replace it")
        return target

    def _say(self, text: str, error: bool = False) -> None:
        css = "sagebook-problems" if error else "sagebook-ok"
        self.status.value = f"<div class='{css}'>{text}</div>"

    # ---------------------------------------------------------------- launching

    def launch(self) -> threading.Thread | None:
        """Save if needed, then run the launch notebook on the saved config in the background.

        The run is exactly `papermill notebooks/launch.ipynb … -p config <file>`: the executed
        notebook lands in the record, and the record holds the config as launched.
        """
        if self.running:
            return None
        path = self.save() if self.changed() else self.job_path
        if path is None or self.problems:
            return None
        self.running = True
        self._update_buttons()
        self.progress.layout.display = "flex"
        self.progress.value, self.progress.bar_style = 1, "info"
        self.record.value = ""
        self.log.value = ""
        self.log.layout.display = "block"
        self.run_status.value = "Starting the launch notebook…"
        self.launch_thread = threading.Thread(target=self._run, args=(path,),
                                              name="sagebook-form-launch", daemon=True)
        self.launch_thread.start()
        return self.launch_thread

    def _run(self, path: Path) -> None:
        watch = _RunWatch(self)
        folder = Path(tempfile.gettempdir()) / "sagebook-form"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        # one folder per launch: two forms in one kernel may launch within the same second
        output = Path(tempfile.mkdtemp(prefix=f"{path.stem}-{stamp}-", dir=folder)) / (
            "launch.ipynb")
        error = None
        try:
            notebooks.execute(output, config=str(path), progress_bar=False,
                              stdout_file=watch, stderr_file=watch)
        except Exception as exc:  # shown in the form: nobody reads this thread's traceback
            error = _launch_error(exc)
        finally:
            watch.stop()
        try:
            watch.finish(error, output)
        finally:
            self.running = False
            self._update_buttons()

    # ---------------------------------------------------------------- display

    def show(self) -> None:
        display(self.widget)


class _Free(BaseModel):
    """Stands in for a training schema that cannot be imported: every key is free YAML."""


def _launch_error(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    if ename:
        return f"{ename}: {str(getattr(exc, 'evalue', '')).splitlines()[0]}"
    return f"{type(exc).__name__}: {exc}"


RECORD_LINE = re.compile(r"\[sagebook\] run (?P<run>\S+): record at (?P<uri>.+)$")


class _RunWatch:
    """Follows a launch: the notebook's output lines as they come (papermill's stdout_file),
    and the record's manifest, polled, for the live status."""

    def __init__(self, form: ConfigForm, poll: float = 0.5, tail: int = 12):
        self.form = form
        self.lines: list[str] = []
        self.tail = tail
        self.partial = ""
        self.record: Any = None
        self.uri: str | None = None
        self.started = time.monotonic()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.poller = threading.Thread(target=self._poll, args=(poll,), daemon=True,
                                       name="sagebook-form-status")
        self.poller.start()

    # papermill writes stream output here, as it arrives
    def write(self, text: str) -> int:
        with self.lock:
            self.partial += text
            *complete, self.partial = self.partial.split("\n")
            for line in complete:
                self._line(line.rstrip("\r"))
            self.form.log.value = html.escape("\n".join(self.lines[-self.tail:]))
        return len(text)

    def flush(self) -> None:
        pass

    def _line(self, line: str) -> None:
        line = redact(line)
        self.lines.append(line)
        match = RECORD_LINE.search(line)
        if match and self.uri is None:
            self.uri = match["uri"].strip()
            self.form.progress.value = 2
            self.form.record.value = f"record: {html.escape(self.uri)} (running)"

    def _poll(self, every: float) -> None:
        while not self.stopped.wait(every):
            try:
                self._status()
            except Exception:  # a store hiccup must not end the status updates
                continue

    def _status(self) -> dict[str, Any] | None:
        if self.uri is None:
            self.form.run_status.value = (f"Starting… {time.monotonic() - self.started:.0f}s")
            return None
        try:
            if self.record is None:
                self.record = Record.open_uri(self.uri,
                                              **config_store_options(self.form.job_path))
            else:
                self.record.reload()
        except (OSError, ValueError, SagebookError):
            return None  # not written yet, or being replaced: the next poll sees it
        manifest = self.record.manifest
        status = manifest.get("status", "?")
        if status == "InProgress":
            self.form.progress.value = 3
        elapsed = time.monotonic() - self.started
        self.form.run_status.value = (f"run <code>{html.escape(manifest.get('run_id', ''))}"
                                      f"</code>: <b>{html.escape(status)}</b> · {elapsed:.0f}s")
        return manifest

    def stop(self) -> None:
        self.stopped.set()
        self.poller.join()
        with self.lock:
            if self.partial:
                self._line(self.partial)
                self.partial = ""
            self.form.log.value = html.escape("\n".join(self.lines[-self.tail:]))

    def finish(self, error: str | None, output: Path) -> None:
        """The end of the run in the form: its status, its record (and cloud job name)."""
        manifest = self._status() or {}
        status = manifest.get("status")
        ok = error is None and status in ("Completed", "InProgress")
        self.form.progress.value = 4
        self.form.progress.bar_style = "success" if ok else "danger"
        lines = []
        if self.uri:
            lines.append(f"record: {html.escape(self.uri)}")
            if is_remote(str(manifest.get("instance_type", ""))):
                lines.append(f"job: {html.escape(str(manifest.get('job_name')))}")
        self.form.record.value = "<br>".join(lines)
        summary = f"<b>{html.escape(status or 'not started')}</b>"
        if error:
            summary = (f"<span class='sagebook-problems'>{summary}: "
                       f"{html.escape(redact(error))}</span>")
        reason_lines = str(manifest.get("failure_reason") or "").splitlines()
        reason = redact(reason_lines[0]) if reason_lines else ""
        if reason and reason not in (error or ""):  # the launch's error often is the reason
            summary += f" — {html.escape(reason)}"
        elapsed = time.monotonic() - self.started
        self.form.run_status.value = (f"{summary} · {elapsed:.0f}s · executed notebook "
                                      f"<code>{html.escape(str(output))}</code>")


# --------------------------------------------------------------------------------------------
# Picking a config


class ConfigEditor:
    """A job config picker (the job configs next to `path`) above the form for the one picked."""

    def __init__(self, path: str | os.PathLike[str]):
        path = Path(path).expanduser().resolve()
        self.picker = widgets.Dropdown(description="job config",
                                       style={"description_width": LABEL_WIDTH},
                                       layout=widgets.Layout(width=INPUT_WIDTH))
        self.picker.add_class("sagebook-picker")
        self._list(path)
        self.form = self._form(path)
        self.widget = widgets.VBox([self.picker, self.form.widget])
        self.picker.observe(self._pick, names="value")

    def _list(self, path: Path) -> None:
        choices = sorted({path, *job_configs(path.parent)})
        self.picker.options = [(p.name, p) for p in choices]
        self.picker.value = path

    def _form(self, path: Path) -> ConfigForm:
        form = ConfigForm(path)
        form.on_open.append(self._opened)
        return form

    def _opened(self, path: Path) -> None:
        """The form now shows another file (it saved one): list it and select it."""
        if path != self.picker.value:
            self.picker.unobserve(self._pick, names="value")
            try:
                self._list(path)
            finally:
                self.picker.observe(self._pick, names="value")

    def _pick(self, change: dict[str, Any]) -> None:
        self.form = self._form(change["new"])
        self.widget.children = [self.picker, self.form.widget]

    def show(self) -> None:
        display(self.widget)


def _next_free(path: Path) -> Path:
    """`job.yaml` → `job-1.yaml` (or the next number not taken): Save's default name."""
    base = re.sub(r"-\d+$", "", path.stem)
    number = 1
    while (candidate := path.with_name(f"{base}-{number}{path.suffix}")).exists():
        number += 1
    return candidate


def _write_atomic(path: Path, text: str) -> None:
    """Readers (a launch, a colleague) see the old file or the new one, never half of it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        else:
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
