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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..inputs import metric_pattern, re2_options
from ..printing import terminal_text
from ..secrets import Masker

# `epoch=3`, `Epoch 3/10`, `step: 200`, `iteration 7`: a line's own position in training.
# One way to read each space (`\s*[=:]?\s*` would try every split of a long run of spaces).
STEP = re.compile(r"\b(?:epoch|step|iteration|iter)\b\s*(?:[=:]\s*)?(\d+)", re.IGNORECASE)
UNITS = {"epoc": "epoch", "step": "step", "iter": "iteration"}  # STEP's words, by their start


class MetricPatterns:
    """The metric definitions' regexes, searched in each log line as SageMaker does (the
    first capture group of a match anywhere in the line is the value), on RE2.

    A set of all of them passes over the line once and says which match, and only those are
    searched again for their group; all of it on the line's UTF-8 bytes, as RE2 reads them.
    Searched one by one in a str, RE2's Python wrapper maps offsets back to characters and
    costs 5 to 15 times what `re` does (measured: 24 µs a line that matches none of three
    regexes, against 3 µs with `re`; 5 µs this way)."""

    def __init__(self, definitions: list[dict[str, str]], echo: Callable[[str], None]):
        import re2  # re2: as in `__init__`

        self.names: list[str] = []
        self.patterns: list[Any] = []
        for definition in definitions:
            try:
                pattern = metric_pattern(definition["Regex"].encode())
            except ValueError as exc:  # a cloud job's own, which SageMaker scrapes itself
                echo(f"[sagebook] metric {terminal_text(definition['Name'], one_line=True)} "
                     f"is not scraped here: {exc}")
                continue
            self.names.append(definition["Name"])
            self.patterns.append(pattern)
        self.any: Any = None
        if self.patterns:
            self.any = re2.Set.SearchSet(re2_options())
            for pattern in self.patterns:
                self.any.Add(pattern.pattern)
            try:
                self.any.Compile()
            except re2.error:  # beyond RE2's memory for one set: each is searched on its own
                self.any = None

    def values(self, text: str) -> Iterator[tuple[str, bytes]]:
        """Each matching definition's name and first group (when it took part), in the
        definitions' order."""
        data = text.encode("utf-8", errors="replace")
        found = range(len(self.patterns)) if self.any is None else sorted(
            self.any.Match(data) or ())
        for index in found:
            match = self.patterns[index].search(data)
            start, end = match.span(1) if match else (-1, -1)  # span: a third of group's cost
            if start >= 0:
                yield self.names[index], data[start:end]


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
        self.metrics = MetricPatterns(metric_definitions, echo)
        self.mask = Masker()  # reads the secret variables once; a key's body spans lines
        self.steps: dict[str, int] = {}
        self.stepped: set[str] = set()  # metrics whose lines carry their own epoch/step
        self.last: dict[str, float] = {}
        self.last_output: float | None = None  # monotonic time of the last line (stall.py)
        self._log: IO[str] | None = self.log_path.open("a", encoding="utf-8")
        self._metrics: IO[str] | None = self.metrics_path.open("a", encoding="utf-8")

    @property
    def moved(self) -> bool:
        """The files were moved to the fallback folder after a write error."""
        return self.fallback is not None and self.log_path.parent == self.fallback / "logs"

    def line(self, text: str, timestamp: float | None = None) -> None:
        self.last_output = time.monotonic()
        text = self.mask(text.rstrip("\r\n"))
        stamp = time.time() if timestamp is None else timestamp
        # Saved before shown: a line someone saw is in the log even if Ctrl-C comes next.
        self._write("_log", text + "\n")
        for name, group in self.metrics.values(text):
            try:
                value = float(group)
            except ValueError:
                continue
            if math.isnan(value) or math.isinf(value):
                continue
            self.last[name] = value
            own = STEP.search(text)
            unit = None
            if own:  # the log's own epoch or step numbers the curve
                step = int(own.group(1))
                unit = own.group(0)[:4].lower()  # what the log counts: epoch, step or iter
                self.stepped.add(name)
            elif name in self.stepped:
                continue  # a summary line ("final val_accuracy=…"): a final value, no point
            else:
                step = self.steps.get(name, 0)
            self.steps[name] = step + 1
            entry: dict[str, Any] = {"name": name, "value": value, "timestamp": stamp,
                                     "step": step, "host": self.host}
            if unit:  # the charts' x axis: "epoch", "step" or "iteration"
                entry["unit"] = UNITS[unit]
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
