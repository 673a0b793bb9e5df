"""Root-only JSON files written whole: the claims' CDI specs and the checkpoint both hold grants."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_private_json(path: Path, doc: object, **dump_options) -> None:
    """Write ``doc`` as JSON to ``path``, mode 0600, synced and renamed into place (a reader, such as
    containerd's CDI watcher, never sees half a file; a link planted at the temporary name is not
    followed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out, **dump_options)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
