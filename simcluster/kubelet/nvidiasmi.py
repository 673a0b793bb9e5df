"""``nvidia-smi`` for containers on a simulated node, as NVIDIA's container toolkit puts the driver's own
into a GPU container: ``nvidia-smi -L`` lists the GPUs and MIG devices the container was given
(``NVIDIA_VISIBLE_DEVICES``, as the device plugin's Allocate set it), numbered from 0 as the real one
numbers them inside a container, with the node's fake-NVML models and UUIDs. A busybox shell script:
the containers' root filesystem is busybox.
"""

from __future__ import annotations

from tessera.fakenvml.description import NodeDescription

PATH_IN_CONTAINER = "/usr/bin/nvidia-smi"

_SCRIPT = r"""#!/bin/sh
# nvidia-smi of a simulated node (Tessera's simcluster): "nvidia-smi -L" lists the GPUs and MIG devices
# this container was given (NVIDIA_VISIBLE_DEVICES), numbered from 0 as in a container on a real node.
visible=",${NVIDIA_VISIBLE_DEVICES:-},"
case "$visible" in ",," | ",void," | ",none,") echo "No devices were found"; exit 6;; esac
case "$1" in ""|-L|--list-gpus) ;; *) echo "nvidia-smi (simulated node): only -L is simulated; listing" >&2;; esac
index=0
while IFS='|' read -r uuid name migs; do
  whole=0
  case "$visible" in ",all," | *",$uuid,"*) whole=1;; esac
  devices=""
  number=0
  for mig in $migs; do
    profile=${mig%%=*}
    id=${mig#*=}
    case "$visible" in *",$id,"*) shown=1;; *) shown=$whole;; esac
    if [ "$shown" = 1 ]; then
      devices="$devices$(printf '  MIG %-12s Device %2d: (UUID: %s)' "$profile" "$number" "$id")
"
      number=$((number + 1))
    fi
  done
  if [ "$whole" = 1 ] || [ -n "$devices" ]; then
    printf 'GPU %d: %s (UUID: %s)\n' "$index" "$name" "$uuid"
    printf '%s' "$devices"
    index=$((index + 1))
  fi
done <<'GPUS'
@GPUS@
GPUS
if [ "$index" = 0 ]; then echo "No devices were found"; exit 6; fi
"""


def nvidia_smi_script(description: NodeDescription) -> str:
    """The script, with the node's GPUs (UUID, model, MIG devices) written in."""
    lines = []
    for gpu in description.gpus:
        migs = " ".join(f"{m.placed.profile.name}={m.uuid}" for m in gpu.mig)
        lines.append(f"{gpu.uuid}|{gpu.model.nvml_name}|{migs}")
    return _SCRIPT.replace("@GPUS@", "\n".join(lines))
