"""Model-heavy pod lists: the trace's default list resampled so that a chosen share of its GPU tasks
name the GPU models they accept (``gpu_spec``), for tuning and testing placement where many pods
have no choice of model (issue 21). The trace itself has one such list, ``gpuspec10`` (about 10 %
of GPU tasks); these go further.

Recipe (``build``), deterministic for a share ``p`` and a seed:

1. From ``random.Random(seed)``: draw as many rows as the default list has, with replacement, from
   the default list (every column kept; a row's name gets ``.<position>`` so names stay unique).
2. Each drawn GPU task (``num_gpu >= 1``), in order, then carries a ``gpu_spec`` with probability
   ``p`` (one ``rng.random() < p`` per GPU task); CPU-only tasks never do (the trace gives them none,
   and a spec means nothing without a GPU). ``p`` is a share of GPU tasks, as the 10 of gpuspec10 is.
3. The spec is drawn (``rng.choices``) from the ``gpu_spec`` values that the gpuspec10 list's own
   spec'd tasks of the same GPU shape carry, with their frequencies there: shapes are a share of one
   GPU (``gpu_milli < 1000``), one whole GPU, several GPUs. So a shared task mostly gets the models
   shared tasks name in the trace (P100, T4), a multi-GPU task those of multi-GPU tasks (G2), and
   every spec value is one the trace has.

Names (``parse_name``): ``modelheavy<P>`` is share ``P`` % with seed ``MODELHEAVY_SEED`` (2023);
``modelheavy<P>s<SEED>`` another seed. ``MODELHEAVY_LISTS`` are the ones the replay benchmark runs
(``modelheavy30``, ``modelheavy50``). ``simcluster.trace.load_tasks(trace_dir, name)`` builds them
from ``openb_pod_list_default.csv`` and ``openb_pod_list_gpuspec10.csv`` of the trace.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

MODELHEAVY_SEED = 2023
MODELHEAVY_LISTS = ("modelheavy30", "modelheavy50")
BASE_LIST = "default"      # the list resampled
SPEC_LIST = "gpuspec10"    # the list whose spec'd tasks give the spec values and their frequencies
_NAME = re.compile(r"modelheavy(\d{1,3})(?:s(\d+))?")

Row = dict[str, str]


def parse_name(name: str) -> tuple[float, int] | None:
    """(share of GPU tasks with a spec, seed) of a model-heavy list's name; None for other names."""
    m = _NAME.fullmatch(name)
    if m is None or int(m.group(1)) > 100:
        return None
    return int(m.group(1)) / 100, int(m.group(2)) if m.group(2) is not None else MODELHEAVY_SEED


def gpu_shape(row: Row) -> str | None:
    """The GPU shape a spec is drawn for: ``share``, ``one`` (whole GPU), ``multi``; None without GPUs."""
    num_gpu = int(row["num_gpu"])
    if num_gpu == 0:
        return None
    if num_gpu == 1:
        return "share" if int(row["gpu_milli"]) < 1000 else "one"
    return "multi"


def spec_frequencies(spec_rows: Sequence[Row]) -> dict[str, Counter[str]]:
    """Per GPU shape, how often each ``gpu_spec`` value occurs among the rows that carry one."""
    out: dict[str, Counter[str]] = {}
    for row in spec_rows:
        spec = row.get("gpu_spec") or ""
        shape = gpu_shape(row)
        if spec and shape is not None:
            out.setdefault(shape, Counter())[spec] += 1
    return out


def build(base_rows: Sequence[Row], spec_rows: Sequence[Row], share: float, seed: int) -> list[Row]:
    """A model-heavy list by the recipe in the module docstring: ``base_rows`` resampled, then GPU
    tasks given a spec with probability ``share``, drawn per shape as ``spec_rows`` carry them."""
    freqs = spec_frequencies(spec_rows)
    if not freqs:
        raise ValueError("the spec list has no task with a gpu_spec")
    overall: Counter[str] = sum(freqs.values(), Counter())
    tables = {shape: (list(c), list(c.values())) for shape, c in freqs.items()}
    fallback = (list(overall), list(overall.values()))
    rng = random.Random(seed)
    drawn = [dict(row) for row in rng.choices(base_rows, k=len(base_rows))]
    for i, row in enumerate(drawn):
        row["name"] = f"{row['name']}.{i}"
        row["gpu_spec"] = ""
        shape = gpu_shape(row)
        if shape is not None and rng.random() < share:
            values, weights = tables.get(shape, fallback)
            row["gpu_spec"] = rng.choices(values, weights)[0]
    return drawn
