"""Helpers for tests that run Tessera's NVML layer on a fake GPU node."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_node(folder: Path, doc: dict, name: str = "node.yaml") -> Path:
    """Write a node description document and return its path."""
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def one_model(folder: Path, model: str, count: int = 2, **gpu) -> Path:
    """A node of ``count`` GPUs of one model; extra keys go on the GPU entry."""
    return write_node(folder, {"node": "test-node", "gpus": [{"model": model, "count": count, **gpu}]})
