"""The Tessera OCI hook: verifies a container's GPU grant at start and keeps every other GPU out.

Imports nothing heavy (no grpc, kubernetes, pynvml, structlog): it runs at every container start.
Run by the container runtime as ``tessera-hook createRuntime|prestart|poststop`` (``hook.main``). Public
names: :func:`run_stage` (one stage on an OCI state), :class:`HookSettings` (its flags), and what it
raises: :class:`Refused` (the container must not start) and :class:`HookFailure` (bad input).
"""

from tessera.exports import public_names

__getattr__, __all__ = public_names(__name__, {
    "run_stage": "hook.main", "HookSettings": "hook.settings", "Refused": "hook.errors", "HookFailure": "hook.errors",
})
