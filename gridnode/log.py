"""Structured logging: an event text plus key=value fields, one line per event.

Built on the standard ``logging`` module so the libraries' records (pymodbus, paho, aiohttp) go
through the same handler and format. Default lines are ``key=value`` (easy to read in
``journalctl``, easy to grep); ``format = "json"`` writes one JSON object per line for log
shippers. Fields are keyword arguments of each call (``log.info("sent", op_id=42)``); a logger
made with ``bind(...)`` adds its fields to each of its lines.

Two rules keep the volume down on an SD card under journald. The libraries' per-request and
per-connection logs (the HTTP client logs every RPC call at INFO) are set to WARNING by
``configure_logging`` (``LIBRARY_LEVELS``); ``[logging] levels`` raises them again for debugging,
e.g. ``levels = {httpx = "debug"}``. And a condition that lasts, such as an RPC outage or a full
disk, is logged as an ``Episode``: when it begins, every ``SUMMARY_EVERY_S`` while it lasts, and
when it ends, never once per retry.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from gridnode.config.logging import LoggingConfig

_FIELDS = "gridnode_fields"

# Libraries that log each request, connection or job run at INFO, and the level they get.
LIBRARY_LEVELS: dict[str, str] = {
    "httpx": "warning",                  # "HTTP Request: POST ..." for every RPC call (solana-py)
    "httpcore": "warning",               # connection and request trace
    "aiohttp.access": "warning",         # one line per HTTP request served
    "aiohttp.client": "warning",
    "websockets": "warning",             # connection opened / closed, per WebSocket
    "apscheduler.executors": "warning",  # "Running job" / "executed successfully", per run
}
# How often a lasting condition (Episode) is summarized while it lasts.
SUMMARY_EVERY_S = 600.0


class Logger:
    """A thin front to a stdlib logger that takes fields as keyword arguments."""

    __slots__ = ("_logger", "_bound")

    def __init__(self, logger: logging.Logger, bound: Mapping[str, Any] | None = None) -> None:
        self._logger = logger
        self._bound = dict(bound or {})

    @property
    def name(self) -> str:
        return self._logger.name

    def bind(self, **fields: Any) -> Logger:
        """A logger that adds `fields` to each of its lines."""
        return Logger(self._logger, {**self._bound, **fields})

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - mirrors logging.Logger
        return self._logger.isEnabledFor(level)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: Any = None) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, exc_info=exc_info, stacklevel=3,
                             extra={_FIELDS: {**self._bound, **fields}})

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        self._log(logging.CRITICAL, event, fields)

    def exception(self, event: str, *, exc_info: BaseException | bool = True,
                  **fields: Any) -> None:
        """An error line with the traceback of `exc_info` (default: the exception being handled)."""
        self._log(logging.ERROR, event, fields, exc_info=exc_info)


def get_logger(name: str) -> Logger:
    return Logger(logging.getLogger(name))


class Episode:
    """A condition that lasts (an RPC outage, a full disk), logged as a state, not per occurrence.

    ``occurred`` logs ``began`` the first time, then a summary (``state=ongoing``, how long, how
    many occurrences, the latest fields) at most every ``SUMMARY_EVERY_S``; ``cleared`` logs
    ``ended`` with the duration and the count, once. A loop retrying every second during a
    two-minute outage writes two lines instead of 120.
    """

    def __init__(self, log: Logger, began: str, ended: str, *, level: str = "warning",
                 summary_every_s: float | None = None) -> None:
        self.log = log
        self.began = began
        self.ended = ended
        self.level = logging.getLevelNamesMapping()[level.upper()]
        self.summary_every_s = summary_every_s
        self.since: float | None = None
        self.occurrences = 0
        self._summarized_at = 0.0

    @property
    def active(self) -> bool:
        return self.since is not None

    def occurred(self, **fields: Any) -> None:
        now = time.monotonic()
        self.occurrences += 1
        if self.since is None:
            self.since = self._summarized_at = now
            self.log._log(self.level, self.began, {"state": "began", **fields})
            return
        every = SUMMARY_EVERY_S if self.summary_every_s is None else self.summary_every_s
        if now - self._summarized_at >= every:
            self._summarized_at = now
            self.log._log(self.level, self.began, {
                "state": "ongoing", "duration_s": round(now - self.since, 1),
                "occurrences": self.occurrences, **fields})

    def cleared(self, **fields: Any) -> None:
        if self.since is None:
            return
        self.log._log(min(self.level, logging.INFO), self.ended, {
            "state": "ended", "duration_s": round(time.monotonic() - self.since, 1),
            "occurrences": self.occurrences, **fields})
        self.since = None
        self.occurrences = 0


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    return dict(getattr(record, _FIELDS, {}))


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=gridnode.x event="reading stored" meter_id=m1 op_id=42``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"ts={_timestamp(record)}", f"level={record.levelname.lower()}",
                 f"logger={record.name}", f"event={_kv_value(record.getMessage())}"]
        parts += [f"{key}={_kv_value(value)}" for key, value in _record_fields(record).items()]
        if record.exc_info and record.exc_info[0] is not None:
            exc = record.exc_info[1]
            parts.append(f"error={_kv_value(f'{type(exc).__name__}: {exc}')}")
            line = " ".join(parts)
            return line + "\n" + self.formatException(record.exc_info)
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with ts, level, logger, event and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower(),
                               "logger": record.name, "event": record.getMessage()}
        for key, value in _record_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _kv_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


def configure_logging(cfg: LoggingConfig | None = None, stream: IO[str] | None = None) -> None:
    """Install the one handler on the root logger with the configured format and levels.

    The libraries of ``LIBRARY_LEVELS`` get their level (never below the root's), unless
    ``cfg.levels`` names them or one of their parents, which then decides.
    """
    cfg = cfg or LoggingConfig()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if cfg.format == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(cfg.level.upper())
    for name, level in LIBRARY_LEVELS.items():
        if any(name == own or name.startswith(own + ".") for own in cfg.levels):
            logging.getLogger(name).setLevel(logging.NOTSET)   # the configured parent decides
        else:
            logging.getLogger(name).setLevel(max(logging.getLevelNamesMapping()[level.upper()],
                                                 root.level))
    for name, level in cfg.levels.items():
        logging.getLogger(name).setLevel(level.upper())
