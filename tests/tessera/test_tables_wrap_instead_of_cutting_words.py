"""The tables of the demo and of ``tessera inspect`` wrap a long cell at spaces or end a too-long word with
'…': a reader never gets a word cut in two without a sign. The occupancy picture's labels do the same,
and its fragmentation figure says in one line what it means."""

from __future__ import annotations

import json

from tessera.table import ELLIPSIS, render_table, shorten, wrap_cell
from tessera_cli.clusterview import ClusterView, GpuFree, GpuView, Holder, NodeView
from tessera_cli.demo import WRAPPED_COLUMNS
from tessera_cli.demo_report import _grant_summary
from tessera_cli.inspect_table import render_text

HOOK_EVENT = ("Failed: Error: tessera-hook: pod default/gpu-without-a-grant container main has no Tessera grant "
              "but bind-mounts /tmp/tessera-_wz376pw/host-dev/nvidia0, which holds a GPU: refused (ask for a GPU "
              "resource, or remove the mount)")
REFUSAL = ('admission webhook "pods.tessera.io" denied the request: container \'main\': nvidia.com/mps-memory '
           'needs nvidia.com/mps-core on the same GPU; add nvidia.com/mps-core (e.g. 25) to its limits')


def _column(table: str, header: str) -> list[str]:
    """The cells printed under ``header``, line by line (continuation lines included)."""
    lines = table.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line) <= {"-", " "} and line.strip())
    start = lines[rule - 1].index(header)
    width = len(lines[rule][start:].split(" ")[0])
    return [line[start:start + width].strip() for line in lines[rule + 1:]]


def _words_kept(cells: list[str], text: str) -> bool:
    return " ".join(c for c in cells if c).split() == text.split()


def test_a_long_cell_wraps_at_spaces_and_keeps_every_word():
    table = render_table(["POD", "PHASE", "WHAT HAPPENED"], [["gpu-without-a-grant", "Failed", HOOK_EVENT],
                                                           ["mps-50-8", "Running", "Started: Container started"]],
                         max_widths=WRAPPED_COLUMNS)
    cells = _column(table, "WHAT HAPPENED")
    assert all(len(c) <= WRAPPED_COLUMNS["WHAT HAPPENED"] for c in cells)
    assert _words_kept(cells[:-1], HOOK_EVENT) and cells[-1] == "Started: Container started"
    lines = table.splitlines()
    assert lines[2].split()[:2] == ["gpu-without-a-grant", "Failed"]       # the row's own line
    assert lines[3].startswith(" ") and "Failed" not in lines[3]            # a continuation, other cells blank
    assert lines[-1].split()[:2] == ["mps-50-8", "Running"]


def test_a_word_longer_than_its_column_ends_with_an_ellipsis():
    path = "/var/lib/kubelet/device-plugins/tessera-mps-very-long-socket-name.sock"
    lines = wrap_cell(f"cannot reach {path} now", 30)
    assert lines == ["cannot reach", shorten(path, 30), "now"]
    assert lines[1].endswith(ELLIPSIS) and len(lines[1]) == 30 and path.startswith(lines[1][:-1])
    assert shorten("mps-30-20", 14) == "mps-30-20"
    assert shorten("between-assignment-and-binding", 14) == "between-assig…"


def test_without_widths_a_table_is_what_it_was():
    table = render_table(["A", "B"], [["x", 12], ["longer text here", 3]], title="T")
    assert table == "T\nA                 B\n----------------  --\nx                 12\nlonger text here   3"


def test_the_demo_refusal_and_node_notes_are_whole():
    header = "REFUSED AT CREATION (what kubectl apply shows)"
    table = render_table(["POD", header], [["memory-without-cores", REFUSAL]], max_widths=WRAPPED_COLUMNS)
    cells = _column(table, header)
    assert len(cells) > 1 and _words_kept(cells, REFUSAL)
    assert "denied the request" in table.splitlines()[2]  # what the reader looks for is on the row's line

    note = "no tessera.io/gpu-inventory annotation (no Tessera device plugin has run on this node) " * 3
    view = ClusterView("https://k:6443", (NodeView("bare", (), problem=note.strip()),), (), "given", 0.0, {})
    cells = _column(render_text(view).split("Nodes\n", 1)[1], "NOTE")
    assert all(len(c) <= 60 for c in cells) and _words_kept(cells, note)


def test_the_grant_summary_marks_shortened_uuids():
    uuid = "GPU-67ec9965-1111-2222-3333-444455556666"
    record = {"version": 1, "node": "a100-mps", "containers": {"main": {
        "nvidia.com/mps-core": {"gpus": [uuid], "core": 50}, "nvidia.com/mps-memory": {"gpus": [uuid], "memGiB": 8}}}}
    summary = _grant_summary(json.dumps(record))
    assert summary == "GPU-67ec9965… core 50% 8 GiB"


def _view() -> ClusterView:
    holder = Holder("default", "between-assignment-and-binding", "main", "mps", "assigned", core_pct=60,
                    memory_gib=40)
    gpu = GpuView(0, "GPU-0", "NVIDIA A100-SXM4-80GB", 80, "mps", True, "", True, None, {}, (holder,),
                  GpuFree(40.0, core_pct=40, memory_gib=40))
    lost = GpuView(1, "GPU-1", "NVIDIA A100-SXM4-80GB", 80, "mps", False, "fatal Xid 79 (GPU has fallen off the bus)",
                   False, None, {}, (), GpuFree(100.0, whole=True, core_pct=100, memory_gib=80))
    node = NodeView("a100-mps", (gpu, lost), fragmentation_cores=39.6, idle_cores=40.0)
    return ClusterView("https://k:6443", (node,), (), "given", 40.0, {"mps": 40.0})


def test_the_occupancy_picture_says_what_fragmentation_means_and_marks_shortened_labels():
    from tessera_cli.occupancy_png import FRAGMENTATION_CAPTION, occupancy_figure

    fig = occupancy_figure(_view())
    try:
        texts = [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]
        titles = [ax.get_title(loc="left") for ax in fig.axes]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    assert FRAGMENTATION_CAPTION in texts and "\n" not in FRAGMENTATION_CAPTION
    assert FRAGMENTATION_CAPTION.startswith("Fragmentation: idle cores")
    assert "no typical pod" in FRAGMENTATION_CAPTION
    assert titles == ["a100-mps (mps, NVIDIA A100-SXM4-80GB; fragmentation 40 of 40 idle cores)"]
    labels = [t for t in texts if t.endswith(ELLIPSIS)]
    assert "between-assig…" in labels and "fatal Xid 79 (GPU…" in labels


def test_the_demo_s_pod_and_fault_rows_carry_the_whole_text_for_the_table_to_wrap():
    from types import SimpleNamespace

    from kubernetes import client

    from tessera_cli.demo_fault import FaultReport, Reaction, fault_rows
    from tessera_cli.demo_report import pod_rows

    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="gpu-without-a-grant", namespace="tessera-demo"),
                       spec=client.V1PodSpec(node_name="a100-whole", containers=[client.V1Container(
                           name="main", resources=client.V1ResourceRequirements())]),
                       status=client.V1PodStatus(phase="Failed"))
    reason, message = HOOK_EVENT.split(": ", 1)
    core = SimpleNamespace(
        list_namespaced_pod=lambda _ns: SimpleNamespace(items=[pod]),
        list_namespaced_event=lambda _ns, **_: SimpleNamespace(items=[SimpleNamespace(reason=reason, message=message)]))
    assert pod_rows(core)[0][-1] == HOOK_EVENT
    after = "placed on 5 healthy GPUs, not the failed one: " + "GPU-346997f4 GPU-045889eb " * 5
    report = FaultReport("a100-whole", 2, "GPU-2", [Reaction("scheduling", "pod", "", after, 1.0)])
    assert fault_rows(report)[0][3] == after
