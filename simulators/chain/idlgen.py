"""Write C headers from the Anchor IDL files so the C programs and Python read one definition.

For each ``idl/<program>.json`` this writes ``idl_<program>.h`` with, all prefixed by the upper-case
program name: the program ID, instruction / account / event discriminators as little-endian u64
constants (``ORACLE_IX_SUBMIT_METER_READING``, ``ORACLE_ACC_ORACLE_DATA``,
``ORACLE_EV_METER_READING_SUBMITTED``), account layouts (``ORACLE_ORACLE_DATA_OFF_ACTIVE`` for every
field at a fixed offset, ``..._MIN_SIZE`` with empty strings/vectors/options), error numbers
(``ORACLE_ERR_ORACLE_INACTIVE``) and enum variants (``REGISTRY_METER_STATUS_ACTIVE``,
``REGISTRY_METER_STATUS_COUNT``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from solders.pubkey import Pubkey

_FIXED = {"bool": 1, "u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4, "u64": 8, "i64": 8,
          "u128": 16, "i128": 16, "pubkey": 32}


def upper_snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", s)
    return s.upper().lstrip("_")


def _size(ty, types: dict) -> tuple[int, bool]:
    """(minimum encoded size, whether the size is fixed) of an IDL type."""
    if isinstance(ty, str):
        if ty in _FIXED:
            return _FIXED[ty], True
        if ty in ("string", "bytes"):
            return 4, False
        raise ValueError(f"unsupported IDL type {ty!r}")
    if "defined" in ty:
        t = types[ty["defined"]["name"]]["type"]
        if t["kind"] == "enum":
            fixed = all("fields" not in v for v in t["variants"])
            return 1, fixed
        total, fixed = 0, True
        for f in t["fields"]:
            n, fx = _size(f["type"], types)
            total += n
            fixed = fixed and fx
        return total, fixed
    if "option" in ty:
        return 1, False
    if "vec" in ty:
        return 4, False
    if "array" in ty:
        inner, count = ty["array"]
        n, fx = _size(inner, types)
        return n * count, fx
    raise ValueError(f"unsupported IDL type {ty!r}")


def _c_string(text: str) -> str:
    """A C string literal (ASCII; anything else as octal escapes)."""
    out = []
    for b in text.encode():
        ch = chr(b)
        out.append(f"\\{ch}" if ch in '"\\' else ch if 32 <= b < 127 else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _u64(disc: list[int]) -> str:
    return f"0x{int.from_bytes(bytes(disc), 'little'):016x}UL"


def render(idl: dict) -> str:
    name = idl["metadata"]["name"]
    p = upper_snake(name)
    types = {t["name"]: t for t in idl.get("types", [])}
    key = ", ".join(str(b) for b in bytes(Pubkey.from_string(idl["address"])))
    out = [f"/* Generated from idl/{name}.json by simulators/chain/idlgen.py; do not edit. */",
           "#pragma once", '#include "sbf_anchor.h"', "",
           f"static const Pubkey {p}_PROGRAM_ID __attribute__((unused)) = {{{{{key}}}}};", ""]
    for ix in idl["instructions"]:
        out.append(f"#define {p}_IX_{upper_snake(ix['name'])} {_u64(ix['discriminator'])}")
    out.append("")
    for acc in idl.get("accounts", []):
        a = upper_snake(acc["name"])
        out.append(f"#define {p}_ACC_{a} {_u64(acc['discriminator'])}")
        off, fixed = 8, True
        for f in types[acc["name"]]["type"]["fields"]:
            if fixed:
                out.append(f"#define {p}_{a}_OFF_{upper_snake(f['name'])} {off}")
            n, fx = _size(f["type"], types)
            off += n
            fixed = fixed and fx
        out.append(f"#define {p}_{a}_MIN_SIZE {off}")
    out.append("")
    for ev in idl.get("events", []):
        out.append(f"#define {p}_EV_{upper_snake(ev['name'])} {_u64(ev['discriminator'])}")
    out.append("")
    for err in idl.get("errors", []):
        out.append(f"#define {p}_ERR_{upper_snake(err['name'])} {err['code']}")
    out.append("")
    out.append("/* Name and message of this program's errors (for GX_ENTRYPOINT). */")
    out.append(f"GX_FN bool {p}_error_text(u64 code, ErrorText *t) {{")
    out.append("  switch (code) {")
    for err in idl.get("errors", []):
        out.append(f"    case {err['code']}: t->name = {_c_string(err['name'])}; "
                   f"t->msg = {_c_string(err.get('msg', err['name']))}; return true;")
    out.append("    default: return false;")
    out.append("  }")
    out.append("}")
    out.append("")
    for t in idl.get("types", []):
        if t["type"]["kind"] != "enum":
            continue
        e = upper_snake(t["name"])
        for i, v in enumerate(t["type"]["variants"]):
            out.append(f"#define {p}_{e}_{upper_snake(v['name'])} {i}")
        out.append(f"#define {p}_{e}_COUNT {len(t['type']['variants'])}")
    return "\n".join(out) + "\n"


def write_headers(idl_dir: Path, out_dir: Path) -> list[Path]:
    """Render every ``idl_dir/*.json`` into ``out_dir/idl_<name>.h``; returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(idl_dir.glob("*.json")):
        idl = json.loads(path.read_text())
        target = out_dir / f"idl_{idl['metadata']['name']}.h"
        text = render(idl)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        written.append(target)
    return written
