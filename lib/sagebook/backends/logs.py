"""Log lines of a run: shown live, saved to the record, and scraped for metrics.

Metrics are scraped as SageMaker does: every metric definition's regex is searched in every
log line, and the first capture group, read as a float, is the value.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..secrets import redact


class LogSink:
    """Receives log lines from one host; appends them to its log and metric values to metrics."""

    def __init__(self, log_path: Path, metrics_path: Path,
                 metric_definitions: list[dict[str, str]], echo: Callable[[str], None],
                 host: str = "algo-1"):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path, self.metrics_path = log_path, metrics_path
        self.host = host
        self.echo = echo
        self.patterns = [(d["Name"], re.compile(d["Regex"])) for d in metric_definitions]
        self.steps: dict[str, int] = {}
        self.last: dict[str, float] = {}
        self._log: IO[str] = self.log_path.open("a", encoding="utf-8")
        self._metrics: IO[str] = self.metrics_path.open("a", encoding="utf-8")

    def line(self, text: str, timestamp: float | None = None) -> None:
        text = redact(text.rstrip("\r\n"))
        stamp = time.time() if timestamp is None else timestamp
        # Saved before shown: a line someone saw is in the log even if Ctrl-C comes next.
        self._log.write(text + "\n")
        self._log.flush()
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
            step = self.steps.get(name, 0)
            self.steps[name] = step + 1
            self.last[name] = value
            entry: dict[str, Any] = {"name": name, "value": value, "timestamp": stamp,
                                     "step": step, "host": self.host}
            self._metrics.write(json.dumps(entry) + "\n")
            self._metrics.flush()
        self.echo(text)

    def close(self) -> None:
        self._log.close()
        self._metrics.close()
