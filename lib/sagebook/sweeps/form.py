"""The Sweep part of the config form: a sweep file edited beside the job config, checked as
`sagebook sweep --dry-run` checks it (same rules, same messages), its trials (or search space)
shown as the user types, saved, and run in the background.

Running is `sagebook sweep CONFIG --sweep FILE` on the saved files: the trials' records and the
sweep's record are the same as from the command line, with `launched_via: form`.
"""

from __future__ import annotations

import html
import os
import threading
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..errors import ConfigError, SagebookError
from ..secrets import redact
from .control import plan, start

STARTER = """\
# A sweep over this job (see the README, "Sweeps"); parameters are override paths.
objective: {metric: METRIC, goal: maximize}
strategy: grid
parameters:
  training.KEY: [VALUE1, VALUE2]
max_parallel: 2
"""
LOG_LINES = 12


class SweepPart:
    """The sweep file of one job config: edit, check, save, run."""

    def __init__(self, job_path: Path, metrics: list[str]):
        self.job_path = job_path
        self.problems: list[str] = []
        self.running = False
        self.thread: threading.Thread | None = None
        self.record_uri: str | None = None
        default = job_path.parent / "sweep.yaml"
        self.file = widgets.Text(value=default.name, description="sweep file",
                                 continuous_update=False, style={"description_width": "6em"},
                                 layout=widgets.Layout(width="28em"))
        self.text = widgets.Textarea(continuous_update=False, rows=12,
                                     layout=widgets.Layout(width="48em"))
        self.check_view = widgets.HTML()
        self.save_button = widgets.Button(description="Save sweep", icon="save")
        self.run_button = widgets.Button(description="Run sweep", icon="play",
                                          button_style="success")
        self.status = widgets.HTML()
        self.log = widgets.HTML()
        self.log.add_class("sagebook-log")
        self.log.layout.display = "none"
        self._lines: list[str] = []
        self.save_button.on_click(lambda _b: self._guarded(self.save))
        self.run_button.on_click(lambda _b: self._guarded(self.run))
        self.file.observe(lambda _c: self.load(), names="value")
        self.text.observe(lambda _c: self.check(), names="value")
        self.metrics = metrics
        self.box = widgets.VBox([
            widgets.HTML("<div class='sagebook-section'>Sweep</div>"),
            widgets.HTML("<div class='sagebook-help'>A grid or random search here, or a "
                         "SageMaker tuning job: every trial a run with its record.</div>"),
            self.file, self.text, self.check_view,
            widgets.HBox([self.save_button, self.run_button]), self.status, self.log,
        ])
        self.load()

    @property
    def path(self) -> Path:
        return (self.job_path.parent / Path(self.file.value.strip()).expanduser()).resolve()

    def load(self) -> None:
        """Show the sweep file (a starter when it does not exist yet) and check it."""
        try:
            self.text.value = self.path.read_text()
        except OSError:
            metric = self.metrics[0] if self.metrics else "METRIC"
            self.text.value = STARTER.replace("METRIC", metric)
        self.check()

    def check(self) -> None:
        """Check the editor's sweep against the saved job config, as `--dry-run` does."""
        try:
            planned = plan(self.job_path, self.path, text=self.text.value)
        except ConfigError as exc:
            self.problems = list(exc.problems)
            items = "".join(f"<li>{html.escape(p)}</li>" for p in exc.problems)
            self.check_view.value = (f"<div class='sagebook-problems'><b>{len(exc.problems)} "
                                     f"problem{'s' if len(exc.problems) != 1 else ''}</b> (as "
                                     f"<code>sagebook sweep</code> reports them):<ul>{items}"
                                     "</ul></div>")
        else:
            self.problems = []
            self.check_view.value = (f"<pre class='sagebook-trials'>"
                                     f"{html.escape(planned.describe())}</pre>")
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.save_button.disabled = bool(self.problems) or self.running
        self.run_button.disabled = bool(self.problems) or self.running

    def save(self) -> Path | None:
        self.check()
        if self.problems:
            self._say("Not saved: fix the problems first.", error=True)
            return None
        target = self.path
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(self.text.value)
        os.replace(tmp, target)
        self._say(f"Saved <code>{html.escape(str(target))}</code>.")
        return target

    def run(self) -> threading.Thread | None:
        """Save the sweep, then run it in the background, its output in the log."""
        if self.running:
            return None
        path = self.save()
        if path is None:
            return None
        self.running = True
        self._update_buttons()
        self._lines = []
        self.log.layout.display = "block"
        self.record_uri = None
        self.thread = threading.Thread(target=self._run, args=(path,), daemon=True,
                                       name="sagebook-form-sweep")
        self.thread.start()
        return self.thread

    def _run(self, path: Path) -> None:
        try:
            record = start(plan(self.job_path, path), via="form", echo=self._line)
            self.record_uri = record.uri
            self._say(f"Sweep {html.escape(record.sweep_id)}: {record.status}. Record: "
                      f"<code>{html.escape(record.uri)}</code>")
        except (SagebookError, OSError) as exc:  # shown here: nobody reads a thread's trace
            self._say(html.escape(str(exc)), error=True)
        finally:
            self.running = False
            self._update_buttons()

    def _line(self, text: str) -> None:
        self._lines = (self._lines + [redact(text)])[-LOG_LINES:]
        self.log.value = html.escape("\n".join(self._lines))

    def _say(self, text: str, error: bool = False) -> None:
        css = "sagebook-problems" if error else "sagebook-ok"
        self.status.value = f"<div class='{css}'>{text}</div>"

    def _guarded(self, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # a button's failure is shown in the form
            self._say(f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}", error=True)
