"""Configuration loading: the example is valid, and every mistake is reported with its place."""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from gridnode.config import ConfigError, GridnodeConfig, load_config, parse_config
from gridnode.config.chain import ProgramIds

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "gridnode.example.toml"


def _errors(text: str) -> list[tuple[str, str, str, str]]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "site.toml")
    return [tuple(e) for e in exc.value.errors]


def test_example_config_is_valid_and_uses_the_gridtokenx_program_ids() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.chain is not None
    assert cfg.chain.program_ids == ProgramIds()
    assert cfg.chain.program_ids.oracle == "DvdtU4quEbuxUY2FckmvcXwTpC9qp4HLJKb1PMLaqAoE"
    assert [b.kind for b in cfg.meters.buses] == ["rtu", "tcp"]
    assert cfg.meters.mqtt is not None and cfg.meters.mqtt.meters[1].fields is not None


def test_empty_config_means_defaults_without_chain_or_meters() -> None:
    cfg = parse_config("")
    assert cfg.chain is None and cfg.upstream is None
    assert cfg.meters.buses == [] and cfg.meters.mqtt is None
    assert cfg.intervals.minutes == 15 and cfg.logging.format == "kv"


def test_three_mistakes_are_all_reported_with_their_key_paths() -> None:
    errors = _errors("""
[node]
id = "site-7"
colour = "blue"

[[meters.buses]]
kind = "tcp"
host = "10.0.0.5"
port = 70000

[[meters.buses.meters]]
meter_id = "m1"
unit_id = 1
profile = "sdm630"
rated_power_w = 1000

[intervals]
minutes = 7
""")
    assert len(errors) == 3
    by_path = {path: (file, value, allowed) for file, path, value, allowed in errors}
    assert set(by_path) == {"node.colour", "meters.buses[0].port", "intervals.minutes"}
    assert all(file == "site.toml" for file, _, _ in by_path.values())
    assert by_path["node.colour"][1] == "'blue'"
    assert "known keys here" in by_path["node.colour"][2] and "timezone" in by_path["node.colour"][2]
    assert by_path["meters.buses[0].port"][1] == "70000"
    assert "65535" in by_path["meters.buses[0].port"][2]
    assert by_path["intervals.minutes"][1] == "7"
    assert "1, 5, 15, 30 or 60" in by_path["intervals.minutes"][2]


def test_union_entries_report_keys_not_internal_tags() -> None:
    errors = _errors("""
[[meters.buses]]
kind = "rtu"
port = "/dev/ttyUSB0"
baudrate = 9601
speed = 1

[[meters.buses]]
kind = "usb"

[[meters.mqtt.meters]]
meter_id = "a-meter-id-that-is-far-too-long-for-the-chain"
format = "tasmota"
topic = "tele/x/SENSOR"

[[meters.mqtt.meters]]
meter_id = "g"
format = "generic"
topic = "x"
""")
    paths = {e[1]: e for e in errors}
    assert set(paths) == {"meters.buses[0].baudrate", "meters.buses[0].speed",
                          "meters.buses[1].kind", "meters.mqtt.meters[0].meter_id",
                          "meters.mqtt.meters[1]"}
    assert "9600" in paths["meters.buses[0].baudrate"][3]
    assert "'rtu', 'tcp', 'rtu_over_tcp'" in paths["meters.buses[1].kind"][3]
    assert "32 bytes" in paths["meters.mqtt.meters[0].meter_id"][3]
    assert "fields" in paths["meters.mqtt.meters[1]"][3]


def test_cross_entry_rules_name_the_duplicate() -> None:
    errors = _errors("""
[[meters.buses]]
kind = "rtu"
port = "/dev/ttyUSB0"
[[meters.buses.meters]]
meter_id = "m1"
unit_id = 3
profile = "p"
rated_power_w = 1
[[meters.buses.meters]]
meter_id = "m2"
unit_id = 3
profile = "p"
rated_power_w = 1

[[meters.buses]]
kind = "rtu"
port = "/dev/ttyUSB0"

[[meters.mqtt.meters]]
meter_id = "m1"
format = "shelly"
topic = "shellies/pro3em"
""")
    paths = [e[1] for e in errors]
    assert "meters.buses[0].meters[1].unit_id" in paths
    assert "meters.buses[1].port" in paths
    assert "meters.buses[0].meters[0].meter_id" in paths
    assert "meters.mqtt.meters[0].meter_id" in paths


def test_unreadable_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable TOML file"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\nid = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert exc.value.errors[0].file == str(bad)
    assert "valid TOML" in exc.value.errors[0].allowed


def test_keypair_path_prefers_the_systemd_credential(tmp_path: Path) -> None:
    cfg = parse_config('[keys]\ngateway_keypair = "/etc/gridnode/keypair.json"\n')
    assert cfg.keys.gateway_keypair_path({}) == Path("/etc/gridnode/keypair.json")
    creds = tmp_path / "creds"
    creds.mkdir()
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    # Credential directory without the credential: fall back to the configured path.
    assert cfg.keys.gateway_keypair_path(env) == Path("/etc/gridnode/keypair.json")
    (creds / "keypair").write_text("[]")
    assert cfg.keys.gateway_keypair_path(env) == creds / "keypair"


def test_data_dir_defaults_to_the_systemd_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/gridnode")
    assert parse_config("").node.database == Path("/var/lib/gridnode/gridnode.db")
    monkeypatch.delenv("STATE_DIRECTORY")
    assert parse_config("").node.data_dir == Path("var/gridnode")


def test_infinite_or_nan_numbers_are_refused_everywhere() -> None:
    # inf would switch a plausibility bound or an age check off; nan compares false to anything.
    errors = _errors("""
[meters]
max_age_s = inf
plausibility_margin = nan

[[meters.profiles]]
name = "site"
[[meters.profiles.registers]]
role = "import_wh"
address = 0
scale = inf

[[meters.buses]]
kind = "tcp"
host = "10.0.0.5"
timeout_s = -inf
[[meters.buses.meters]]
meter_id = "m1"
unit_id = 1
profile = "sdm630"
rated_power_w = inf

[[meters.mqtt.meters]]
meter_id = "m2"
format = "tasmota"
topic = "tele/m2/SENSOR"
rated_power_w = nan

[outbox]
max_age_hours = inf
""")
    by_path = {path: (value, allowed) for _, path, value, allowed in errors}
    assert set(by_path) == {"meters.max_age_s", "meters.plausibility_margin",
                            "meters.profiles[0].registers[0].scale",
                            "meters.buses[0].timeout_s", "meters.buses[0].meters[0].rated_power_w",
                            "meters.mqtt.meters[0].rated_power_w", "outbox.max_age_hours"}
    assert by_path["meters.max_age_s"] == ("inf", "a finite number")
    assert by_path["meters.mqtt.meters[0].rated_power_w"] == ("nan", "a finite number")


def test_a_bad_api_bind_is_one_error_at_its_key() -> None:
    errors = _errors('[api]\nbind = "not-an-ip"\n')
    assert errors == [("site.toml", "api.bind", "'not-an-ip'",
                       "an IPv4 or IPv6 address such as 127.0.0.1 or ::1")]
    assert str(parse_config('[api]\nbind = "::1"\n').api.bind) == "::1"


def test_recovery_rules_take_only_a_budget() -> None:
    # The action of each failure kind is fixed in code; a configured one was silently ignored.
    errors = _errors('[outbox.recovery]\nnetwork_timeout = { action = "backoff", max = 3 }\n')
    assert errors == [("site.toml", "outbox.recovery.network_timeout.action", "'backoff'",
                       "no such key; known keys here: max")]
    cfg = parse_config("[outbox.recovery]\nnetwork_timeout = { max = 5 }\n")
    assert cfg.outbox.recovery.network_timeout.max == 5


def test_mqtt_topics_are_one_meter_each_and_never_wildcards() -> None:
    errors = _errors("""
[[meters.mqtt.meters]]
meter_id = "all"
format = "tasmota"
topic = "#"
[[meters.mqtt.meters]]
meter_id = "some"
format = "gridtokenx"
topic = "gridtokenx/ami/telemetry/+"
""")
    assert [e[1] for e in errors] == ["meters.mqtt.meters[0].topic", "meters.mqtt.meters[1].topic"]
    assert all("without the wildcards + and #" in e[3] for e in errors)

    # The same topic twice, and a generic meter on a topic a Shelly prefix already subscribes.
    errors = _errors("""
[[meters.mqtt.meters]]
meter_id = "a"
format = "tasmota"
topic = "tele/a/SENSOR"
[[meters.mqtt.meters]]
meter_id = "b"
format = "tasmota"
topic = "tele/a/SENSOR"
[[meters.mqtt.meters]]
meter_id = "c"
format = "shelly"
topic = "shellies/c"
[[meters.mqtt.meters]]
meter_id = "d"
format = "generic"
topic = "shellies/c/status/em:0"
fields = { import_energy = "total" }
""")
    assert [(e[1], e[2]) for e in errors] == [
        ("meters.mqtt.meters[1].topic", "'tele/a/SENSOR'"),
        ("meters.mqtt.meters[3].topic", "'shellies/c/status/em:0'")]
    assert "is also meters.mqtt.meters[0]'s; one of them would receive nothing" in errors[0][3]
    assert "meters.mqtt.meters[2]'s" in errors[1][3]


@pytest.mark.parametrize("first, second", [
    ("localhost", "127.0.0.1"), ("127.0.0.1", "::1"), ("LOCALHOST.", "[::1]"),
    ("::ffff:127.0.0.1", "localhost"), ("Inverter.LAN", "inverter.lan."),
    ("10.0.0.5", "::ffff:10.0.0.5")])
def test_one_modbus_endpoint_however_its_host_is_written(first: str, second: str) -> None:
    text = "".join(f'[[meters.buses]]\nkind = "tcp"\nhost = "{h}"\nport = 1\n'
                   for h in (first, second))
    errors = _errors(text)
    assert [e[1] for e in errors] == ["meters.buses[1].host"]
    assert f"not already used by meters.buses[0] ('{first}:1'" in errors[0][3]
    # Another port, or another machine, is another bus.
    parse_config(text.replace("port = 1\n", "port = 2\n", 1))
    parse_config(text.replace(f'"{second}"', '"10.9.9.9"'))


def test_tls_files_without_tls_are_refused() -> None:
    errors = _errors('[meters.mqtt]\nca_file = "/etc/gridnode/ca.pem"\n')
    assert errors[0][1] == "meters.mqtt" and "tls = true when ca_file is given" in errors[0][3]
    errors = _errors('[meters.mqtt]\ntls = true\nkey_file = "/etc/gridnode/client.key"\n')
    assert "cert_file with key_file" in errors[0][3]


# --- the example names every key ---------------------------------------------------------------

_COMMENTED_KEY = re.compile(r"^# (\[\[?[a-z_.]+\]\]?|[A-Za-z_\"][\w\".-]* = .*)$")


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted key paths a model accepts (list items share their list's path; a dict field with
    free-form keys is one path; every member of a union counts)."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        keys.add(path)
        for inner in _annotations(field.annotation):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                keys |= _model_keys(inner, path + ".")
    return keys


def _annotations(tp: object) -> list[object]:
    """`tp` and what it holds: through Optional, unions, Annotated, lists and tuples, not dicts."""
    origin = typing.get_origin(tp)
    if origin is dict:
        return [tp]
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        args = args[:1]
    return [tp, *(inner for a in args if a is not Ellipsis for inner in _annotations(a))]


def _doc_keys(doc: object, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        if isinstance(item, dict):
            for name, value in item.items():
                keys.add(f"{prefix}{name}")
                keys |= _doc_keys(value, f"{prefix}{name}.")
    return keys


def test_the_example_names_every_key_the_models_accept() -> None:
    """Every key, set or shown commented out as `# key = value` (or `# [table]`): an installer
    reads the example as the reference of the configuration."""
    text = EXAMPLE.read_text()
    uncommented = "\n".join(line[2:] if _COMMENTED_KEY.match(line) else line
                            for line in text.splitlines())
    doc = tomllib.loads(uncommented)
    free_form = {"logging.levels"}     # dict fields: their keys are the operator's
    named = {k for k in _doc_keys(doc) if not any(k.startswith(f + ".") for f in free_form)}
    accepted = _model_keys(GridnodeConfig)
    assert accepted - named == set(), "keys the example does not name"
    assert named - accepted == set(), "keys in the example that no model accepts"
