"""Log lines of a run: shown live, saved to the record, and scraped for metrics.

Metrics are scraped as SageMaker does: every metric definition's regex is searched in every
log line, and the first capture group, read as a float, is the value. The regexes come from
configs (any branch, a teammate's record replayed by `rerun`), so they run on RE2, in time
linear in the line: Python's `re` takes exponential time on `(a+)+$` and holds the GIL while it
does, so neither SIGTERM nor Ctrl-C could end the launch. A value's step (the x of its curve)
is the line's own epoch or step number when it has one; once a metric's lines have had one, a
line without (a closing "final val_accuracy=…") sets the final value but adds no point to the
curve.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..printing import terminal_text
from ..secrets import redact, secret_values

# `epoch=3`, `Epoch 3/10`, `step: 200`, `iteration 7`: a line's own position in training.
# One way to read each space (`\s*[=:]?\s*` would try every split of a long run of spaces).
_STEP = re.compile(r"\b(?:epoch|step|iteration|iter)\b\s*(?:[=:]\s*)?(\d+)", re.IGNORECASE)


def metric_pattern(regex: str) -> Any:
    """`regex` compiled for RE2, which runs it in time linear in the line (the pattern has
    `re`'s `search` and `groups`, its matches `group`); ValueError with the reason when RE2
    cannot run it: a backreference, a lookahead or lookbehind, `\\Z` (RE2 has `\\z`)."""
    import re2  # 20-50 ms: a launch pays for it, `sagebook list` does not

    options = re2.Options()
    options.log_errors = False  # the reason is raised, not written to stderr by the library
    try:
        return re2.compile(regex, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise ValueError(f"{reason} (metric regexes run on RE2, in linear time: it has no "
                         "backreferences, lookahead or lookbehind)") from None


class LogSink:
    """Receives log lines from one host; appends them to its log and metric values to metrics.

    A write that fails (a full disk, a store folder gone) never stops the lines: the files move
    to `fallback` (a local folder), the log so far copied first, and the lines go on being
    shown and scraped. The reader of the training output must keep draining its pipe, or the
    training blocks on its next print and the run hangs.
    """

    def __init__(self, log_path: Path, metrics_path: Path,
                 metric_definitions: list[dict[str, str]], echo: Callable[[str], None],
                 host: str = "algo-1", fallback: Path | None = None):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path, self.metrics_path = log_path, metrics_path
        self.host = host
        self.echo = echo
        self.fallback = fallback
        self.error: str | None = None  # the first write error, when there was one
        self.lost_lines = 0
        self.patterns: list[tuple[str, Any]] = []
        for definition in metric_definitions:
            try:
                self.patterns.append((definition["Name"], metric_pattern(definition["Regex"])))
            except ValueError as exc:  # a cloud job's own, which SageMaker scrapes itself
                echo(f"[sagebook] metric {terminal_text(definition['Name'], one_line=True)} "
                     f"is not scraped here: {exc}")
        self.secrets = secret_values()
        self.steps: dict[str, int] = {}
        self.stepped: set[str] = set()  # metrics whose lines carry their own epoch/step
        self.last: dict[str, float] = {}
        self._log: IO[str] | None = self.log_path.open("a", encoding="utf-8")
        self._metrics: IO[str] | None = self.metrics_path.open("a", encoding="utf-8")

    @property
    def moved(self) -> bool:
        """The files were moved to the fallback folder after a write error."""
        return self.fallback is not None and self.log_path.parent == self.fallback / "logs"

    def line(self, text: str, timestamp: float | None = None) -> None:
        text = redact(text.rstrip("\r\n"), self.secrets)
        stamp = time.time() if timestamp is None else timestamp
        # Saved before shown: a line someone saw is in the log even if Ctrl-C comes next.
        self._write("_log", text + "\n")
        for name, pattern in self.patterns:
            match = pattern.search(text)
            if not match:
                continue
            try:
                value = float(match.group(1))
            except (TypeError, ValueError, IndexError):
                continue
            if math.isnan(value) or math.isinf(value):
                continue
            self.last[name] = value
            own = _STEP.search(text)
            if own:  # the log's own epoch or step numbers the curve
                step = int(own.group(1))
                self.stepped.add(name)
            elif name in self.stepped:
                continue  # a summary line ("final val_accuracy=…"): a final value, no point
            else:
                step = self.steps.get(name, 0)
            self.steps[name] = step + 1
            entry: dict[str, Any] = {"name": name, "value": value, "timestamp": stamp,
                                     "step": step, "host": self.host}
            self._write("_metrics", json.dumps(entry) + "\n")
        self.echo(text)

    def _write(self, which: str, text: str) -> None:
        for _ in range(2):
            handle = getattr(self, which)
            if handle is None:
                break
            try:
                handle.write(text)
                handle.flush()
                return
            except OSError as exc:
                self.error = self.error or f"cannot write {handle.name}: {exc.strerror or exc}"
                self._move()
        if which == "_log":
            self.lost_lines += 1

    def _move(self) -> None:
        """Go on writing in the fallback folder; with none, or a failure there too, stop
        writing (the lines are still shown and scraped)."""
        self._close()
        if self.fallback is None or self.moved:
            return
        log = self.fallback / "logs" / self.log_path.name
        metrics = self.fallback / self.metrics_path.name
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            for source, target in ((self.log_path, log), (self.metrics_path, metrics)):
                if source.exists() and source != target:
                    shutil.copyfile(source, target)
            self.log_path, self.metrics_path = log, metrics
            self._log = log.open("a", encoding="utf-8")
            self._metrics = metrics.open("a", encoding="utf-8")
        except OSError:
            self._close()
            return
        self.echo(f"[sagebook] {self.error}; the log goes on in {log}")

    def _close(self) -> None:
        for which in ("_log", "_metrics"):
            handle = getattr(self, which)
            setattr(self, which, None)
            if handle is not None:
                try:
                    handle.close()
                except OSError:
                    pass  # a failed flush of what could not be written anyway

    def close(self) -> None:
        self._close()
