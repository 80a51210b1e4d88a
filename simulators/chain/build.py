"""Build every ``simulators/chain/programs/<name>.c`` into ``<name>.so`` (``make programs``).

clang 14 → LLVM bitcode → llc 14 (``-mcpu=v2``, ``.stack_sizes``) → BPF object → the project's
linker (simulators/chain/linker.py). Headers are generated from ``idl/*.json`` first. Intermediates
go to ``simulators/chain/build/`` (ignored by git); the output is byte-for-byte reproducible.

    python -m simulators.chain.build            # all programs
    python -m simulators.chain.build oracle     # some
    python -m simulators.chain.build --check    # rebuild in a temporary directory and compare
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from simulators.chain.idlgen import write_headers
from simulators.chain.linker import LinkError, link

ROOT = Path(__file__).resolve().parents[2]
CHAIN = Path(__file__).resolve().parent
PROGRAMS = CHAIN / "programs"
BUILD = CHAIN / "build"
IDL_DIR = ROOT / "idl"

CLANG = os.environ.get("CLANG", "clang-14")
LLC = os.environ.get("LLC", "llc-14")
CFLAGS = ["-target", "bpf", "-mcpu=v2", "-O2", "-fno-builtin", "-ffreestanding", "-nostdlib",
          "-Wall", "-Werror", "-std=c11"]
# llc reports frames over the upstream BPF limit of 512 B as an error but still writes the object;
# the linker enforces the SBF limit of 4096 B from .stack_sizes instead.
_STACK_LIMIT_MSG = "Looks like the BPF stack limit"


class BuildError(Exception):
    """A program failed to compile or link; the message carries the tool output."""


def toolchain_available() -> bool:
    return shutil.which(CLANG) is not None and shutil.which(LLC) is not None


def sources() -> list[str]:
    return sorted(p.stem for p in PROGRAMS.glob("*.c"))


def build_program(name: str, build_dir: Path = BUILD) -> bytes:
    """Compile and link one program; returns the .so bytes (nothing is written to programs/)."""
    inc = build_dir / "include"
    write_headers(IDL_DIR, inc)
    bc = build_dir / f"{name}.bc"
    src = PROGRAMS / f"{name}.c"
    # Relative paths keep the bitcode independent of where the repository lives.
    cmd = [CLANG, *CFLAGS, "-I", os.path.relpath(CHAIN / "include", ROOT),
           "-I", os.path.relpath(inc, ROOT) if inc.is_relative_to(ROOT) else str(inc),
           "-emit-llvm", "-c", os.path.relpath(src, ROOT), "-o", str(bc)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise BuildError(f"{name}: clang failed\n{r.stderr}")
    obj_path = build_dir / f"{name}.o"
    # stdout must be a regular file: on error llc deletes an -o file and writes nothing to a pipe.
    with obj_path.open("wb") as out:
        r = subprocess.run([LLC, "-march=bpf", "-mcpu=v2", "-stack-size-section", "-filetype=obj",
                            "-o", "-", str(bc)], cwd=ROOT, stdout=out, stderr=subprocess.PIPE)
    stderr = r.stderr.decode(errors="replace")
    errors = [line for line in stderr.splitlines() if "error" in line and _STACK_LIMIT_MSG not in line]
    obj = obj_path.read_bytes()
    if errors or not obj:
        raise BuildError(f"{name}: llc failed\n{stderr}")
    try:
        return link([(f"{name}.o", obj)])
    except LinkError as exc:
        raise BuildError(f"{name}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="programs to build (default: every programs/*.c)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild in a temporary directory and compare with the committed .so files")
    args = ap.parse_args(argv)
    if not toolchain_available():
        print(f"{CLANG} / {LLC} not found (apt install clang-14 llvm-14)", file=sys.stderr)
        return 2
    names = args.names or sources()
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        build_dir = Path(tmp) if args.check else BUILD
        build_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            try:
                so = build_program(name, build_dir)
            except BuildError as exc:
                print(exc, file=sys.stderr)
                return 1
            target = PROGRAMS / f"{name}.so"
            if args.check:
                same = target.exists() and target.read_bytes() == so
                print(f"{name}: {'identical' if same else 'DIFFERS'} ({len(so)} bytes)")
                status |= 0 if same else 1
            else:
                target.write_bytes(so)
                print(f"{name}: {target.relative_to(ROOT)} ({len(so)} bytes)")
    return status


if __name__ == "__main__":
    sys.exit(main())
