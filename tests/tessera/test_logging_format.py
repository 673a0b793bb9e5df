"""Logs are structlog: JSON by default (one event name per thing that happened), console on a terminal."""

from __future__ import annotations

import io
import json

import pytest

from tessera.log import configure_logging, get_logger


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_by_default_on_a_pipe():
    out = io.StringIO()
    configure_logging("info", "auto", stream=out)
    get_logger("deviceplugin", node="n1").info("device_registered", resource="nvidia.com/gpu", count=8)
    record = json.loads(out.getvalue().strip())
    assert record["event"] == "device_registered"
    assert record["component"] == "deviceplugin"
    assert record["node"] == "n1" and record["resource"] == "nvidia.com/gpu" and record["count"] == 8
    assert record["level"] == "info" and record["timestamp"].endswith("Z")


def test_console_on_a_terminal_and_level_filtering():
    out = FakeTerminal()
    configure_logging("warning", "auto", stream=out)
    log = get_logger("extender")
    log.info("not_shown")
    log.warning("node_dropped", node="n2")
    text = out.getvalue()
    assert "not_shown" not in text
    assert "node_dropped" in text and "node" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="log level 'loud'"):
        configure_logging("loud")
    with pytest.raises(ValueError, match="log format 'xml'"):
        configure_logging("info", "xml")  # type: ignore[arg-type]


def test_a_logger_made_before_configuration_follows_it():
    early = get_logger("exporter")
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    early.info("scrape_served")
    assert json.loads(out.getvalue())["event"] == "scrape_served"
