"""Kubernetes resource quantities for the extender: ``tessera.quantity``, the one bounded parser."""

from tessera.quantity import MAX_QUANTITY, QuantityError, cpu_millis, memory_bytes, parse_quantity, whole_units

__all__ = ["MAX_QUANTITY", "QuantityError", "cpu_millis", "memory_bytes", "parse_quantity", "whole_units"]
