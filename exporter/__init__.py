"""The Tessera exporter: GPU and MIG telemetry with dcgm-exporter's names, attributed to pods.

The path of one collection, one module each: :mod:`exporter.podresources` (who holds which
device), :mod:`exporter.records` (the hook's container records), :mod:`exporter.attribution`
(process -> container, use against grant), :mod:`exporter.gpuledger` (mode, health, free capacity),
:mod:`exporter.overuse` (Events and the eviction switch), :mod:`exporter.poller` (the loop),
:mod:`exporter.metrics` (the catalogue, and what cannot be read), :mod:`exporter.collector`
(snapshot -> metric families), :mod:`exporter.server` (``/metrics``, ``/healthz``).

Run as ``tessera-exporter`` (``exporter.main``). Public names: :class:`ExporterSettings`, :class:`Poller`
(the collection loop) and :class:`MetricsServer` (the ``/metrics`` port).
"""

from tessera.exports import public_names

__getattr__, __all__ = public_names(__name__, {
    "ExporterSettings": "exporter.settings", "Poller": "exporter.poller", "MetricsServer": "exporter.server",
})
