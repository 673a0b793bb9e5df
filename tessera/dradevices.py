"""The names Tessera's DRA driver publishes under, shared with what reads its objects (the extender's
scoring, ``tessera inspect``): the driver, its device modes, its DeviceClasses and its health taint."""

from __future__ import annotations

DRIVER_NAME = "gpu.tessera.io"
MODE_EXCLUSIVE, MODE_MPS, MODE_MIG, MODE_TIMESLICE = "exclusive", "mps", "mig", "timeslice"
CLASS_GPU, CLASS_MPS, CLASS_TIMESLICE, CLASS_MIG = (DRIVER_NAME, f"mps.{DRIVER_NAME}", f"timeslice.{DRIVER_NAME}",
                                                    f"mig.{DRIVER_NAME}")
UNHEALTHY_TAINT = f"{DRIVER_NAME}/unhealthy"   # a device's taint key while it is unhealthy (value: the reason)
