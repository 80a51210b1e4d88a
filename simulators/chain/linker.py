"""Link BPF relocatable objects (clang/llc 14) into an SBPF v0 shared object.

The Solana platform tools cannot be installed here, so the reference programs are compiled with a
stock clang and linked by this module into the ELF the runtime's v0 loader accepts:

* ET_DYN, EM_BPF, e_flags 0, entry = ``entrypoint`` (also exported in .dynsym);
* one ``.text``, all read-only data merged into one ``.rodata``; file offset == vaddr;
* ``.dynamic`` / ``.dynsym`` / ``.dynstr`` / ``.rel.dyn`` describing what the loader must patch:
  ``R_BPF_64_RELATIVE`` for every ``lddw`` of an address and ``R_BPF_64_32`` for every syscall
  (the loader writes the murmur3 hash of the name), calls inside the program are pc-relative.

It refuses what SBPF v0 would execute wrongly or reject later: 32-bit ALU / JMP32 instructions
(v0 sign-extends 32-bit results), writable data, frames over 4096 bytes (from ``.stack_sizes``),
and calls to functions that are neither defined nor a known syscall. The output depends only on
the input objects, so a rebuild gives identical bytes.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

MAX_FRAME = 4096
MM_PROGRAM_START = 0x1_0000_0000

# Syscalls registered by the runtime for SBPF v0 programs (agave syscalls/mod.rs).
SYSCALLS = frozenset({
    "abort", "sol_panic_", "sol_log_", "sol_log_64_", "sol_log_compute_units_", "sol_log_pubkey",
    "sol_log_data", "sol_create_program_address", "sol_try_find_program_address", "sol_sha256",
    "sol_keccak256", "sol_secp256k1_recover", "sol_get_clock_sysvar", "sol_get_epoch_schedule_sysvar",
    "sol_get_rent_sysvar", "sol_memcpy_", "sol_memmove_", "sol_memcmp_", "sol_memset_",
    "sol_invoke_signed_c", "sol_invoke_signed_rust", "sol_set_return_data", "sol_get_return_data",
    "sol_get_stack_height", "sol_get_processed_sibling_instruction", "sol_remaining_compute_units",
})

# Input relocation types (LLVM BPF backend).
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_32 = 10
# Output dynamic relocation types understood by the SBPF loader.
R_BPF_64_RELATIVE = 8

_CLASS_ALU32 = 0x04
_CLASS_JMP32 = 0x06
_ALLOWED_ALU32 = {0xD4, 0xDC}  # le/be byte swaps: SBPF v0 implements them
_ATOMIC = {0xC3, 0xDB}
_LDDW = 0x18

_RO_PREFIXES = (".rodata", ".data.rel.ro", ".srodata")
_IGNORED_PREFIXES = (".BTF", ".debug", ".comment", ".note", ".llvm", ".stack_sizes", ".eh_frame")


class LinkError(Exception):
    """The objects cannot become a valid SBPF v0 program; the message says why."""


@dataclass
class _Obj:
    name: str
    elf: ELFFile
    base: dict[int, tuple[str, int]] = field(default_factory=dict)  # section idx -> (out, offset)


def _align(n: int, a: int = 8) -> int:
    return (n + a - 1) // a * a


def link(objects: list[tuple[str, bytes]], entry: str = "entrypoint") -> bytes:
    """Link ``(name, object bytes)`` pairs into the bytes of an SBPF v0 ``.so``."""
    objs = [_Obj(name, ELFFile(io.BytesIO(data))) for name, data in objects]
    text = bytearray()
    rodata = bytearray()

    for o in objs:
        if o.elf["e_machine"] != "EM_BPF" or o.elf["e_type"] != "ET_REL":
            raise LinkError(f"{o.name}: not a BPF relocatable object")
        for idx, sec in enumerate(o.elf.iter_sections()):
            name = sec.name
            flags = sec["sh_flags"]
            if not flags & 0x2 or name.startswith(_IGNORED_PREFIXES):  # not SHF_ALLOC
                continue
            if sec["sh_type"] == "SHT_NOBITS" or (flags & 0x1 and not name.startswith(_RO_PREFIXES)):
                if sec["sh_size"]:
                    raise LinkError(f"{o.name}: writable section {name} (SBF has no mutable globals)")
                continue
            if flags & 0x4:  # SHF_EXECINSTR
                off = len(text)
                text += sec.data()
                o.base[idx] = (".text", off)
            elif name.startswith(_RO_PREFIXES):
                a = max(1, sec["sh_addralign"])
                rodata += b"\0" * (_align(len(rodata), a) - len(rodata))
                o.base[idx] = (".rodata", len(rodata))
                rodata += sec.data()
            elif sec["sh_size"]:
                raise LinkError(f"{o.name}: unsupported section {name}")

    _check_opcodes(text)
    if not rodata:
        rodata = bytearray(8)  # keep the three-segment layout even without constants

    # Layout: ELF header, 4 program headers, .text, .rodata, .dynamic, .dynsym, .dynstr, .rel.dyn
    ehsize, phentsize, phnum = 64, 56, 4
    text_off = _align(ehsize + phentsize * phnum)
    ro_off = _align(text_off + len(text))
    addr = {".text": text_off, ".rodata": ro_off}

    # Global symbol table over all objects.
    globals_: dict[str, int] = {}
    for o in objs:
        for sym in o.elf.get_section_by_name(".symtab").iter_symbols():
            shndx = sym["st_shndx"]
            if sym["st_info"]["bind"] == "STB_GLOBAL" and isinstance(shndx, int) and shndx in o.base:
                out, off = o.base[shndx]
                if sym.name in globals_:
                    raise LinkError(f"duplicate symbol {sym.name}")
                globals_[sym.name] = addr[out] + off + sym["st_value"]
    if entry not in globals_:
        raise LinkError(f"entry symbol {entry!r} is not defined")

    out_bufs = {".text": text, ".rodata": rodata}
    dyn_rels: list[tuple[int, int, str | None]] = []  # (offset, type, symbol name)
    frames: list[tuple[str, int]] = []

    for o in objs:
        symtab = o.elf.get_section_by_name(".symtab")
        for rsec in o.elf.iter_sections():
            if not isinstance(rsec, RelocationSection):
                continue
            if rsec["sh_type"] != "SHT_REL":
                raise LinkError(f"{o.name}: RELA relocations are not expected from the BPF backend")
            target = o.elf.get_section(rsec["sh_info"])
            if target.name == ".stack_sizes":
                frames += _stack_sizes(o, target, rsec, symtab)
                continue
            if rsec["sh_info"] not in o.base:
                if target.name.startswith(_IGNORED_PREFIXES):
                    continue
                raise LinkError(f"{o.name}: relocations for unsupported section {target.name}")
            out, base = o.base[rsec["sh_info"]]
            buf = out_bufs[out]
            for rel in rsec.iter_relocations():
                sym = symtab.get_symbol(rel["r_info_sym"])
                rtype = rel["r_info_type"]
                pos = base + rel["r_offset"]
                shndx = sym["st_shndx"]
                defined = isinstance(shndx, int) and shndx in o.base
                if defined:
                    s_out, s_off = o.base[shndx]
                    s_addr = addr[s_out] + s_off + sym["st_value"]
                elif sym.name in globals_:
                    s_addr = globals_[sym.name]
                else:
                    s_addr = None
                if rtype == R_BPF_64_64:
                    if out != ".text" or s_addr is None:
                        raise LinkError(f"{o.name}: lddw of undefined {sym.name!r}")
                    addend = struct.unpack_from("<i", buf, pos + 4)[0]
                    value = s_addr + addend
                    struct.pack_into("<I", buf, pos + 4, value & 0xFFFFFFFF)
                    struct.pack_into("<I", buf, pos + 12, value >> 32)
                    dyn_rels.append((addr[out] + pos, R_BPF_64_RELATIVE, None))
                elif rtype == R_BPF_64_32 and out == ".text":
                    imm = struct.unpack_from("<i", buf, pos + 4)[0]
                    if s_addr is not None:
                        dest = s_addr + (imm + 1) * 8
                        rel_pc = (dest - (addr[out] + pos + 8)) // 8
                        struct.pack_into("<i", buf, pos + 4, rel_pc)
                    else:
                        if sym.name not in SYSCALLS:
                            raise LinkError(f"{o.name}: call to unknown function {sym.name!r}")
                        struct.pack_into("<i", buf, pos + 4, -1)
                        dyn_rels.append((addr[out] + pos, R_BPF_64_32, sym.name))
                elif rtype in (R_BPF_64_ABS64, R_BPF_64_ABS32) and out == ".rodata":
                    if s_addr is None:
                        raise LinkError(f"{o.name}: pointer to undefined {sym.name!r}")
                    width = 8 if rtype == R_BPF_64_ABS64 else 4
                    fmt = "<Q" if width == 8 else "<I"
                    addend = struct.unpack_from(fmt, buf, pos)[0]
                    value = MM_PROGRAM_START + s_addr + addend
                    if width == 4:
                        raise LinkError(f"{o.name}: 32-bit absolute pointer cannot hold {value:#x}")
                    struct.pack_into(fmt, buf, pos, value)
                else:
                    raise LinkError(f"{o.name}: unsupported relocation type {rtype} in {out}")

    for fname, size in frames:
        if size > MAX_FRAME:
            raise LinkError(f"function {fname} needs a {size} B stack frame; SBF allows {MAX_FRAME} B")

    return _write_elf(bytes(text), bytes(rodata), text_off, ro_off, globals_[entry], entry, dyn_rels)


def _check_opcodes(text: bytes | bytearray) -> None:
    i = 0
    while i + 8 <= len(text):
        op = text[i]
        cls = op & 0x07
        if (cls == _CLASS_ALU32 and op not in _ALLOWED_ALU32) or cls == _CLASS_JMP32 or op in _ATOMIC:
            raise LinkError(
                f"instruction {op:#04x} at .text+{i:#x} is 32-bit ALU/JMP32/atomic, which SBPF v0 "
                "executes differently; compile with -mcpu=v2")
        i += 16 if op == _LDDW else 8
    if len(text) % 8:
        raise LinkError(".text is not a whole number of instructions")


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def _stack_sizes(o: _Obj, sec, rsec, symtab) -> list[tuple[str, int]]:
    """Pairs (function, frame bytes) from ``.stack_sizes`` (u64 address + ULEB128 size)."""
    data = sec.data()
    names: dict[int, str] = {}
    for rel in rsec.iter_relocations():
        sym = symtab.get_symbol(rel["r_info_sym"])
        addend = struct.unpack_from("<Q", data, rel["r_offset"])[0]
        names[rel["r_offset"]] = _function_at(symtab, sym, addend)
    out = []
    pos = 0
    while pos < len(data):
        start = pos
        size, pos = _uleb(data, pos + 8)
        out.append((f"{o.name}:{names.get(start, hex(start))}", size))
    return out


def _function_at(symtab, sym, addend: int) -> str:
    if sym["st_info"]["type"] == "STT_FUNC":
        return sym.name
    for s in symtab.iter_symbols():
        if (s["st_info"]["type"] == "STT_FUNC" and s["st_shndx"] == sym["st_shndx"]
                and s["st_value"] == addend):
            return s.name
    return f"{sym.name}+{addend:#x}"


def _write_elf(text: bytes, rodata: bytes, text_off: int, ro_off: int, entry_addr: int,
               entry: str, dyn_rels: list[tuple[int, int, str | None]]) -> bytes:
    # .dynstr / .dynsym: null symbol, the entry point, then one undefined symbol per syscall name.
    dynstr = bytearray(b"\0")
    str_off: dict[str, int] = {}

    def intern(s: str) -> int:
        if s not in str_off:
            str_off[s] = len(dynstr)
            dynstr.extend(s.encode() + b"\0")
        return str_off[s]

    syms = [struct.pack("<IBBHQQ", 0, 0, 0, 0, 0, 0)]
    syms.append(struct.pack("<IBBHQQ", intern(entry), 0x12, 0, 1, entry_addr, 0))  # GLOBAL FUNC .text
    sym_index: dict[str, int] = {}
    for _, rtype, name in dyn_rels:
        if rtype == R_BPF_64_32 and name not in sym_index:
            sym_index[name] = len(syms)
            syms.append(struct.pack("<IBBHQQ", intern(name), 0x10, 0, 0, 0, 0))  # GLOBAL NOTYPE UND
    dynsym = b"".join(syms)
    reldyn = b"".join(
        struct.pack("<QQ", off, (sym_index[name] << 32 if name else 0) | rtype)
        for off, rtype, name in sorted(dyn_rels, key=lambda r: r[0]))

    dyn_off = _align(ro_off + len(rodata))
    dyn_entries = 5 + (3 if reldyn else 0)  # including the closing DT_NULL
    dynsym_off = dyn_off + 16 * dyn_entries
    dynstr_off = dynsym_off + len(dynsym)
    rel_off = _align(dynstr_off + len(dynstr))
    end_alloc = rel_off + len(reldyn)

    DT_NULL, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 5, 6, 10, 11
    DT_REL, DT_RELSZ, DT_RELENT = 17, 18, 19
    dyn = [(DT_SYMTAB, dynsym_off), (DT_STRTAB, dynstr_off), (DT_STRSZ, len(dynstr)),
           (DT_SYMENT, 24)]
    if reldyn:
        dyn += [(DT_REL, rel_off), (DT_RELSZ, len(reldyn)), (DT_RELENT, 16)]
    dyn.append((DT_NULL, 0))
    assert len(dyn) == dyn_entries
    dynamic = b"".join(struct.pack("<QQ", t, v) for t, v in dyn)

    shstrtab = bytearray(b"\0")
    names = [".text", ".rodata", ".dynamic", ".dynsym", ".dynstr", ".rel.dyn", ".shstrtab"]
    name_off = {}
    for n in names:
        name_off[n] = len(shstrtab)
        shstrtab += n.encode() + b"\0"
    shstr_off = end_alloc
    sh_off = _align(shstr_off + len(shstrtab))

    SHT_PROGBITS, SHT_STRTAB, SHT_DYNAMIC, SHT_REL, SHT_DYNSYM = 1, 3, 6, 9, 11
    A, AX, WA = 0x2, 0x6, 0x3
    shdrs = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]

    def sh(name, typ, flags, off, size, link=0, info=0, align=8, entsize=0, alloc=True):
        shdrs.append(struct.pack("<IIQQQQIIQQ", name_off[name], typ, flags, off if alloc else 0,
                                 off, size, link, info, align, entsize))

    sh(".text", SHT_PROGBITS, AX, text_off, len(text))
    sh(".rodata", SHT_PROGBITS, A, ro_off, len(rodata))
    sh(".dynamic", SHT_DYNAMIC, WA, dyn_off, len(dynamic), link=5, entsize=16)
    sh(".dynsym", SHT_DYNSYM, A, dynsym_off, len(dynsym), link=5, info=1, entsize=24)
    sh(".dynstr", SHT_STRTAB, A, dynstr_off, len(dynstr), align=1)
    sh(".rel.dyn", SHT_REL, A, rel_off, len(reldyn), link=4, entsize=16)
    sh(".shstrtab", SHT_STRTAB, 0, shstr_off, len(shstrtab), align=1, alloc=False)

    PT_LOAD, PT_DYNAMIC = 1, 2
    PF_X, PF_W, PF_R = 1, 2, 4

    def ph(typ, flags, off, size):
        return struct.pack("<IIQQQQQQ", typ, flags, off, off, off, size, size, 8)

    phdrs = (ph(PT_LOAD, PF_R | PF_X, text_off, len(text))
             + ph(PT_LOAD, PF_R, ro_off, len(rodata))
             + ph(PT_LOAD, PF_R | PF_W, dyn_off, end_alloc - dyn_off)
             + ph(PT_DYNAMIC, PF_R | PF_W, dyn_off, len(dynamic)))

    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 3, 247, 1, entry_addr, 64, sh_off, 0, 64, 56, 4,
                               64, len(shdrs), 7)
    out = bytearray(sh_off + 64 * len(shdrs))
    out[0:64] = ehdr
    out[64:64 + len(phdrs)] = phdrs
    for off, blob in ((text_off, text), (ro_off, rodata), (dyn_off, dynamic), (dynsym_off, dynsym),
                      (dynstr_off, dynstr), (rel_off, reldyn), (shstr_off, shstrtab),
                      (sh_off, b"".join(shdrs))):
        out[off:off + len(blob)] = blob
    return bytes(out)
