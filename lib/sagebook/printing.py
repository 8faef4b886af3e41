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

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from .secrets import redact

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


def terminal_lines(lines: Iterable[object]) -> str:
    """`lines` as the terminal text of a report laid out line by line (`show`, `diff`,
    `fsck`): each one `terminal_text(…, one_line=True)`, so a value read from a record stays on
    its own line and cannot start a line that looks like one sagebook wrote."""
    return "\n".join(terminal_text(line, one_line=True) for line in lines)


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
