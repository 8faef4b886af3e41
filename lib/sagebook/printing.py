r"""What sagebook prints is masked like what it records, and cannot drive the terminal.

A training script's log lines, its `output/failure` text (a failed run's summary and error)
and AWS's messages reach the terminal, the launch notebook's outputs (which papermill saves to
a file anyone may commit) and the form. They pass through the record's own masking,
`secrets.redact`, at the one place each of them is printed: the streams below for the CLI and
the notebook kernel, the error display for the notebook, the log for the form.

Whatever a record holds (a user name, a tag, a note, a failure reason) was written by anyone
with write access to the shared store, so every such text passes `terminal_text()` before it is
printed: escape sequences could retitle the window, clear the screen or hide a hyperlink, a
carriage return could overwrite what a line said, and a right-to-left override could show
`safe\u202egpj.exe` as `safeexe.jpg`.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from .secrets import Masker, redact

# Bidirectional controls reorder what follows them on screen: shown as escapes, never obeyed.
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
# C0 but newline and tab, DEL, C1: ESC among them, so no escape sequence survives (`\x1b[2J`
# is printed as those characters, not obeyed).
_CONTROLS = (*(c for c in range(0x20) if chr(c) not in "\n\t"), *range(0x7F, 0xA0))
_TERMINAL = {c: f"\\x{c:02x}" for c in _CONTROLS} | {c: f"\\u{c:04x}" for c in _BIDI}
_ONE_LINE = _TERMINAL | {ord("\n"): "\\n", ord("\t"): "\\t"}


def terminal_text(value: object, *, one_line: bool = False) -> str:
    r"""`value` as text that shows what it holds and nothing more: control characters and
    bidirectional overrides become visible escapes (`\x1b`, `\u202e`), in one pass.
    `one_line` escapes newlines and tabs too, for a table cell or a one-line message."""
    return str(value).translate(_ONE_LINE if one_line else _TERMINAL)


def cell_text(value: object, width: int | None = None) -> str:
    """A value read from a record as one table cell, label or setting: text as it is, anything
    else as JSON (`0.001`, `[1, 2]`, `true`, `null`; what JSON cannot write, as text), cut to
    `width` characters with `…` when given. The one rule for the terminal's tables, the pages'
    axes and cells and MLflow's params; a terminal's caller still passes it `terminal_text`."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if width is None or len(text) <= width else text[:width - 1] + "…"


def terminal_lines(lines: Iterable[object]) -> str:
    """`lines` as the terminal text of a report laid out line by line (`show`, `diff`,
    `fsck`): each one `terminal_text(…, one_line=True)`, so a value read from a record stays on
    its own line and cannot start a line that looks like one sagebook wrote."""
    return "\n".join(terminal_text(line, one_line=True) for line in lines)


class MaskedStream:
    """A text stream that masks credentials in whatever is written to it.

    Text is passed on a line at a time: `print("token:", token)` writes its words one by one,
    and a shape (a URL with a password, a key next to "aws") is seen only in the whole line.
    A flush, or a line longer than PENDING_LIMIT, passes on what is held so far.
    """

    PENDING_LIMIT = 1 << 16

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._mask = Masker()
        self._pending: list[str] = []
        self._held = 0
        self._lock = threading.Lock()  # log lines of several hosts are printed from threads

    def write(self, text: str) -> int:
        with self._lock:
            self._pending.append(text)
            self._held += len(text)
            if "\n" in text or self._held > self.PENDING_LIMIT:
                held = "".join(self._pending)
                cut = held.rfind("\n") + 1 or len(held)
                self._pending, self._held = [held[cut:]], len(held) - cut
                self._stream.write(self._mask(held[:cut]))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            held = "".join(self._pending)
            self._pending, self._held = [], 0
            if held:
                self._stream.write(self._mask(held))
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding…
        return getattr(self._stream, name)


@contextmanager
def masked_output() -> Iterator[None]:
    """sys.stdout and sys.stderr masked while the block runs."""
    saved = sys.stdout, sys.stderr
    masked = MaskedStream(sys.stdout), MaskedStream(sys.stderr)
    sys.stdout, sys.stderr = masked  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        for stream in masked:
            stream.flush()


class MaskedError:
    """Stands in for an exception where only its text is shown (IPython's error display takes
    `str()` of it for the notebook's `evalue`)."""

    def __init__(self, error: BaseException):
        self.error = error

    def __str__(self) -> str:
        return redact(str(self.error))
