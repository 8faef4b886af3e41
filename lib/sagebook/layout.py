"""Storage layer (L2): where in a record store the report's pages are, by key.

A run's record lives at `<experiment>/<run_id>/` (record.py), the index at `_index/`
(index.py), a sweep's record at `_sweeps/` (sweeps/record.py); the report writes its pages
under `_report/`. The keys of those pages are spelled here once, so that a query (`show`
naming a run's page) and the report that writes the page agree without importing each other.
"""

from __future__ import annotations

REPORT_ROOT = "_report"
REPORT_STATE = f"{REPORT_ROOT}/state.json"  # what was rendered, so re-runs skip the rest
REPORT_INDEX = f"{REPORT_ROOT}/index.html"


def run_page_key(experiment: str, run_id: str) -> str:
    """The key of a run's page."""
    return f"{REPORT_ROOT}/runs/{experiment}/{run_id}.html"


def notebook_page_key(experiment: str, run_id: str) -> str:
    """The key of the page of a run's executed notebook, next to the run's page."""
    return f"{REPORT_ROOT}/runs/{experiment}/{run_id}.notebook.html"


def sweep_page_key(experiment: str, sweep_id: str) -> str:
    """The key of a sweep's page."""
    return f"{REPORT_ROOT}/sweeps/{experiment}/{sweep_id}.html"
