"""Meter register maps as data: config/meters/*.toml, or a custom profile in the configuration.

The profile files ship inside the package (``gridnode/data/meters``, a link to the top-level
``config/meters/`` in the repository); ``meters.profiles_dir`` adds profiles or replaces shipped
ones by name, and ``[[meters.profiles]]`` entries come on top of both.

A profile says, for each value gridnode needs, which function code and register address hold it,
its data type and word order, the factor that turns the raw number into the role's unit (Wh, W, V,
A, Hz) and, for SunSpec, the address of the scale-factor register. `plan_blocks` turns a profile
into the few contiguous reads one poll cycle needs; `decode` slices the values back out and turns
the meters' "not available" sentinels (NaN, 0xFFFF, 0x8000, ...) into None, never into 0.
"""

from __future__ import annotations

import math
import struct
import tomllib
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Role = Literal["import_wh", "export_wh", "power_w", "voltage_v", "current_a", "frequency_hz"]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]
DataType = Literal["float32", "int16", "uint16", "int32", "uint32", "acc32", "int64", "uint64"]

WIDTH: dict[str, int] = {
    "float32": 2, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "acc32": 2, "int64": 4,
    "uint64": 4,
}
# Raw values that mean "not available" on the wire, per data type (SunSpec and common meters).
SENTINELS: dict[str, frozenset[int]] = {
    "int16": frozenset({0x8000}),
    "uint16": frozenset({0xFFFF}),
    "int32": frozenset({0x80000000}),
    "uint32": frozenset({0xFFFFFFFF}),
    "acc32": frozenset({0x00000000}),   # SunSpec: an accumulator that is not implemented
    "int64": frozenset({0x8000000000000000}),
    "uint64": frozenset({0xFFFFFFFFFFFFFFFF}),
}
MAX_BLOCK = 125  # registers in one read (Modbus limit for FC3/FC4)


class RegisterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    role: Role
    address: int = Field(ge=0, le=0xFFFF)
    function_code: Literal[3, 4] | None = None
    data_type: DataType | None = None
    word_order: Literal["big", "little"] | None = None
    scale: float = 1.0
    scale_factor_address: int | None = Field(default=None, ge=0, le=0xFFFF)
    # Not on every device of the model: read on its own, and a device that refuses the address
    # (Modbus exception 2) simply has no such value.
    optional: bool = False


class Profile(BaseModel):
    """One meter model. Register-level fields default to the profile-level ones."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    description: str = ""
    function_code: Literal[3, 4] = 4
    data_type: DataType = "float32"
    word_order: Literal["big", "little"] = "big"
    max_gap: int = Field(default=16, ge=0, le=MAX_BLOCK)
    # SunSpec: the model to look for in the device's model chain; register addresses are then
    # offsets from that model's first point (after its ID and length registers).
    sunspec_model: int | None = Field(default=None, ge=1, le=0xFFFE)
    registers: tuple[RegisterSpec, ...]

    @model_validator(mode="after")
    def _check(self) -> Profile:
        roles = [r.role for r in self.registers]
        if "import_wh" not in roles:
            raise ValueError("a profile needs an import_wh register")
        dup = {r for r in roles if roles.count(r) > 1}
        if dup:
            raise ValueError(f"role(s) given twice: {sorted(dup)}")
        return self

    def fields(self, base: int = 0) -> list[Field_]:
        """Registers with defaults resolved; `base` is added to every address (SunSpec)."""
        return [
            Field_(
                role=r.role, address=base + r.address,
                function_code=r.function_code or self.function_code,
                data_type=r.data_type or self.data_type,
                word_order=r.word_order or self.word_order,
                scale=r.scale, optional=r.optional,
                scale_factor_address=(None if r.scale_factor_address is None
                                      else base + r.scale_factor_address),
            )
            for r in self.registers
        ]


@dataclass(frozen=True, slots=True)
class Field_:
    """A register with the profile defaults resolved."""

    role: str
    address: int
    function_code: int
    data_type: str
    word_order: str
    scale: float
    scale_factor_address: int | None
    optional: bool = False

    @property
    def width(self) -> int:
        return WIDTH[self.data_type]


@dataclass(frozen=True, slots=True)
class Block:
    function_code: int
    address: int
    count: int
    optional: bool = False


class ProfileError(ValueError):
    """A profile file or table that cannot be used; the message names the file and the problem."""


def parse_profile(data: dict, source: str) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in e.errors()
        )
        raise ProfileError(f"{source}: {problems}") from None


def load_profile_file(path: Path | Traversable, source: str | None = None) -> Profile:
    """One profile file; ``source`` names it in errors (default: its path)."""
    source = source or str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ProfileError(f"{source}: {e}") from None
    return parse_profile(data, source)


def _profiles_in(files: list[tuple[Path | Traversable, str]]) -> dict[str, Profile]:
    out: dict[str, Profile] = {}
    for path, source in files:
        p = load_profile_file(path, source)
        if p.name in out:
            raise ProfileError(f"{source}: profile name {p.name!r} is used twice")
        out[p.name] = p
    return out


def shipped_profiles() -> dict[str, Profile]:
    """The profiles installed with gridnode, by name (empty when the install lacks them)."""
    root = resources.files("gridnode").joinpath("data", "meters")
    if not root.is_dir():
        return {}
    return _profiles_in([(f, f"gridnode/data/meters/{f.name}")
                         for f in sorted(root.iterdir(), key=lambda f: f.name)
                         if f.name.endswith(".toml")])


def load_profiles(directory: Path | None = None) -> dict[str, Profile]:
    """The shipped profiles, then every ``*.toml`` in ``directory`` (adding profiles, or
    replacing a shipped one of the same name), by name; ProfileError names the file and the
    problem, or the directory when it does not exist."""
    profiles = shipped_profiles()
    if directory is not None:
        if not directory.is_dir():
            raise ProfileError(f"{directory}: no such directory")
        profiles.update(_profiles_in([(f, str(f)) for f in sorted(directory.glob("*.toml"))]))
    return profiles


def plan_blocks(profile: Profile, base: int = 0) -> list[Block]:
    """Contiguous reads covering every register (and SunSpec scale factor) of a profile.

    Optional registers are read in blocks of their own, so a device without them still answers
    the others."""
    spans: dict[tuple[int, bool], list[tuple[int, int]]] = {}
    for f in profile.fields(base):
        key = (f.function_code, f.optional)
        spans.setdefault(key, []).append((f.address, f.address + f.width))
        if f.scale_factor_address is not None:
            spans[key].append((f.scale_factor_address, f.scale_factor_address + 1))
    blocks: list[Block] = []
    for (fc, optional) in sorted(spans):
        gap = -1 if optional else profile.max_gap   # optional registers: one block each
        (cur_start, cur_end), *rest = sorted(spans[(fc, optional)])
        for start, end in rest:
            if start - cur_end <= gap and max(end, cur_end) - cur_start <= MAX_BLOCK:
                cur_end = max(cur_end, end)
            else:
                blocks.append(Block(fc, cur_start, cur_end - cur_start, optional))
                cur_start, cur_end = start, end
        blocks.append(Block(fc, cur_start, cur_end - cur_start, optional))
    return blocks


def _register(blocks: dict[Block, list[int]], fc: int, address: int, count: int) -> list[int]:
    for b, regs in blocks.items():
        if b.function_code == fc and b.address <= address and address + count <= b.address + b.count:
            off = address - b.address
            return regs[off:off + count]
    raise KeyError(f"register {address} (FC{fc}) not in any block read")


def registers_to_raw(words: list[int], data_type: str, word_order: str) -> int | float | None:
    """Raw value of a register group, or None for a "not available" sentinel."""
    if word_order == "little":
        words = list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if data_type == "float32":
        v = struct.unpack(">f", raw)[0]
        return None if math.isnan(v) or math.isinf(v) else v
    u = int.from_bytes(raw, "big")
    if u in SENTINELS[data_type]:
        return None
    if data_type.startswith("int"):
        return int.from_bytes(raw, "big", signed=True)
    return u


def raw_to_registers(value: float | None, data_type: str, word_order: str) -> list[int]:
    """The inverse of `registers_to_raw` (simulators and tests); None writes the sentinel."""
    n = WIDTH[data_type]
    if data_type == "float32":
        raw = struct.pack(">f", math.nan if value is None else value)
    elif value is None:
        raw = max(SENTINELS[data_type]).to_bytes(2 * n, "big")
    else:
        raw = int(round(value)).to_bytes(2 * n, "big", signed=data_type.startswith("int"))
    words = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, 2 * n, 2)]
    return list(reversed(words)) if word_order == "little" else words


def decode(profile: Profile, blocks: dict[Block, list[int]],
           base: int = 0) -> dict[str, float | None]:
    """Values by role in the role's unit, from the registers of one poll cycle."""
    out: dict[str, float | None] = {}
    for f in profile.fields(base):
        try:
            words = _register(blocks, f.function_code, f.address, f.width)
        except KeyError:
            if not f.optional:
                raise
            out[f.role] = None      # the device does not have this register
            continue
        raw = registers_to_raw(words, f.data_type, f.word_order)
        if raw is None:
            out[f.role] = None
            continue
        factor = f.scale
        if f.scale_factor_address is not None:
            sf = registers_to_raw(
                _register(blocks, f.function_code, f.scale_factor_address, 1), "int16", "big"
            )
            if sf is None or not -10 <= int(sf) <= 10:
                out[f.role] = None
                continue
            factor *= 10.0 ** int(sf)
        out[f.role] = float(raw) * factor
    return out
