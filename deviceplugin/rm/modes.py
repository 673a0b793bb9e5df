"""Which mode each GPU is in: config default, node label, per-index config; changes wait for a drain.

Precedence, lowest first: ``default_mode``, the Node label ``tessera.io/gpu-mode``, ``gpu_modes``
per index. A GPU with MIG enabled in the driver is in ``mig`` mode whatever is asked (the plugin
does not repartition cards). A change on a GPU that holds live grants waits (``pending``) until
the GPU drains, so running pods keep what they were given.
"""

from __future__ import annotations

from tessera import GPU_MODES
from tessera.gpu import GpuInfo
from tessera.log import get_logger

log = get_logger("deviceplugin")


def desired_modes(gpus: list[GpuInfo], default_mode: str, gpu_modes: dict[int, str],
                  label: str | None) -> dict[int, str]:
    """The mode each GPU should be in now."""
    base = label if label in GPU_MODES else default_mode
    if label and label not in GPU_MODES:
        log.warning("gpu_mode_label_ignored", label=label, allowed=list(GPU_MODES))
    result = {}
    for gpu in gpus:
        mode = gpu_modes.get(gpu.index, base)
        if gpu.mig_enabled:
            mode = "mig"
        elif mode == "mig":
            log.warning("gpu_mig_not_enabled", gpu=gpu.index, uuid=gpu.uuid,
                        reason="mode mig asked but MIG is off in the driver; the GPU is used whole")
            mode = "exclusive"
        result[gpu.index] = mode
    return result


class ModeBook:
    """The active mode of each GPU and the change each one waits for."""

    def __init__(self) -> None:
        self.active: dict[int, str] = {}
        self.pending: dict[int, str] = {}

    def update(self, desired: dict[int, str], busy: set[int]) -> bool:
        """Move each GPU toward ``desired``; GPUs in ``busy`` hold grants and wait. True if anything changed."""
        changed = False
        for index, mode in desired.items():
            current = self.active.get(index)
            if current is None or current == mode or index not in busy:
                if current != mode:
                    if current is not None:
                        log.info("gpu_mode_changed", gpu=index, old=current, new=mode)
                    self.active[index] = mode
                    changed = True
                if self.pending.pop(index, None) is not None:
                    changed = True
            elif self.pending.get(index) != mode:
                self.pending[index] = mode
                log.info("gpu_mode_change_waiting", gpu=index, current=current, wanted=mode,
                         reason="the GPU holds live grants; the change waits until it drains")
                changed = True
        return changed
