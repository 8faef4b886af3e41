"""What sagebook prints is masked like what it records.

A training script's log lines, its `output/failure` text (a failed run's summary and error)
and AWS's messages reach the terminal, the launch notebook's outputs (which papermill saves to
a file anyone may commit) and the form. They pass through the record's own masking,
`secrets.redact`, at the one place each of them is printed: the streams below for the CLI and
the notebook kernel, the error display for the notebook, the log for the form.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from .secrets import redact


class MaskedStream:
    """A text stream that masks credentials in whatever is written to it."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding…
        return getattr(self._stream, name)


@contextmanager
def masked_output() -> Iterator[None]:
    """sys.stdout and sys.stderr masked while the block runs."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskedStream(sys.stdout), MaskedStream(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


class MaskedError:
    """Stands in for an exception where only its text is shown (IPython's error display takes
    `str()` of it for the notebook's `evalue`)."""

    def __init__(self, error: BaseException):
        self.error = error

    def __str__(self) -> str:
        return redact(str(self.error))
