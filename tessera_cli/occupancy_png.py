"""GPU occupancy per node as a PNG: one panel per node, one bar per GPU, split into the shares its pods
hold; an unhealthy GPU is drawn hatched in red with its reason. Drawn from ``tessera inspect``'s view.
Each panel's title gives the node's fragmentation, and one line under the figure says what it means.
"""

from __future__ import annotations

from pathlib import Path

from tessera_cli.clusterview import ClusterView, GpuView, NodeView
from tessera.table import shorten

_KIND_COLOURS = {"gpu": "#4e79a7", "mig": "#59a14f", "mps": "#f28e2b", "mps-whole": "#e15759",
                 "timeslice": "#b07aa1"}
FRAGMENTATION_CAPTION = ("Fragmentation: idle cores of MPS and whole GPUs (100 per GPU) that no typical pod could use, "
                         "the free pieces being too small or of the wrong kind; lower is better.")


def _shares(gpu: GpuView) -> list[tuple[float, str, str]]:
    """(fraction of the GPU, label, colour) per holder, in the order they hold it."""
    shares = []
    for h in gpu.holders:
        if h.kind == "timeslice":
            total = gpu.free.replicas_total or 1
            fraction = max(h.replicas, 1) / total
        elif h.kind == "mig":
            fraction = (h.memory_gib or 0) / gpu.memory_gib if gpu.memory_gib else 0.0
        else:
            fraction = (h.core_pct if h.core_pct is not None else 100) / 100
        shares.append((min(fraction, 1.0), h.pod, _KIND_COLOURS.get(h.kind, "#9c755f")))
    return shares


def panel_title(node: NodeView) -> str:
    """The node, its mode and model, and its fragmentation of its idle cores."""
    frag = "" if node.fragmentation_cores is None else \
        f"; fragmentation {node.fragmentation_cores:.0f} of {node.idle_cores:.0f} idle cores"
    return f"{node.name} ({node.gpus[0].mode}, {node.gpus[0].model}{frag})"


def occupancy_figure(view: ClusterView):
    """The matplotlib figure of the picture (panels per node, legend, title, the fragmentation caption)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    nodes = [n for n in view.nodes if n.gpus]
    fig, axes = plt.subplots(len(nodes), 1, figsize=(10, 2.1 * max(len(nodes), 1)), squeeze=False)
    for ax, node in zip((a[0] for a in axes), nodes):
        for gpu in node.gpus:
            bottom = 0.0
            for fraction, label, colour in _shares(gpu):
                ax.bar(gpu.index, fraction, bottom=bottom, color=colour, edgecolor="white", width=0.8)
                if fraction >= 0.12:
                    ax.text(gpu.index, bottom + fraction / 2, shorten(label, 14), ha="center", va="center",
                            fontsize=6, color="white")
                bottom += fraction
            if not gpu.healthy:
                ax.bar(gpu.index, 1.0, color="none", edgecolor="#d62728", hatch="///", width=0.8, linewidth=1.5)
                ax.text(gpu.index, 1.02, shorten(gpu.reason or "unhealthy", 18), ha="center", va="bottom",
                        fontsize=6, color="#d62728")
        ax.set_title(panel_title(node), fontsize=9, loc="left")
        ax.set_xlim(-0.6, len(node.gpus) - 0.4)
        ax.set_ylim(0, 1.2)
        ax.set_xticks([g.index for g in node.gpus], [f"GPU {g.index}" for g in node.gpus], fontsize=7)
        ax.set_yticks([0, 0.5, 1.0], ["0", "50%", "100%"], fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.legend(handles=[Patch(color=c, label=k) for k, c in _KIND_COLOURS.items()]
               + [Patch(facecolor="none", edgecolor="#d62728", hatch="///", label="unhealthy")],
               loc="upper right", fontsize=7, ncols=6)
    fig.suptitle("Tessera: GPU occupancy per node (share of each GPU held by pods)", fontsize=10, x=0.01,
                 ha="left")
    fig.text(0.01, 0.005, FRAGMENTATION_CAPTION, fontsize=7, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    return fig


def draw_occupancy(view: ClusterView, path: str | Path) -> Path:
    """Write the PNG to ``path`` and return it."""
    import matplotlib.pyplot as plt

    fig = occupancy_figure(view)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
