"""A LiteSVM with the GridTokenX reference programs deployed at their real program IDs.

Program IDs come from the ``address`` of each ``idl/<name>.json``; a program is loaded when its
``simulators/chain/programs/<name>.so`` exists (the others are skipped, so a partial checkout still
works). LiteSVM ships the SPL Token, Token-2022 and Associated Token Account programs.

``moved_to`` deploys programs at other IDs (a deployment of one's own, as an operator has with
``chain.program_ids``): the bytecode is relocated, see ``relocate_program``.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import platform
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from gridnode.chain.idl import address_moves

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"
IDL_DIR = ROOT / "idl"


def _idls(idl_dir: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(idl_dir.glob("*.json")):
        idl = json.loads(path.read_text())
        out[idl["metadata"]["name"]] = idl
    return out


def program_ids(idl_dir: Path = IDL_DIR, moved_to: Mapping[str, str | Pubkey] | None = None
                ) -> dict[str, Pubkey]:
    """Program name → program ID, from the IDL files (or ``moved_to``)."""
    out = {name: Pubkey.from_string(idl["address"]) for name, idl in _idls(idl_dir).items()}
    out.update({name: Pubkey.from_string(str(pid)) for name, pid in (moved_to or {}).items()})
    return out


_KEEP: list[mmap.mmap] = []       # the page that holds the code lives as long as the process


def _x87_reset() -> Callable[[], None]:
    """A function that runs ``fninit``: an empty x87 register stack, default control word.

    No C library call empties the x87 stack (glibc's fesetenv keeps the tag word), so the two
    instructions are placed in an executable page of their own.
    """
    if platform.machine() != "x86_64":
        return lambda: None
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(b"\xdb\xe3\xc3")                      # fninit; ret
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    fninit = ctypes.CFUNCTYPE(None)(address)
    _KEEP.append(page)
    return fninit


_reset_x87 = _x87_reset()


def execute(svm: LiteSVM, tx: VersionedTransaction, *, simulate: bool = False) -> Any:
    """Run (or simulate) `tx` in `svm`, then leave the x87 unit as C code expects it.

    Executing the SPL Token programs in LiteSVM leaves values on the x87 register stack (status
    word 0x41: invalid operation, stack fault). SQLite converts REAL literals in SQL text with
    x87 long doubles, so it then reads ``SELECT 42.5`` as NaN and stores NULL even in a NOT NULL
    column. The end-to-end tests run the localnet in the same process as a gridnode store, so
    the stack is emptied after each run. (gridnode itself never loads LiteSVM.)
    """
    try:
        return svm.simulate_transaction(tx) if simulate else svm.send_transaction(tx)
    finally:
        _reset_x87()


_LDDW = 0x18


def relocate_program(so: bytes, moves: Mapping[Pubkey, Pubkey], own_id: Pubkey | None = None) -> bytes:
    """The program with every address in ``moves`` (program IDs, pinned PDAs) replaced by its new
    value, wherever the bytecode holds it: 32 bytes of read-only data, or four ``lddw``
    immediates (one per 8-byte word: how clang materialises a ``static const Pubkey`` it compares
    inline). A program checks its declared ID (4100 DeclaredProgramIdMismatch) and pins addresses
    of other programs, so these constants move with the programs. ValueError when an address is
    found only in part (an encoding this does not know), or ``own_id`` is moved but not found."""
    if not moves:
        return so
    found = {old: [0, 0, 0, 0, 0] for old in moves}   # as data, then per lddw word

    def data(m: re.Match[bytes]) -> bytes:
        old = Pubkey.from_bytes(m.group())
        found[old][0] += 1
        return bytes(moves[old])

    out = bytearray(re.sub(b"|".join(re.escape(bytes(k)) for k in moves), data, so))
    words = {bytes(old)[i:i + 8]: (old, bytes(new)[i:i + 8], 1 + i // 8)
             for old, new in moves.items() for i in range(0, 32, 8)}
    for off in range(0, len(out) - 15, 8):
        if out[off] != _LDDW or out[off + 2:off + 4] != bytes(2) or out[off + 8:off + 12] != bytes(4):
            continue
        hit = words.get(bytes(out[off + 4:off + 8] + out[off + 12:off + 16]))
        if hit is not None:
            old, new_word, index = hit
            out[off + 4:off + 8], out[off + 12:off + 16] = new_word[:4], new_word[4:]
            found[old][index] += 1
    for old, counts in found.items():
        if len(set(counts[1:])) != 1:
            raise ValueError(f"{old} is loaded word by word in an unknown way ({counts[1:]}); "
                             "cannot relocate this program")
    if own_id is not None and own_id in moves and not any(found[own_id]):
        raise ValueError(f"the declared program ID {own_id} is not in the bytecode")
    return bytes(out)


def new_svm(programs_dir: Path = PROGRAMS_DIR, idl_dir: Path = IDL_DIR,
            moved_to: Mapping[str, str | Pubkey] | None = None) -> LiteSVM:
    """A fresh LiteSVM with every built program loaded at its IDL address (or ``moved_to``)."""
    svm = LiteSVM()
    idls = _idls(idl_dir)
    moves = address_moves(idls, moved_to or {})
    for name, idl in idls.items():
        so = programs_dir / f"{name}.so"
        if so.exists():
            pid = Pubkey.from_string(idl["address"])
            svm.add_program(moves.get(pid, pid), relocate_program(so.read_bytes(), moves, pid))
    return svm


def loaded_programs(programs_dir: Path = PROGRAMS_DIR, idl_dir: Path = IDL_DIR,
                    moved_to: Mapping[str, str | Pubkey] | None = None) -> dict[str, Pubkey]:
    """The subset of ``program_ids()`` whose .so file exists."""
    return {n: p for n, p in program_ids(idl_dir, moved_to).items()
            if (programs_dir / f"{n}.so").exists()}
