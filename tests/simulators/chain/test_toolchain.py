"""The C → SBF toolchain: reproducible builds, the ELF the loader needs, and what the linker refuses."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from solders.instruction import Instruction
from solders.pubkey import Pubkey

from simulators.chain import build
from simulators.chain.idlgen import render
from simulators.chain.linker import SYSCALLS, LinkError, link
from simulators.chain.svm import IDL_DIR, PROGRAMS_DIR

from .conftest import Chain

needs_clang = pytest.mark.skipif(not build.toolchain_available(),
                                 reason="clang-14/llc-14 not installed (.ci/run installs them)")


def compile_c(src: str, tmp_path: Path, mcpu: str = "v2") -> bytes:
    c = tmp_path / "t.c"
    c.write_text(src)
    flags = [f if f != "-mcpu=v2" else f"-mcpu={mcpu}" for f in build.CFLAGS if f != "-Werror"]
    subprocess.run([build.CLANG, *flags, "-emit-llvm", "-c", str(c), "-o", str(tmp_path / "t.bc")],
                   check=True, capture_output=True)
    obj = tmp_path / "t.o"
    with obj.open("wb") as out:
        subprocess.run([build.LLC, "-march=bpf", f"-mcpu={mcpu}", "-stack-size-section",
                        "-filetype=obj", "-o", "-", str(tmp_path / "t.bc")], stdout=out,
                       stderr=subprocess.DEVNULL)
    return obj.read_bytes()


@needs_clang
@pytest.mark.parametrize("name", build.sources())
def test_rebuild_is_byte_identical(name: str, tmp_path: Path) -> None:
    assert build.build_program(name, tmp_path) == (PROGRAMS_DIR / f"{name}.so").read_bytes()


@pytest.mark.parametrize("name", build.sources())
def test_shared_object_layout(name: str) -> None:
    with (PROGRAMS_DIR / f"{name}.so").open("rb") as f:
        elf = ELFFile(f)
        assert (elf["e_type"], elf["e_machine"], elf["e_flags"]) == ("ET_DYN", "EM_BPF", 0)
        names = [s.name for s in elf.iter_sections()][1:]
        assert names == [".text", ".rodata", ".dynamic", ".dynsym", ".dynstr", ".rel.dyn", ".shstrtab"]
        text = elf.get_section_by_name(".text")
        assert text["sh_addr"] == text["sh_offset"]
        assert text["sh_addr"] <= elf["e_entry"] < text["sh_addr"] + text["sh_size"]
        syms = {s.name: s for s in elf.get_section_by_name(".dynsym").iter_symbols()}
        assert syms["entrypoint"]["st_value"] == elf["e_entry"]
        undefined = {n for n, s in syms.items() if n and s["st_shndx"] == "SHN_UNDEF"}
        assert undefined <= SYSCALLS
        loads = [p for p in elf.iter_segments() if p["p_type"] == "PT_LOAD"]
        assert len(loads) == 3
        assert [p["p_offset"] for p in loads] == sorted(p["p_offset"] for p in loads)


def test_generated_headers_follow_the_idl() -> None:
    for path in sorted(IDL_DIR.glob("*.json")):
        idl = json.loads(path.read_text())
        header = render(idl)
        consts = dict(re.findall(r"#define (\w+) (\S+)", header))
        prefix = re.sub(r"[^A-Z]", "_", idl["metadata"]["name"].upper())
        for ix in idl["instructions"]:
            value = int(consts[f"{prefix}_IX_{ix['name'].upper()}"].rstrip("UL"), 16)
            assert value.to_bytes(8, "little") == bytes(ix["discriminator"])
        for err in idl["errors"]:
            assert str(err["code"]) in consts.values()


@needs_clang
def test_linked_program_runs_with_relocations(tmp_path: Path, chain: Chain) -> None:
    src = r"""
    typedef unsigned long u64;
    extern void sol_log_(const char *, u64);
    static const char *const words[] = {"alpha", "beta"};
    __attribute__((noinline)) static u64 pick(u64 i) { return i & 1; }
    __attribute__((noinline)) u64 twice(u64 x) { return x * 2; }
    u64 entrypoint(const unsigned char *input) {
      u64 n = *(const u64 *)input;
      sol_log_(words[pick(1)], 4);
      return n == 0 ? twice(21) : 1;
    }
    """
    so = link([("t.o", compile_c(src, tmp_path))])
    pid = Pubkey.new_unique()
    chain.svm.add_program(pid, so)
    out = chain.send(Instruction(pid, b"", []), chain.authority)
    assert out.error == 42  # twice(21) as the program's error code proves the internal call
    assert "Program log: beta" in out.logs  # pointer table (ABS64) + lddw (RELATIVE) + syscall


@needs_clang
@pytest.mark.parametrize(("src", "mcpu", "message"), [
    ("typedef unsigned int u32; u32 entrypoint(u32 *p) { return p[0] + p[1]; }", "v3", "32-bit"),
    ("typedef unsigned long u64; u64 entrypoint(volatile char *p) { volatile char big[5000];"
     " for (int i = 0; i < 5000; i++) big[i] = p[i]; return big[p[0]]; }", "v2", "4096"),
    ("typedef unsigned long u64; extern void sol_lgo_(const char *, u64);"
     " u64 entrypoint(char *p) { sol_lgo_(p, 1); return 0; }", "v2", "unknown function"),
    ("typedef unsigned long u64; u64 counter; u64 entrypoint(char *p) { counter += *p; return counter; }",
     "v2", "writable"),
    ("typedef unsigned long u64; u64 start(char *p) { return 0; }", "v2", "entry symbol"),
])
def test_linker_refuses(src: str, mcpu: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(LinkError, match=message):
        link([("t.o", compile_c(src, tmp_path, mcpu))])
