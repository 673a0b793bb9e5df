"""The Tessera exporter: GPU and MIG telemetry with dcgm-exporter's names, attributed to pods."""
