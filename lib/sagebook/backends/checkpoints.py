"""A run's checkpoints: its own prefix, and the checkpoints it was asked to resume from.

Every run syncs its own prefix (`request.checkpoint_location`), so a second run with the same
`checkpoint_uri` never restores the first one's work. A run that resumes (`resume_from`, or
`sagebook rerun RUN --resume`) gets a copy of the source checkpoints in its own prefix before
it starts, and then behaves like any run: the local backends restore that prefix into
`checkpoints/`, SageMaker restores `CheckpointConfig.S3Uri` into the container at the start
and again after each spot interruption. Copying, rather than pointing the job at the source,
is what SageMaker honours: it has no separate "start from" location, and a job syncing the
source prefix itself would write its checkpoints over the run it resumed from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..stores import Store, open_store
from . import contract


def store_at(uri: str, options: dict[str, Any]) -> Store:
    """The store behind a checkpoint URI as a request holds it (s3://… or file://…)."""
    path = contract.local_path(uri)
    return open_store(str(path) if path else uri, **options)


def resume(source: str, own: str, options: dict[str, Any], echo: Callable[[str], None]) -> int:
    """Copy the checkpoints at `source` into the run's own prefix `own`; return how many."""
    count = store_at(own, options).copy_from(store_at(source, options))
    echo(f"[sagebook] resuming: {count} checkpoint files copied from {source} to {own}")
    return count
