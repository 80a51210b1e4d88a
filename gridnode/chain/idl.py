"""The GridTokenX program interfaces, loaded from the Anchor 0.30+ IDL files in ``idl/``.

The IDLs ship inside the package (``gridnode/data/idl``, a link to the top-level ``idl/`` in the
repository); a directory of IDL files adds programs or replaces shipped ones by program name, and
configured program IDs replace the IDLs' ``address`` (see ``load_idls``). This is the one place
where IDLs are loaded, so a relocated program is relocated everywhere: instruction program IDs,
PDAs, pinned addresses and event attribution all follow ``ProgramIdl.program_id``.

The IDL files stay in the current Anchor format (explicit discriminators, PDA seeds). anchorpy 0.21
only reads the legacy format, so this module — and only this module — converts each IDL to the
legacy form and uses anchorpy's coders behind a small API:

    idls = load_idls(idl_dir, program_ids={"oracle": "..."}, require=PROGRAMS)
    p = idls["oracle"]
    ix = p.instruction("submit_meter_reading", args={...}, accounts={"authority": pk})
    p.pda("oracle_data"); p.find_pda([b"oracle_data"])
    p.decode_account("OracleData", data) / p.encode_account("OracleData", {...})
    p.decode_events(log_messages)
    p.error_name(6001)

Values are plain Python: integers, ``bool``, ``str``, ``solders.pubkey.Pubkey``, enum variants as
their name (``"Active"``), ``None`` for an empty option, lists and dicts keyed by the IDL names.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from construct import ConstructError, Container
from pyheck import snake
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from gridnode.chain._anchorpy import Coder, Idl, IdlField, type_layout
from gridnode.config import ConfigError, ConfigIssue
from gridnode.config.chain import ChainConfig, ProgramIds

# Anchor framework error numbers (anchor-lang ErrorCode), for messages and outcome records.
FRAMEWORK_ERRORS: dict[int, str] = {
    100: "InstructionMissing", 101: "InstructionFallbackNotFound",
    102: "InstructionDidNotDeserialize", 103: "InstructionDidNotSerialize",
    1000: "IdlInstructionStub", 1001: "IdlInstructionInvalidProgram", 1002: "IdlAccountNotEmpty",
    2000: "ConstraintMut", 2001: "ConstraintHasOne", 2002: "ConstraintSigner",
    2003: "ConstraintRaw", 2004: "ConstraintOwner", 2005: "ConstraintRentExempt",
    2006: "ConstraintSeeds", 2007: "ConstraintExecutable", 2008: "ConstraintState",
    2009: "ConstraintAssociated", 2010: "ConstraintAssociatedInit", 2011: "ConstraintClose",
    2012: "ConstraintAddress", 2013: "ConstraintZero", 2014: "ConstraintTokenMint",
    2015: "ConstraintTokenOwner", 2016: "ConstraintMintMintAuthority",
    2017: "ConstraintMintFreezeAuthority", 2018: "ConstraintMintDecimals",
    2019: "ConstraintSpace", 2020: "ConstraintAccountIsNone", 2021: "ConstraintTokenTokenProgram",
    2022: "ConstraintMintTokenProgram", 2023: "ConstraintAssociatedTokenTokenProgram",
    2040: "ConstraintDuplicateMutableAccount",
    2500: "RequireViolated", 2501: "RequireEqViolated", 2502: "RequireKeysEqViolated",
    2503: "RequireNeqViolated", 2504: "RequireKeysNeqViolated", 2505: "RequireGtViolated",
    2506: "RequireGteViolated",
    3000: "AccountDiscriminatorAlreadySet", 3001: "AccountDiscriminatorNotFound",
    3002: "AccountDiscriminatorMismatch", 3003: "AccountDidNotDeserialize",
    3004: "AccountDidNotSerialize", 3005: "AccountNotEnoughKeys", 3006: "AccountNotMutable",
    3007: "AccountOwnedByWrongProgram", 3008: "InvalidProgramId", 3009: "InvalidProgramExecutable",
    3010: "AccountNotSigner", 3011: "AccountNotSystemOwned", 3012: "AccountNotInitialized",
    3013: "AccountNotProgramData", 3014: "AccountNotAssociatedTokenAccount",
    3015: "AccountSysvarMismatch", 3016: "AccountReallocExceedsLimit",
    3017: "AccountDuplicateReallocs",
    4100: "DeclaredProgramIdMismatch", 4101: "TryingToInitPayerAsProgramAccount",
    5000: "Deprecated",
}

_INVOKE = re.compile(r"^Program (\w+) invoke \[(\d+)\]$")
_RESULT = re.compile(r"^Program (\w+) (success|failed)")
_DATA = "Program data: "


Fetch = Callable[[Pubkey], "bytes | None"]
"""Reads an account's data by address (None when it does not exist)."""


class IdlError(Exception):
    """An instruction cannot be built from what was given (unknown name, missing account, ...)."""


# ---------------------------------------------------------------- 0.30+ → legacy conversion
def _legacy_type(t: Any) -> Any:
    if isinstance(t, str):
        return "publicKey" if t == "pubkey" else t
    if "defined" in t:
        d = t["defined"]
        return {"defined": d["name"] if isinstance(d, dict) else d}
    if "option" in t:
        return {"option": _legacy_type(t["option"])}
    if "vec" in t:
        return {"vec": _legacy_type(t["vec"])}
    if "array" in t:
        inner, n = t["array"]
        return {"array": [_legacy_type(inner), n]}
    raise IdlError(f"unsupported IDL type {t!r}")


def _legacy_fields(fs: list[dict]) -> list[dict]:
    return [{"name": f["name"], "type": _legacy_type(f["type"])} for f in fs]


def _legacy_typedef(t: dict) -> dict:
    ty = t["type"]
    if ty["kind"] == "struct":
        return {"kind": "struct", "fields": _legacy_fields(ty.get("fields", []))}
    if ty["kind"] == "enum":
        variants = []
        for v in ty["variants"]:
            item: dict[str, Any] = {"name": v["name"]}
            if v.get("fields"):
                fs = v["fields"]
                item["fields"] = (_legacy_fields(fs) if isinstance(fs[0], dict) and "name" in fs[0]
                                  else [_legacy_type(x) for x in fs])
            variants.append(item)
        return {"kind": "enum", "variants": variants}
    if ty["kind"] == "type":
        return {"kind": "alias", "value": _legacy_type(ty["alias"])}
    raise IdlError(f"unsupported type kind {ty['kind']!r}")


def _flatten_accounts(items: list[dict]) -> list[dict]:
    out = []
    for a in items:
        out += _flatten_accounts(a["accounts"]) if "accounts" in a else [a]
    return out


def to_legacy(idl: dict) -> dict:
    """The legacy (pre-0.30) form of a 0.30+ IDL, as anchorpy 0.21 parses it."""
    types = {t["name"]: t for t in idl.get("types", [])}
    account_names = {a["name"] for a in idl.get("accounts", [])}
    event_names = {e["name"] for e in idl.get("events", [])}
    instructions = []
    for ix in idl["instructions"]:
        item: dict[str, Any] = {
            "name": ix["name"],
            "accounts": [{"name": a["name"], "isMut": bool(a.get("writable")),
                          "isSigner": bool(a.get("signer")),
                          **({"isOptional": True} if a.get("optional") else {})}
                         for a in _flatten_accounts(ix["accounts"])],
            "args": _legacy_fields(ix.get("args", [])),
        }
        if ix.get("returns") is not None:
            item["returns"] = _legacy_type(ix["returns"])
        instructions.append(item)
    return {
        "version": idl["metadata"]["version"],
        "name": idl["metadata"]["name"],
        "instructions": instructions,
        "accounts": [{"name": n, "type": _legacy_typedef(types[n])}
                     for n in (a["name"] for a in idl.get("accounts", []))],
        "types": [{"name": n, "type": _legacy_typedef(t)} for n, t in types.items()
                  if n not in account_names and n not in event_names],
        "events": [{"name": e["name"],
                    "fields": [{**f, "index": False} for f in _legacy_fields(
                        types[e["name"]]["type"]["fields"])]}
                   for e in idl.get("events", [])],
        "errors": idl.get("errors", []),
        "metadata": {"address": idl["address"]},
    }


# ---------------------------------------------------------------- value conversion
def _from_anchorpy(value: Any) -> Any:
    """anchorpy/borsh-construct values → plain Python values."""
    if isinstance(value, Container):
        return {k: _from_anchorpy(v) for k, v in value.items() if not k.startswith("_")}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _from_anchorpy(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list):
        return [_from_anchorpy(v) for v in value]
    if hasattr(value, "_sumtype_constructor_names") or hasattr(type(value), "_sumtype_attribs"):
        attribs = getattr(type(value), "_sumtype_attribs", None) or []
        name = type(value).__name__
        if not attribs:
            return name
        return {name: {a[0]: _from_anchorpy(getattr(value, a[0])) for a in attribs}}
    return value


@dataclass
class ProgramIdl:
    """One program's interface: instruction building, account/event coding, error names."""

    raw: dict
    program_id: Pubkey = field(init=False)
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.program_id = Pubkey.from_string(self.raw["address"])
        self.name = self.raw["metadata"]["name"]
        self.legacy = to_legacy(self.raw)
        self._idl = Idl.from_json(json.dumps(self.legacy))
        self._coder = Coder(self._idl)
        self._types = {t["name"]: t for t in self.raw.get("types", [])}
        self._ix = {ix["name"]: ix for ix in self.raw["instructions"]}
        self._accounts = {a["name"]: bytes(a["discriminator"]) for a in self.raw.get("accounts", [])}
        self._events = {bytes(e["discriminator"]): e["name"] for e in self.raw.get("events", [])}
        self._errors = {e["code"]: e["name"] for e in self.raw.get("errors", [])}
        self._layouts: dict[str, Any] = {}

    # ------------------------------------------------------------ borsh through anchorpy
    def _layout(self, idl_type: Any):
        key = json.dumps(idl_type, sort_keys=True)
        if key not in self._layouts:
            f = IdlField.from_json(json.dumps({"name": "v", "type": _legacy_type(idl_type)}))
            self._layouts[key] = type_layout(f.ty, self._idl.accounts + self._idl.types)
        return self._layouts[key]

    def _to_anchorpy(self, value: Any, idl_type: Any) -> Any:
        """Plain Python → what borsh-construct builds (enum objects, snake_case struct keys)."""
        if isinstance(idl_type, str):
            if idl_type == "pubkey" and not isinstance(value, Pubkey):
                return Pubkey.from_string(str(value))
            return value
        if "option" in idl_type:
            return None if value is None else self._to_anchorpy(value, idl_type["option"])
        if "vec" in idl_type:
            return [self._to_anchorpy(v, idl_type["vec"]) for v in value]
        if "array" in idl_type:
            return [self._to_anchorpy(v, idl_type["array"][0]) for v in value]
        name = idl_type["defined"]["name"] if isinstance(idl_type["defined"], dict) else idl_type["defined"]
        td = self._types[name]["type"]
        if td["kind"] == "enum":
            enum = self._layout(idl_type).enum
            variants = [v["name"] for v in td["variants"]]
            if isinstance(value, int) and not isinstance(value, bool):
                value = variants[value]
            if isinstance(value, str):
                if value not in variants:
                    raise IdlError(f"{name}: unknown variant {value!r}; allowed {variants}")
                return getattr(enum, value)()
            (vname, vfields), = value.items()
            vdef = next(v for v in td["variants"] if v["name"] == vname)
            kwargs = {snake(f["name"]): self._to_anchorpy(vfields[f["name"]], f["type"])
                      for f in vdef.get("fields", [])}
            return getattr(enum, vname)(**kwargs)
        return {snake(f["name"]): self._to_anchorpy(value[f["name"]], f["type"])
                for f in td["fields"]}

    def _plain(self, value: Any, idl_type: Any) -> Any:
        """Decoded borsh-construct value → plain Python, with the IDL's field names."""
        if isinstance(idl_type, str):
            return value
        if "option" in idl_type:
            return None if value is None else self._plain(value, idl_type["option"])
        if "vec" in idl_type:
            return [self._plain(v, idl_type["vec"]) for v in value]
        if "array" in idl_type:
            return [self._plain(v, idl_type["array"][0]) for v in value]
        name = idl_type["defined"]["name"] if isinstance(idl_type["defined"], dict) else idl_type["defined"]
        td = self._types[name]["type"]
        if td["kind"] == "enum":
            return _from_anchorpy(value)
        return self._plain_struct(value, td["fields"])

    def _plain_struct(self, value: Any, fs: list[dict]) -> dict:
        get = value.__getitem__ if isinstance(value, dict) else lambda k: getattr(value, k)
        return {f["name"]: self._plain(get(snake(f["name"])), f["type"]) for f in fs}

    def encode_type(self, idl_type: Any, value: Any) -> bytes:
        """Borsh bytes of one value of an IDL type (e.g. ``"string"``, ``{"defined": ...}``)."""
        return self._layout(idl_type).build(self._to_anchorpy(value, idl_type))

    # ------------------------------------------------------------ instructions
    def instruction_names(self) -> list[str]:
        return list(self._ix)

    def encode_args(self, name: str, args: dict[str, Any]) -> bytes:
        """Discriminator + borsh args of an instruction."""
        ix = self._ix.get(name)
        if ix is None:
            raise IdlError(f"{self.name}: no instruction {name!r}")
        missing = [a["name"] for a in ix["args"] if a["name"] not in args]
        if missing:
            raise IdlError(f"{self.name}.{name}: missing args {missing}")
        data = {snake(a["name"]): self._to_anchorpy(args[a["name"]], a["type"]) for a in ix["args"]}
        body = self._coder.instruction.ix_layout[snake(name)].build(data)
        return bytes(ix["discriminator"]) + body

    def decode_args(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """(instruction name, args) of encoded instruction data."""
        for ix in self._ix.values():
            if data[:8] == bytes(ix["discriminator"]):
                raw = self._coder.instruction.ix_layout[snake(ix["name"])].parse(data[8:])
                return ix["name"], self._plain_struct(raw, ix["args"])
        raise IdlError(f"{self.name}: unknown instruction discriminator {data[:8].hex()}")

    def instruction(self, name: str, args: dict[str, Any] | None = None,
                    accounts: dict[str, Pubkey] | None = None,
                    remaining_accounts: list[AccountMeta] | None = None,
                    fetch: Fetch | None = None) -> Instruction:
        """A solders Instruction; accounts with an IDL address or resolvable PDA seeds may be
        omitted, optional accounts left out are passed as the program ID (Anchor's None).
        ``fetch(pubkey) -> data`` lets seeds that name another account's field (trading's
        ``market.active_orders``) be read from that account; without it such accounts must be given."""
        args = args or {}
        data = self.encode_args(name, args)
        items = _flatten_accounts(self._ix[name]["accounts"])
        keys = self._resolve_accounts(name, items, args, dict(accounts or {}), fetch)
        metas = [AccountMeta(keys[a["name"]], bool(a.get("signer")), bool(a.get("writable")))
                 for a in items]
        return Instruction(self.program_id, data, metas + list(remaining_accounts or []))

    def _resolve_accounts(self, ix_name: str, items: list[dict], args: dict[str, Any],
                          given: dict[str, Pubkey], fetch: Fetch | None = None) -> dict[str, Pubkey]:
        keys: dict[str, Pubkey] = {}
        for a in items:
            if a["name"] in given:
                keys[a["name"]] = given[a["name"]]
            elif "address" in a:
                keys[a["name"]] = Pubkey.from_string(a["address"])
        pending = [a for a in items if a["name"] not in keys]
        while pending:
            progress = False
            for a in list(pending):
                key = self._seeds_key(a, ix_name, args, keys, fetch) if "pda" in a else None
                if key is not None:
                    keys[a["name"]] = key
                    pending.remove(a)
                    progress = True
            if not progress:
                break
        missing = []
        for a in pending:
            if a.get("optional"):
                keys[a["name"]] = self.program_id
            else:
                missing.append(a["name"])
        if missing:
            raise IdlError(f"{self.name}.{ix_name}: accounts {missing} must be given")
        return keys

    def _seed_bytes(self, seed: dict, ix_name: str, args: dict[str, Any],
                    keys: dict[str, Pubkey], fetch: Fetch | None = None) -> bytes | None:
        kind = seed["kind"]
        if kind == "const":
            return bytes(seed["value"])
        path = seed["path"]
        if kind == "arg":
            if path not in args:
                return None
            arg = next((a for a in self._ix[ix_name]["args"] if a["name"] == path), None) \
                if ix_name else None
            value = args[path]
            ty = arg["type"] if arg else ("pubkey" if isinstance(value, Pubkey) else "string")
            if ty == "string":
                return value.encode()
            if ty == "pubkey":
                return bytes(value)
            return self.encode_type(ty, value)
        if kind == "account":
            if "." in path:
                return self._field_seed(seed, keys, fetch)
            key = keys.get(path)
            return bytes(key) if key is not None else None
        return None

    def _field_seed(self, seed: dict, keys: dict[str, Pubkey], fetch: Fetch | None) -> bytes | None:
        """Seed bytes from a field of another account (``"market.active_orders"``)."""
        root, field_path = seed["path"].split(".", 1)
        key = keys.get(root)
        type_name = seed.get("account")
        if fetch is None or key is None or type_name is None or "." in field_path:
            return None
        data = fetch(key)
        if data is None:
            raise IdlError(f"{self.name}: account {root} ({key}) does not exist")
        value = self.decode_account(type_name, data)[field_path]
        ty = next(f["type"] for f in self._types[type_name]["type"]["fields"] if f["name"] == field_path)
        if ty == "string":
            return value.encode()
        return bytes(value) if ty == "pubkey" else self.encode_type(ty, value)

    def _seeds_key(self, item: dict, ix_name: str, args: dict[str, Any],
                   keys: dict[str, Pubkey], fetch: Fetch | None = None) -> Pubkey | None:
        seeds = []
        for s in item["pda"]["seeds"]:
            b = self._seed_bytes(s, ix_name, args, keys, fetch)
            if b is None:
                return None
            if len(b) > 32:
                raise IdlError(f"{self.name}: PDA seed for {item['name']!r} is {len(b)} bytes; "
                               "seeds are at most 32 bytes")
            seeds.append(b)
        program = self.program_id
        if "program" in item["pda"]:
            b = self._seed_bytes(item["pda"]["program"], ix_name, args, keys, fetch)
            if b is None:
                return None
            program = Pubkey.from_bytes(b)
        return Pubkey.find_program_address(seeds, program)[0]

    # ------------------------------------------------------------ PDAs
    def find_pda(self, seeds: list[bytes]) -> tuple[Pubkey, int]:
        return Pubkey.find_program_address(seeds, self.program_id)

    def pda(self, account: str, fetch: Fetch | None = None, **context: Any) -> Pubkey:
        """The address of an instruction account named ``account`` from its IDL seeds; seeds
        naming args or other accounts take their values from ``context`` (and ``fetch`` for
        fields of other accounts)."""
        keys = {k: v for k, v in context.items() if isinstance(v, Pubkey)}
        for ix in self.raw["instructions"]:
            for a in _flatten_accounts(ix["accounts"]):
                if a["name"] == account and "pda" in a:
                    key = self._seeds_key(a, ix["name"], context, keys, fetch)
                    if key is not None:
                        return key
        raise IdlError(f"{self.name}: no PDA seeds for {account!r} resolvable from {sorted(context)}")

    # ------------------------------------------------------------ accounts
    def account_discriminator(self, name: str) -> bytes:
        return self._accounts[name]

    def decode_account(self, name: str, data: bytes) -> dict[str, Any]:
        """Decode account data (discriminator checked); raises IdlError when it does not fit."""
        disc = self._accounts.get(name)
        if disc is None:
            raise IdlError(f"{self.name}: no account type {name!r}")
        if bytes(data[:8]) != disc:
            raise IdlError(f"{self.name}: data is not a {name} (discriminator {bytes(data[:8]).hex()})")
        try:
            raw = self._layout({"defined": {"name": name}}).parse(bytes(data[8:]))
        except (ConstructError, UnicodeDecodeError, ValueError) as exc:
            raise IdlError(f"{self.name}: {name} does not decode: {exc}") from exc
        return self._plain_struct(raw, self._types[name]["type"]["fields"])

    def encode_account(self, name: str, value: dict[str, Any]) -> bytes:
        return self._accounts[name] + self.encode_type({"defined": {"name": name}}, value)

    # ------------------------------------------------------------ events
    def decode_event(self, payload: bytes) -> tuple[str, dict[str, Any]] | None:
        name = self._events.get(bytes(payload[:8]))
        if name is None:
            return None
        try:
            raw = self._coder.events.layouts[name].parse(bytes(payload[8:]))
        except (ConstructError, UnicodeDecodeError, ValueError):
            return None
        return name, self._plain_struct(raw, self._types[name]["type"]["fields"])

    def decode_events(self, log_messages: list[str], depth: int | None = None
                      ) -> list[tuple[str, dict[str, Any]]]:
        """Events this program emitted, in order: only ``Program data:`` lines written while this
        program is the innermost running invocation (optionally only at invocation ``depth``)."""
        me = str(self.program_id)
        stack: list[str] = []
        out = []
        for line in log_messages:
            m = _INVOKE.match(line)
            if m:
                stack.append(m.group(1))
                continue
            m = _RESULT.match(line)
            if m:
                if stack and stack[-1] == m.group(1):
                    stack.pop()
                continue
            if line.startswith(_DATA) and stack and stack[-1] == me:
                if depth is not None and len(stack) != depth:
                    continue
                try:
                    payload = base64.b64decode(line[len(_DATA):].split()[0], validate=True)
                except (binascii.Error, IndexError):
                    continue
                ev = self.decode_event(payload)
                if ev is not None:
                    out.append(ev)
        return out

    # ------------------------------------------------------------ errors
    def error_name(self, code: int) -> str | None:
        return self._errors.get(code) or FRAMEWORK_ERRORS.get(code)


class IdlSetError(IdlError):
    """The IDLs cannot make a complete, consistent set (a directory that does not exist, a file
    that is not an IDL, a program missing); the message says which and why."""


PROGRAMS: tuple[str, ...] = tuple(ProgramIds.model_fields)
"""The GridTokenX programs gridnode needs an IDL for: the keys of ``chain.program_ids``."""


def _read_idl(text: str, source: str) -> dict:
    try:
        raw = json.loads(text)
        Pubkey.from_string(raw["address"])
        if not isinstance(raw["metadata"]["name"], str) or not isinstance(raw["instructions"], list):
            raise TypeError("metadata.name or instructions has the wrong type")
    except (ValueError, KeyError, TypeError) as exc:
        raise IdlSetError(f"{source}: not an Anchor 0.30+ IDL ({type(exc).__name__}: {exc})") from None
    return raw


def shipped_idls() -> dict[str, dict]:
    """The IDLs installed with gridnode, by program name (empty when the install lacks them)."""
    root = resources.files("gridnode").joinpath("data", "idl")
    if not root.is_dir():
        return {}
    raws = [_read_idl(f.read_text(encoding="utf-8"), f"gridnode/data/idl/{f.name}")
            for f in sorted(root.iterdir(), key=lambda f: f.name) if f.name.endswith(".json")]
    return {raw["metadata"]["name"]: raw for raw in raws}


def _idls_in(directory: Path) -> dict[str, dict]:
    if not directory.is_dir():
        raise IdlSetError(f"{directory}: no such directory")
    out: dict[str, dict] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise IdlSetError(f"{path}: unreadable ({exc})") from None
        raw = _read_idl(text, str(path))
        name = raw["metadata"]["name"]
        if name in out:
            raise IdlSetError(f"{path}: a second IDL of program {name!r}")
        out[name] = raw
    return out


def _const_pdas(raw: dict, program_id: Pubkey) -> dict[tuple[bytes, ...], Pubkey]:
    """The program's PDAs whose seeds are all constants, under ``program_id``, by their seeds."""
    out: dict[tuple[bytes, ...], Pubkey] = {}
    for ix in raw["instructions"]:
        for a in _flatten_accounts(ix["accounts"]):
            pda = a.get("pda")
            if pda and "program" not in pda and all(s["kind"] == "const" for s in pda["seeds"]):
                seeds = tuple(bytes(s["value"]) for s in pda["seeds"])
                out[seeds] = Pubkey.find_program_address(list(seeds), program_id)[0]
    return out


def address_moves(raws: Mapping[str, dict], program_ids: Mapping[str, str | Pubkey]
                  ) -> dict[Pubkey, Pubkey]:
    """Old address -> new address when programs move to ``program_ids``: each moved program's ID
    and its constant-seed PDAs (trading's ``settle_trade.mint`` is energy_token's ``["mint"]``)."""
    unknown = sorted(set(program_ids) - set(raws))
    if unknown:
        raise IdlSetError(f"program IDs given for programs without an IDL: {unknown}")
    moves: dict[Pubkey, Pubkey] = {}
    for name, given in program_ids.items():
        old, new = Pubkey.from_string(raws[name]["address"]), Pubkey.from_string(str(given))
        if old != new:
            moves[old] = new
            new_pdas = _const_pdas(raws[name], new)
            moves.update({pda: new_pdas[seeds] for seeds, pda in _const_pdas(raws[name], old).items()})
    return moves


def relocate(raws: Mapping[str, dict], program_ids: Mapping[str, str | Pubkey]) -> dict[str, dict]:
    """Copies of the IDLs with programs moved to other IDs: every ``address`` (the program's own,
    pinned accounts) and every PDA derived under another program (``pda.program``) follows
    ``address_moves``."""
    moves = address_moves(raws, program_ids)

    def follow(address: str) -> str:
        return str(moves.get(Pubkey.from_string(address), address))

    out = {name: copy.deepcopy(raw) for name, raw in raws.items()}
    for raw in out.values() if moves else ():
        raw["address"] = follow(raw["address"])
        for ix in raw["instructions"]:
            for a in _flatten_accounts(ix["accounts"]):
                if "address" in a:
                    a["address"] = follow(a["address"])
                program = a.get("pda", {}).get("program")
                if program and program["kind"] == "const" and len(program["value"]) == 32:
                    key = Pubkey.from_bytes(bytes(program["value"]))
                    program["value"] = list(bytes(moves.get(key, key)))
    return out


def load_idls(idl_dir: str | Path | None = None,
              program_ids: Mapping[str, str | Pubkey] | None = None,
              require: Iterable[str] = ()) -> dict[str, ProgramIdl]:
    """The program interfaces by program name: the IDLs shipped with gridnode, then every
    ``*.json`` in ``idl_dir`` (adding programs, or replacing a shipped IDL of the same program),
    moved to ``program_ids`` where given (``relocate``).

    Raises IdlSetError when ``idl_dir`` is not a directory, a file in it is not an IDL, or a
    program named in ``require`` has no IDL."""
    raws = shipped_idls()
    if idl_dir is not None:
        raws.update(_idls_in(Path(idl_dir)))
    missing = [name for name in require if name not in raws]
    if missing:
        raise IdlSetError(f"no IDL for {', '.join(missing)}")
    return {name: ProgramIdl(raw) for name, raw in relocate(raws, program_ids or {}).items()}


def idls_for_chain(chain: ChainConfig, source: str = "<config>") -> dict[str, ProgramIdl]:
    """The IDLs a ``[chain]`` section asks for: every program of ``PROGRAMS``, from the shipped
    IDLs and ``chain.idl_dir``, at the IDs set in ``chain.program_ids`` (an ID left out there is
    the IDL's ``address``). Raises ConfigError naming ``chain.idl_dir`` when the set is not
    complete, so ``check-config`` and the start of the daemon report it."""
    ids = {name: getattr(chain.program_ids, name) for name in chain.program_ids.model_fields_set}
    try:
        return load_idls(chain.idl_dir, ids, require=PROGRAMS)
    except IdlSetError as exc:
        value = repr(str(chain.idl_dir)) if chain.idl_dir is not None else "<not set>"
        raise ConfigError([ConfigIssue(
            source, "chain.idl_dir", value,
            f"a directory of Anchor 0.30+ IDL files, or nothing to use the IDLs installed with "
            f"gridnode; together they must cover {', '.join(PROGRAMS)} ({exc})")]) from None
