"""Where records, configs, checkpoints and outputs live: a local folder or S3, chosen by URI.

Callers never know which: they hold a `Store` rooted at a URI and use keys relative to it.
Adding a scheme is one module and one `register` line.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import StoreError
from .base import Store, StoreExistsError

__all__ = ["Store", "StoreExistsError", "open_store", "register"]

_SCHEMES: dict[str, str] = {
    "": "sagebook.stores.local:LocalStore",
    "file": "sagebook.stores.local:LocalStore",
    "s3": "sagebook.stores.s3:S3Store",
}


def register(scheme: str, target: str) -> None:
    """Route URIs of `scheme` to the Store class named `module:Class` (imported on first use)."""
    _SCHEMES[scheme] = target


def open_store(uri: str, **options: Any) -> Store:
    """The store for `uri`; options (profile, region, kms_key, …) go to stores that use them."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    target = _SCHEMES.get(scheme)
    if target is None:
        raise StoreError(f"{uri}: no store for scheme {scheme!r} (known: s3://, local paths)")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(uri, **options)

