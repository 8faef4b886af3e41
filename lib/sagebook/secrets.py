"""Keeping credentials out of records, which the whole team (and a static report) can read.

Two lines of defence:
- configs may not carry secrets inline: an `environment` value that looks like a credential,
  or sits under a secret-sounding name, is refused at validation with advice to reference it
  (an SSM parameter or Secrets Manager ARN that the training code resolves);
- every text written to a record passes through `redact()`, which masks the values of this
  process's credential variables and credential-shaped strings, so a training script that
  prints its environment still leaves no key in the logs or the executed notebook.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

MASK = "****"

ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA|ANPA|AGPA)[A-Z0-9]{16}\b")
# A name says "secret" when one of its words does: HF_TOKEN, db-password, aws_secret_access_key
# (but not TOKENIZERS_PARALLELISM).
_SECRET_WORD = (r"(?<![A-Za-z0-9])(?:secret|password|passwd|token|credentials?|"
                r"(?:api|private|access)[_\-]?key)(?![A-Za-z0-9])")
SECRET_NAME = re.compile(_SECRET_WORD, re.IGNORECASE)
# name = value, name: value, "name": "value" in logs, notebooks and config dumps. Matched in
# steps that never look at a character twice: a secret word, the rest of its run of name
# characters, then a separator and a value right after the run. (One pattern
# `[…]*word[…]*sep value` backtracks over every long run of name characters from every
# start: quadratic, minutes for one long log line, deaf to Ctrl-C.)
_REST_OF_NAME = re.compile(r"[A-Za-z0-9_\-.]*")
_SEPARATED_VALUE = re.compile(
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[A-Za-z0-9/+=_\-.]{8,})")
SECRET_REFERENCE = re.compile(
    r"^(arn:aws[a-z\-]*:(secretsmanager|ssm):|\{\{resolve:(secretsmanager|ssm))"
)


def secret_values() -> list[str]:
    """The values of this process's credential-like variables, longest first (reading the
    environment costs more than masking a line: a caller masking many lines asks once)."""
    values = {
        value for name, value in os.environ.items()
        if len(value) >= 8 and SECRET_NAME.search(name) and not SECRET_REFERENCE.match(value)
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str, values: Sequence[str] | None = None) -> str:
    """`text` with credentials masked; everything else, byte for byte, as it was.

    Masks `values` (by default `secret_values()`, read now), access key ids and the value of
    every `name = value` whose name holds a secret word, in time linear in the text.
    """
    for value in secret_values() if values is None else values:
        if value in text:
            text = text.replace(value, MASK)
    text = ACCESS_KEY_ID.sub(MASK, text)
    return _mask_named_values(text)


def _mask_named_values(text: str) -> str:
    parts: list[str] = []
    done = pos = 0
    while (word := SECRET_NAME.search(text, pos)) is not None:
        name_end = _REST_OF_NAME.match(text, word.end()).end()  # type: ignore[union-attr]
        pos = name_end  # a second secret word in this name leads to the same separator
        found = _SEPARATED_VALUE.match(text, name_end)
        if found is None:
            continue
        value = found.group("value")
        if not (value.isdigit() or SECRET_REFERENCE.match(value)):
            parts += [text[done:found.start("value")], MASK]
            done = found.end()
        pos = found.end()
    return "".join(parts) + text[done:] if parts else text


def inline_secret(name: str, value: str) -> str | None:
    """Why an environment entry must not be inlined in a config, or None when it may."""
    if SECRET_REFERENCE.match(value):
        return None
    if ACCESS_KEY_ID.search(value):
        return "looks like an AWS access key id"
    if SECRET_NAME.search(name) and value:
        return f"{name} looks like a secret"
    return None
