"""Log lines: key=value by default, JSON on request, context fields such as op_id on every line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gridnode.config.logging import LoggingConfig
from gridnode.log import configure_logging, get_logger, log_context


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("gridnode.noisy").setLevel(logging.NOTSET)


def test_key_value_lines_quote_what_needs_quoting(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(level="info"), stream=out)
    log = get_logger("gridnode.test")
    log.info("reading stored", meter_id="m1", op_id=42, note='say "hi"', ok=True, gone=None)
    log.debug("invisible at info")
    line = out.getvalue().strip()
    assert "\n" not in line
    assert line.startswith("ts=") and line.endswith('note="say \\"hi\\"" ok=true gone=null')
    assert ' level=info logger=gridnode.test event="reading stored" meter_id=m1 op_id=42 ' in line


def test_json_lines_and_operation_context(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(level="debug", format="json"), stream=out)
    log = get_logger("gridnode.outbox").bind(component="sender")
    with log_context(op_id=7):
        log.debug("signed", signature="5xY")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("send failed")
    log.info("idle")
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["signed", "send failed", "idle"]
    assert lines[0]["op_id"] == 7 and lines[0]["signature"] == "5xY"
    assert lines[1]["op_id"] == 7 and lines[1]["error"] == "ValueError: boom"
    assert "Traceback" in lines[1]["traceback"]
    assert "op_id" not in lines[2] and lines[2]["component"] == "sender"


def test_per_logger_levels_and_foreign_records(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(level="warning", levels={"gridnode.noisy": "debug"}),
                      stream=out)
    get_logger("gridnode.noisy").debug("shown")
    get_logger("gridnode.quiet").info("hidden")
    logging.getLogger("pymodbus.client").warning("lib says %s", "hello")
    text = out.getvalue()
    assert "event=shown" in text and "hidden" not in text
    assert 'logger=pymodbus.client event="lib says hello"' in text
