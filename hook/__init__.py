"""The Tessera OCI hook: verifies a container's GPU grant at start and keeps every other GPU out.

Imports nothing heavy (no grpc, kubernetes, pynvml, structlog): it runs at every container start.
"""
