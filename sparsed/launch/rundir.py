"""The ``${sparsed_dirname:...}`` resolver: a job folder name from Hydra's override_dirname, always valid.

Hydra's override_dirname (the job's overrides, sorted) names a job by its config, so a relaunched sweep
finds its jobs; but it may hold a ``/`` or exceed the 255 bytes a file name may have. Long names keep a
readable head and end in a hash of the whole, so that two configs never share a folder.
"""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

MAX_NAME = 150  # bytes; well under the usual 255 limit


def dirname(overrides: str) -> str:
    if not overrides:
        return "defaults"
    name = overrides.replace("/", "_").replace("\\", "_")
    if len(name.encode()) <= MAX_NAME:
        return name
    digest = hashlib.sha256(overrides.encode()).hexdigest()[:12]
    head = name.encode()[: MAX_NAME - 13].decode(errors="ignore")
    return f"{head}-{digest}"


def register() -> None:
    if not OmegaConf.has_resolver("sparsed_dirname"):
        OmegaConf.register_new_resolver("sparsed_dirname", dirname)


register()  # at import: a config unpickled on a cluster node imports sparsed.config, which imports this
