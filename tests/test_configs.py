"""The tests' configuration builder writes the TOML that reads back as the data it was given."""

from __future__ import annotations

import tomllib
from pathlib import Path

from gridnode.config import parse_config
from tests.configs import FAST_RPC, merge, modbus_meter, mqtt, mqtt_meter, tcp_bus, toml


def test_toml_reads_back_as_the_sections_without_the_none_keys(tmp_path: Path) -> None:
    sections = {
        "node": {"data_dir": tmp_path, "id": 'a "quoted" \u00e9 id'},
        "api": {},
        "chain": {"rpc_urls": ["http://127.0.0.1:1"], "request_timeout_s": 2.5,
                  "require_registered_meters": False, "commitment": None,
                  "rpc": merge(FAST_RPC, {"blockhash_max_age_s": None})},
        "meters": {"buses": [tcp_bus(5020, modbus_meter("m1", 1, "sdm630"), timeout_s=0.5)],
                   "profiles": [{"name": "p", "registers": [{"role": "import_wh",
                                                             "address": 72}]}],
                   "mqtt": mqtt(mqtt_meter("m2", "t"))},
        "logging": {"levels": {"gridnode.noisy": "debug"}},
    }
    read = tomllib.loads(toml(sections))
    assert read["node"] == {"data_dir": str(tmp_path), "id": 'a "quoted" \u00e9 id'}
    assert read["api"] == {}
    assert read["chain"]["rpc"] == {"health_interval_s": 0.5, "blockhash_refresh_s": 0.3}
    assert "commitment" not in read["chain"] and read["chain"]["request_timeout_s"] == 2.5
    assert read["meters"]["buses"][0]["meters"][0]["meter_id"] == "m1"
    assert read["meters"]["profiles"][0]["registers"] == [{"role": "import_wh", "address": 72}]
    assert read["meters"]["mqtt"]["meters"][0]["topic"] == "t"
    assert read["logging"]["levels"] == {"gridnode.noisy": "debug"}
    assert FAST_RPC["blockhash_max_age_s"] == 1.0          # merging never changes its parts
    del read["meters"]["profiles"]        # incomplete on purpose; the rest is a valid config
    read["node"]["id"] = "node-1"
    assert parse_config(toml(read)).meters.buses[0].meters[0].profile == "sdm630"
