"""Log lines: key=value by default, JSON on request, a bound logger's fields on each of its lines."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest

from gridnode.config.logging import LoggingConfig
from gridnode.log import LIBRARY_LEVELS, Episode, configure_logging, get_logger


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ["gridnode.noisy", "aiohttp", "httpx", *LIBRARY_LEVELS]:
        logging.getLogger(name).setLevel(logging.NOTSET)


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


def test_json_lines_and_bound_fields(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(level="debug", format="json"), stream=out)
    log = get_logger("gridnode.outbox").bind(component="sender")
    op = log.bind(op_id=7)
    op.debug("signed", signature="5xY")
    try:
        raise ValueError("boom")
    except ValueError:
        op.exception("send failed")
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


def test_library_request_logs_are_quiet_at_info_unless_asked_for(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(level="info"), stream=out)
    logging.getLogger("httpx").info('HTTP Request: POST http://rpc/ "HTTP/1.1 200 OK"')
    logging.getLogger("aiohttp.access").info("GET /health 200")
    logging.getLogger("httpx").warning("lib warns")
    assert "HTTP Request" not in out.getvalue() and "GET /health" not in out.getvalue()
    assert "lib warns" in out.getvalue()
    # [logging] levels raises a library again, by its name or a parent's.
    out = io.StringIO()
    configure_logging(LoggingConfig(level="info", levels={"httpx": "debug", "aiohttp": "info"}),
                      stream=out)
    logging.getLogger("httpx").debug("HTTP Request: POST")
    logging.getLogger("aiohttp.access").info("GET /health 200")
    assert "HTTP Request: POST" in out.getvalue() and "GET /health 200" in out.getvalue()
    # Never louder than the root: at error, a library warning stays out.
    out = io.StringIO()
    configure_logging(LoggingConfig(level="error"), stream=out)
    logging.getLogger("httpx").warning("lib warns")
    assert out.getvalue() == ""


def test_an_episode_is_logged_when_it_begins_while_it_lasts_and_when_it_ends(
        restore_root: None) -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(level="info", format="json"), stream=out)
    outage = Episode(get_logger("gridnode.test"), "chain unreachable", "chain reachable again",
                     summary_every_s=0.2)
    outage.cleared()                       # nothing began: nothing to say
    outage.occurred(error="refused")       # began
    outage.occurred(error="refused")       # within the summary interval: silent
    time.sleep(0.25)
    outage.occurred(error="refused")       # ongoing
    outage.occurred(error="refused")       # silent
    time.sleep(0.25)
    outage.occurred(error="reset")         # ongoing, with the latest fields
    outage.cleared()
    outage.cleared()                       # said once
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [(x["level"], x["event"], x["state"]) for x in lines] == [
        ("warning", "chain unreachable", "began"),
        ("warning", "chain unreachable", "ongoing"),
        ("warning", "chain unreachable", "ongoing"),
        ("info", "chain reachable again", "ended")]
    assert [x.get("error") for x in lines] == ["refused", "refused", "reset", None]
    assert 0.2 <= lines[1]["duration_s"] < lines[2]["duration_s"] <= lines[3]["duration_s"]
    assert [x.get("occurrences") for x in lines] == [None, 3, 5, 5] and not outage.active
