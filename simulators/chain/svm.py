"""A LiteSVM with the GridTokenX reference programs deployed at their real program IDs.

Program IDs come from the ``address`` of each ``idl/<name>.json``; a program is loaded when its
``simulators/chain/programs/<name>.so`` exists (the others are skipped, so a partial checkout still
works). LiteSVM ships the SPL Token, Token-2022 and Associated Token Account programs.
"""

from __future__ import annotations

import json
from pathlib import Path

from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"
IDL_DIR = ROOT / "idl"


def program_ids(idl_dir: Path = IDL_DIR) -> dict[str, Pubkey]:
    """Program name → program ID, from the IDL files."""
    out = {}
    for path in sorted(idl_dir.glob("*.json")):
        idl = json.loads(path.read_text())
        out[idl["metadata"]["name"]] = Pubkey.from_string(idl["address"])
    return out


def new_svm(programs_dir: Path = PROGRAMS_DIR, idl_dir: Path = IDL_DIR) -> LiteSVM:
    """A fresh LiteSVM with every built program loaded at its IDL address."""
    svm = LiteSVM()
    for name, pid in program_ids(idl_dir).items():
        so = programs_dir / f"{name}.so"
        if so.exists():
            svm.add_program(pid, so.read_bytes())
    return svm


def loaded_programs(programs_dir: Path = PROGRAMS_DIR, idl_dir: Path = IDL_DIR) -> dict[str, Pubkey]:
    """The subset of ``program_ids()`` whose .so file exists."""
    return {n: p for n, p in program_ids(idl_dir).items() if (programs_dir / f"{n}.so").exists()}
