"""Errors a user can act on.

They are raised where the fault is known and rendered once, at the edge (CLI or notebook),
without a traceback: the message alone must say what to fix.
"""

from __future__ import annotations

from typing import Any

MAX_PROBLEMS = 20  # problems listed in one ConfigError; the rest are counted


class SagebookError(Exception):
    """Base of every error that is the user's to fix, not a bug in sagebook."""


class ConfigError(SagebookError):
    """One or more problems in a config file, an override or a notebook parameter.

    Each problem is one line `where: key: what is wrong`, so a file with three typos is fixed
    in one round trip instead of three.
    """

    # Configs that loaded but did not all validate (a LaunchConfig whose job config is valid),
    # so that later checks can still add their problems to the same round.
    unchecked: Any = None

    def __init__(self, problems: list[str], unlisted: int = 0,
                 unlisted_where: str | None = None):
        # A 1 MiB file of unknown keys has tens of thousands of problems: the first few say
        # what is wrong, and a count says how much more there is (bounded output and memory).
        unlisted += max(0, len(problems) - MAX_PROBLEMS)
        self.listed, self.unlisted = list(problems[:MAX_PROBLEMS]), unlisted
        self.problems = list(self.listed)
        self.unlisted_where = None
        if unlisted:
            first_unlisted = problems[MAX_PROBLEMS] if len(problems) > MAX_PROBLEMS else None
            self.unlisted_where = unlisted_where or getattr(
                first_unlisted or problems[-1], "where", "sagebook")
            self.problems.append(Problem(self.unlisted_where, None,
                                         f"{unlisted:,} more problems not shown"))
        super().__init__("\n".join(self.problems))

    @classmethod
    def one(cls, where: str, key: str | None, message: str) -> ConfigError:
        return cls([format_problem(where, key, message)])

    @classmethod
    def merged(cls, errors: list[ConfigError]) -> ConfigError:
        """The problems of several checks in one error (one round for the user), each listed
        once, the unlisted counted."""
        problems: list[str] = []
        for error in errors:
            problems += [p for p in error.listed if p not in problems]
        where = next((e.unlisted_where for e in errors if e.unlisted_where), None)
        return cls(problems, sum(error.unlisted for error in errors), where)


class ArgumentError(ConfigError):
    """A command-line argument that cannot be taken (`tag RUN wip`, a malformed `--where`):
    refused like a config problem (exit 2, nothing done), but named for what it is, so the
    user looks at what they typed rather than at their config files."""


class Problem(str):
    """One problem line, `where: key: message`, that also keeps its three parts.

    It is a str so that every caller that prints or joins problems keeps working; the config
    form uses `.key` to show each problem next to its field.
    """

    where: str
    key: str | None
    message: str

    def __new__(cls, where: str, key: str | None, message: str) -> Problem:
        line = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        problem = super().__new__(cls, line)
        problem.where, problem.key, problem.message = where, key, message
        return problem

    def __reduce__(self) -> tuple[type[Problem], tuple[str, str | None, str]]:
        # an error crossing a process boundary keeps its parts
        return Problem, (self.where, self.key, self.message)


def format_problem(where: str, key: str | None, message: str) -> Problem:
    return Problem(where, key, message)


class StoreError(SagebookError):
    """The record store or a data location could not be read or written."""


class LaunchError(SagebookError):
    """The job could not be started or watched."""
