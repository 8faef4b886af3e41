"""Errors a user can act on.

They are raised where the fault is known and rendered once, at the edge (CLI or notebook),
without a traceback: the message alone must say what to fix.
"""

from __future__ import annotations


class SagebookError(Exception):
    """Base of every error that is the user's to fix, not a bug in sagebook."""


class ConfigError(SagebookError):
    """One or more problems in a config file, an override or a notebook parameter.

    Each problem is one line `where: key: what is wrong`, so a file with three typos is fixed
    in one round trip instead of three.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    @classmethod
    def one(cls, where: str, key: str | None, message: str) -> ConfigError:
        return cls([format_problem(where, key, message)])


def format_problem(where: str, key: str | None, message: str) -> str:
    return f"{where}: {key}: {message}" if key else f"{where}: {message}"


class StoreError(SagebookError):
    """The record store or a data location could not be read or written."""


class LaunchError(SagebookError):
    """The job could not be started or watched."""
