"""Structured logging for every Tessera daemon: structlog, JSON by default, readable on a terminal.

Each log call names one event (``log.info("device_registered", resource=...)``): the event name is
the thing that happened, the keyword arguments are its facts.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[str, ...] = ("auto", "json", "console")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")


def configure_logging(level: str = "info", fmt: LogFormat = "auto", stream=None) -> None:
    """Set up structlog for this process.

    ``fmt="auto"`` means console output when ``stream`` is a terminal, JSON otherwise (daemons in
    a cluster write to a pipe, so they log JSON unless told otherwise).
    """
    stream = stream if stream is not None else sys.stderr
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    use_console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(component: str, **context) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to a component name (``deviceplugin``, ``extender``, ...).

    The logger is a lazy proxy: module-level loggers made before :func:`configure_logging` still
    follow it.
    """
    return structlog.get_logger(component=component, **context)
