"""Keeping credentials out of records, which the whole team (and a static report) can read.

Two lines of defence:
- configs may not carry secrets inline: an `environment` value that looks like a credential,
  or sits under a secret-sounding name, and a tag or training-config value shaped like a token,
  is refused at validation with advice to reference it (an SSM parameter or Secrets Manager
  ARN that the training code resolves); so is a note, tag or name given to a recorded run;
- every text written to a record or printed passes through `redact()` (or, for text that
  arrives in pieces, a `Masker`), which masks the values of this process's credential
  variables and credential-shaped strings, so a training script that prints its environment,
  a token or a private key still leaves none in the logs or the executed notebook.

The shapes are those secret scanners look for (detect-secrets, gitleaks): AWS access key ids,
and secret keys next to an AWS context; GitHub, Hugging Face and Slack tokens; JSON Web Tokens;
the password in `scheme://user:password@host`; `Authorization:` and `Bearer` credentials;
the body of a PEM private key; the value of `name = value` under a secret-sounding name.

Masking runs in time linear in the text, whatever the text: a log line is whatever the
training code printed. Every pattern is built so that no character is looked at more than a
bounded number of times: a token pattern starts with a literal character and may start only
where a run of its characters starts (a lookbehind), so a run of 'eyJ' or 'ghp_' repeats is
tried once, not from each repeat; its runs are separated by characters they cannot hold, so a
failed attempt gives back only the run it read. A pattern runs only on a text that holds one
of its words (a substring search), so an ordinary log line costs a few substring searches.

Neither library fits here, as measured: detect-secrets' plugin patterns backtrack (its JWT
pattern on 5 MB of 'eyJa' repeats did not end in four minutes, its AWS pattern took 21 s on
5 MB of 'aws key ') and importing its plugins takes 2.3 s (requests); RE2 is linear by
construction, but one RE2 pattern of these token shapes costs 2.6 times these patterns on
lines of tokens from Python, 20 times on a line of many matches, and would be imported by
every command that prints (`sagebook list`).
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

# Tokens with a shape of their own: (what it is, words one of which a text holds, case-folded,
# before its pattern is worth running, pattern). The group `secret` is what is masked;
# what is left says what was there (`ghp_****`, `postgresql://admin:****@db`). A pattern that
# must start where a run of its characters starts says so with a lookbehind after its first
# character, which keeps the engine's fast scan for that character.
_TOKENS: list[tuple[str, tuple[str, ...], re.Pattern[str]]] = [
    (kind, hints, re.compile(pattern)) for kind, hints, pattern in (
        ("a GitHub token", ("gh",), r"g(?<![A-Za-z0-9_]g)h[pousr]_(?P<secret>[A-Za-z0-9]{36,})"),
        ("a GitHub token", ("github_pat_",),
         r"g(?<![A-Za-z0-9_]g)ithub_pat_(?P<secret>[A-Za-z0-9_]{22,})"),
        ("a Hugging Face token", ("hf_",), r"h(?<![A-Za-z0-9_]h)f_(?P<secret>[A-Za-z0-9]{30,})"),
        ("a Slack token", ("xox",), r"x(?<![A-Za-z0-9_]x)ox[abprs]-(?P<secret>[A-Za-z0-9\-]{10,})"),
        ("a JSON Web Token", ("eyj",),
         r"(?P<secret>e(?<![A-Za-z0-9_\-]e)yJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{2,}\."
         r"[A-Za-z0-9_\-]*)"),
        ("a URL with a password", ("://",),
         r"://[^\s:/?#@\"'<>]*:(?P<secret>[^\s/?#@\"'<>]+)@"),
        ("an Authorization header", ("authorization",),
         r"(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:basic|bearer|token|digest)\s+)?"
         r"(?P<secret>[A-Za-z0-9._~+/=\-]{8,})"),
        ("a bearer token", ("bearer",),
         r"(?<![A-Za-z0-9])(?i:bearer)\s+(?P<secret>[A-Za-z0-9._~+/=\-]{16,})"),
        ("an AWS access key id", ("akia", "asia", "aroa", "aida", "anpa", "agpa"),
         ACCESS_KEY_ID.pattern),
    )
]
AWS_SECRET_KEY_KIND = "an AWS secret access key"
PRIVATE_KEY_KIND = "a private key"

# An AWS secret access key is 40 characters of base64, which a base64 digest can be too: it
# is masked only on a line that speaks of AWS, secrets or access keys, and only when it looks
# random (both cases and not hexadecimal, unlike a git sha).
_AWS_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_CONTEXT = re.compile(r"(?<![A-Za-z])[Aa][Ww][Ss](?![a-z])|[Ss][Ee][Cc][Rr][Ee][Tt]"
                          r"|[Aa][Cc][Cc][Ee][Ss][Ss].?[Kk][Ee][Yy]|(?:AKIA|ASIA)[A-Z0-9]{16}")
_AWS_HINTS = ("aws", "secret", "access", "akia", "asia")
_SECRET_NAME_HINTS = ("secret", "passw", "token", "credential", "key")
# Every word (case-folded) one of which a text must hold for a pattern to be worth running:
# substring searches cost far less than a pattern's, and most log lines hold none of them.
_HINTS = frozenset(_AWS_HINTS + _SECRET_NAME_HINTS
                   + tuple(word for _, hints, _ in _TOKENS for word in hints))
_HEX = frozenset("0123456789abcdefABCDEF")

# A PEM private key: its BEGIN line, then a body of base64 lines and headers (a log has it
# line by line, a notebook's JSON with `\n` escapes) up to the next `-----` (its END line).
# The body is cut at 64 KiB (the largest keys are ~13 KB), so a BEGIN line without an END
# masks what follows it only that far.
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
KEY_BODY_LIMIT = 65536
_KEY_BODY = re.compile(r"[A-Za-z0-9+/=\s:,.()\\]*")  # and single dashes (DEK-Info)


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

    Masks `values` (by default `secret_values()`, read now), the token shapes above and the
    value of every `name = value` whose name holds a secret word, in time linear in the text.
    """
    return Masker(values)(text)


class Masker:
    """Masks a text that arrives in pieces (a log line by line, the writes to a stream) as
    `redact()` masks a whole text: a private key's body goes on being masked in the pieces
    after its BEGIN line, until its END line."""

    def __init__(self, values: Sequence[str] | None = None):
        self.values = secret_values() if values is None else values
        self._key_budget = 0  # characters of an open private key's body still to mask

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        text, self._key_budget = _mask_private_keys(text, self._key_budget)
        folded = text.casefold()
        held = {word for word in _HINTS if word in folded}
        if not held:
            return text
        if not held.isdisjoint(_AWS_HINTS):
            text = _mask_aws_secret_keys(text)
        for _, hints, pattern in _TOKENS:
            if not held.isdisjoint(hints):
                text = pattern.sub(_masked_token, text)
        return _mask_named_values(text) if not held.isdisjoint(_SECRET_NAME_HINTS) else text


def _masked_token(found: re.Match[str]) -> str:
    if found.re.groups == 0:
        return MASK
    start, end = found.span("secret")
    text = found.group(0)
    return text[:start - found.start()] + MASK + text[end - found.start():]


def _mask_private_keys(text: str, budget: int) -> tuple[str, int]:
    """`text` with the bodies of private keys masked, and how much of an unfinished body the
    next piece of the same stream may still hold (0: no key is open). `budget` is what the
    previous piece left open."""
    parts: list[str] = []
    done = pos = 0
    while True:
        if not budget:
            begin = _KEY_BEGIN.search(text, pos)
            if begin is None:
                return "".join(parts) + text[done:], 0
            pos, budget = begin.end(), KEY_BODY_LIMIT
        limit, run = min(len(text), pos + budget), pos
        while True:
            run = _KEY_BODY.match(text, run, limit).end()  # type: ignore[union-attr]
            if run == limit or text[run] != "-" or text.startswith("-----", run):
                break
            run += 1
        dashes = run if text.startswith("-----", run) else -1
        end = run
        while end > pos and text[end - 1] == "\\":
            end -= 1  # a JSON escape (`\"`) stays whole
        body = text[pos:end]
        if body.strip():
            lead, trail = len(body) - len(body.lstrip()), len(body) - len(body.rstrip())
            parts += [text[done:pos + lead], MASK]
            done = end - trail
        if dashes >= 0:  # its END line (or the next BEGIN): the key is over
            pos, budget = dashes, 0
        elif run == len(text):  # the body may go on in the next piece
            return "".join(parts) + text[done:], budget - (run - pos)
        else:  # a character no key holds, or the size limit: over
            pos, budget = run, 0


def _mask_aws_secret_keys(text: str) -> str:
    parts: list[str] = []
    done, line_end, in_context = 0, -1, False
    for found in _AWS_SECRET_KEY.finditer(text):
        start = found.start()
        if start > line_end:  # the first candidate on its line: does the line speak of AWS?
            line_start = text.rfind("\n", max(line_end, 0), start) + 1
            line_end = text.find("\n", start)
            line_end = len(text) if line_end < 0 else line_end
            in_context = _AWS_CONTEXT.search(text, line_start, line_end) is not None
        if in_context and _looks_random(found.group()):
            parts += [text[done:start], MASK]
            done = found.end()
    return "".join(parts) + text[done:] if parts else text


def _looks_random(value: str) -> bool:
    return (not _HEX.issuperset(value) and any(c.isupper() for c in value)
            and any(c.islower() for c in value))


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


def token_kind(text: str) -> str | None:
    """What credential `text` holds, by its shape (`"a GitHub token"`), or None: for refusing
    values that a config, a tag or a note would otherwise carry into a record."""
    if _KEY_BEGIN.search(text):
        return PRIVATE_KEY_KIND
    if _mask_aws_secret_keys(text) != text:
        return AWS_SECRET_KEY_KIND
    return next((kind for kind, _, pattern in _TOKENS if pattern.search(text)), None)


def inline_secret(name: str, value: str) -> str | None:
    """Why an environment entry must not be inlined in a config, or None when it may."""
    if SECRET_REFERENCE.match(value):
        return None
    kind = token_kind(value)
    if kind:
        return f"looks like {kind}"
    if SECRET_NAME.search(name) and value:
        return f"{name} looks like a secret"
    return None
