"""Anchor events of a landed transaction, attributed to the instruction that emitted them.

The log of a transaction is a sequence of top-level invocations ("Program <id> invoke [1]" ...
"Program <id> success"). Each top-level instruction's slice of the log is decoded with the IDL of
the program it called (gridnode.chain.idl filters by program and invocation depth), so an event
is attributed to its instruction and from there to its outbox operation, and a CPI'd program or a
forged "Program data:" line from another program is never mistaken for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_INVOKE1 = " invoke [1]"


def top_level_segments(logs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """[(program id, that invocation's log lines)] in execution order."""
    segments: list[tuple[str, list[str]]] = []
    for line in logs:
        if line.startswith("Program ") and line.endswith(_INVOKE1):
            segments.append((line[len("Program "):-len(_INVOKE1)], [line]))
        elif segments:
            segments[-1][1].append(line)
    return segments


def events_by_instruction(logs: Sequence[str], program_ids: Sequence[str],
                          idls_by_program: dict[str, Any]) -> dict[int, list[tuple[str, str, dict]]]:
    """ix index -> [(program id, event name, fields)] for the instructions of a transaction.

    `program_ids` lists the program of each instruction in order. Instructions that log no
    invocation (the runtime may omit builtins) are matched by skipping to the next segment of the
    same program.
    """
    segments = top_level_segments(logs)
    out: dict[int, list[tuple[str, str, dict]]] = {}
    pos = 0
    for ix_index, program in enumerate(program_ids):
        found = None
        for j in range(pos, len(segments)):
            if segments[j][0] == program:
                found = j
                break
        if found is None:
            continue
        pos = found + 1
        idl = idls_by_program.get(program)
        if idl is None:
            continue
        decoded = idl.decode_events(segments[found][1], depth=1)
        if decoded:
            out[ix_index] = [(program, name, dict(fields)) for name, fields in decoded]
    return out


def jsonable(value: Any) -> Any:
    """Event fields as JSON: pubkeys and enums as strings, ints as ints."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
