"""The upstream platform as a delivery destination ([upstream]).

What goes up, each item with a stable idempotency key (the platform dedupes on it):

- ``interval.finalized``: a meter reading's operation reached `finalized`: the interval, its
  energy, the finalized transaction's signature and slot and its decoded chain events; key
  ``<node>:interval:<meter>:<interval_end>``, ordered per meter.
- ``operation.outcome``: any other operation that ended `finalized` or `failed` (key
  ``<node>:operation:<op id>:finalized``, or ``...:failed:<event id>`` since an operator's retry
  can fail again).
- ``settlement.completed`` / ``settlement.defaulted``: the settlement row's fields (key
  ``<node>:settlement:<trade record>:completed``, a default again with its event id).

A request is ``POST url`` with ``{"node_id", "items": [{"key", "type", "meter_id", "at_ms",
"data"}]}``, signed the Standard Webhooks way (gridnode.deliveries.signing), with an
``Idempotency-Key`` (an RFC 8941 sf-string) that is a hash of the item keys: a retry of the same
items is the same request (same key, same bytes), a different set of items (or an item an
operator replayed) a new one. An item
counts as delivered only when a 2xx answer names it in ``accepted`` (a duplicate the platform
already holds is accepted too); one named in ``rejected`` is parked with the platform's reason;
one not named is tried again. 429/503 Retry-After is honoured; 410 Gone disables the
destination; another 4xx (or a 3xx: redirects are not followed) parks the request's items with
the answer kept; 408, 409, 425, other 5xx, timeouts and connection errors are retried.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridnode.config import ConfigError, ConfigIssue
from gridnode.deliveries import signing
from gridnode.deliveries.backoff import retry_after
from gridnode.deliveries.engine import Delivery, Item, Outcome, Policy
from gridnode.deliveries.http import HttpClient
from gridnode.store import deliveries as stored
from gridnode.store.events import Event

if TYPE_CHECKING:
    from gridnode.config import GridnodeConfig
    from gridnode.store import Store

NAME = "upstream"
KIND = "upstream"
RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
ANSWER_MAX = 2000
KEY_ROTATE_ATTEMPTS = 5     # failed attempts of an item before its request gets a new key
OUTCOME_STATUSES = frozenset({"finalized", "failed"})
SETTLEMENT_EVENTS = frozenset({"settlement.completed", "settlement.defaulted"})


def batch_key(keys: Sequence[str]) -> str:
    """The request's idempotency key (and webhook id): the same items, the same key."""
    return "b_" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:40]


def body_of(node_id: str, items: Sequence[Delivery]) -> bytes:
    """The request body: compact JSON with a stable key order (a retry sends the same bytes)."""
    return json.dumps({"node_id": node_id, "items": [d.payload for d in items]},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_secrets(config: GridnodeConfig) -> list[str]:
    """The upstream signing secrets (the systemd credential, else `secret_file`): ConfigError
    naming the key when missing, readable by others or not one or two whsec_ secrets."""
    up = config.upstream
    assert up is not None
    path, key = up.secret_path()

    def bad(value: str, what: str) -> ConfigError:
        return ConfigError([ConfigIssue(config.source, key, value, what)])

    if path is None:
        raise bad("<missing>", f"a file holding the whsec_ signing secret (or the systemd "
                  f"credential '{up.credential}'); upstream requests are always signed")
    try:
        st = path.stat()
        if key == "upstream.secret_file" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise bad(repr(str(path)), f"a file only its owner can read (mode 0600; it is "
                      f"{stat.S_IMODE(st.st_mode):04o})")
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(repr(str(path)), f"a readable file holding the whsec_ secret "
                  f"({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return signing.parse_secrets(text)
    except signing.SigningError as exc:
        raise bad(repr(str(path)), f"one or two whsec_ secrets ({exc})") from None


class UpstreamDestination:
    """See the module docstring."""

    kind = KIND

    def __init__(self, store: Store, node_id: str, url: str, secrets: Sequence[str], *,
                 timeout_s: float = 10.0, name: str = NAME) -> None:
        self.name = name
        self.store = store
        self.node_id = node_id
        self.url = url
        self.secrets = list(secrets)
        self.timeout_s = timeout_s
        self.http = HttpClient(timeout_s)

    @classmethod
    def from_config(cls, config: GridnodeConfig, store: Store
                    ) -> tuple[UpstreamDestination, Policy]:
        up = config.upstream
        assert up is not None
        dest = cls(store, config.node.id, str(up.url), load_secrets(config),
                   timeout_s=up.timeout_s)
        return dest, Policy(batch_size=up.batch_size, retry_base_s=up.retry_base_s,
                            retry_max_s=up.retry_max_s, poll_s=up.poll_s,
                            config={"url": str(up.url)})

    # -- selection -----------------------------------------------------------------------------

    async def select(self, event: Event) -> Item | None:
        if event.type == "operation.status" and event.operation_id is not None:
            new = event.data.get("new")
            if new not in OUTCOME_STATUSES:
                return None
            return await self._operation_item(event, str(new))
        if event.type in SETTLEMENT_EVENTS:
            return self._settlement_item(event)
        return None

    async def _operation_item(self, event: Event, new: str) -> Item | None:
        assert event.operation_id is not None
        facts = await stored.operation_facts(self.store, event.operation_id)
        if facts is None:
            return None
        p = facts.payload
        node = self.node_id
        if facts.tx_type == "meter_reading" and new == "finalized":
            meter = str(p["meter_id"])
            data = {"meter_id": meter, "interval_start": p.get("interval_start"),
                    "interval_end": p["interval_end"],
                    "export_wh": p.get("energy_produced_wh"),
                    "import_wh": p.get("energy_consumed_wh"),
                    "backfilled": bool(p.get("backfilled", False)),
                    "operation_id": facts.operation_id, "signature": facts.signature,
                    "slot": facts.slot, "chain_events": facts.chain_events}
            key = f"{node}:interval:{meter}:{p['interval_end']}"
            return self._item(key, "interval.finalized", event, data, meter)
        meter_id = event.meter_id or (str(p["meter_id"]) if "meter_id" in p else None)
        data = {"operation_id": facts.operation_id, "tx_type": facts.tx_type,
                "operation_key": facts.idempotency_key, "status": new,
                "reason": event.data.get("reason"), "signature": facts.signature,
                "slot": facts.slot, "error": facts.last_error if new == "failed" else None,
                "payload": p}
        key = (f"{node}:operation:{facts.operation_id}:finalized" if new == "finalized"
               else f"{node}:operation:{facts.operation_id}:{new}:{event.id}")
        return self._item(key, "operation.outcome", event, data, meter_id)

    def _settlement_item(self, event: Event) -> Item:
        data = dict(event.data)
        ref = data.get("trade_record") or data.get("id") or event.id
        kind = event.type
        key = (f"{self.node_id}:settlement:{ref}:completed" if kind == "settlement.completed"
               else f"{self.node_id}:settlement:{ref}:defaulted:{event.id}")
        return self._item(key, kind, event, data, event.meter_id)

    def _item(self, key: str, kind: str, event: Event, data: Mapping[str, Any],
              order_key: str | None) -> Item:
        payload = {"key": key, "type": kind, "meter_id": order_key, "at_ms": event.at_ms,
                   "event_id": event.id, "data": dict(data)}
        return Item(key, kind, payload, order_key)

    # -- sending -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, items: Sequence[Delivery]) -> list[Outcome]:
        keys = [d.idempotency_key for d in items]
        body = body_of(self.node_id, items)
        # A platform that stores error answers under the Idempotency-Key (Stripe keeps 500s)
        # would give a retry the same error forever: an item an operator replayed, and every
        # KEY_ROTATE_ATTEMPTS failed attempts, make a new request key. Quick retries (a lost
        # answer) keep theirs. Items are deduped on their own keys whatever the request's.
        replays = await stored.replay_counts(self.store, [d.id for d in items])
        msg_id = batch_key([_generation(d, replays.get(d.id, 0)) for d in items])
        headers = {"Content-Type": "application/json", "Idempotency-Key": f'"{msg_id}"',
                   **signing.sign(self.secrets, msg_id, body)}
        async with self.http.session().post(self.url, data=body, headers=headers,
                                            allow_redirects=False) as resp:
            status = resp.status
            text = await resp.text(errors="replace")
            answer = f"HTTP {status}: {text[:ANSWER_MAX]}"
            if 200 <= status < 300:
                return _acknowledged(keys, text, answer)
            if status == 410:
                return [Outcome.disable(answer)] * len(items)
            if status in (429, 503):
                after = retry_after(resp.headers.get("Retry-After"))
                return [Outcome.retry(after, answer)] * len(items)
            if status in RETRYABLE or status >= 500:
                return [Outcome.retry(None, answer)] * len(items)
            return [Outcome.park(answer)] * len(items)


def _generation(d: Delivery, replays: int) -> str:
    gen = (replays, d.attempts // KEY_ROTATE_ATTEMPTS)
    return d.idempotency_key if gen == (0, 0) else f"{d.idempotency_key}#{gen[0]}:{gen[1]}"


def _acknowledged(keys: Sequence[str], text: str, answer: str) -> list[Outcome]:
    """Outcomes of a 2xx: delivered when named in `accepted`, parked when named in `rejected`,
    else tried again."""
    try:
        doc = json.loads(text)
        accepted = {str(k) for k in doc.get("accepted", [])}
        rejected = {str(r["key"]): r for r in doc.get("rejected", []) if isinstance(r, dict)}
    except (ValueError, TypeError, AttributeError, KeyError):
        return [Outcome.retry(None, f"2xx answer that names no item: {answer}")] * len(keys)
    out: list[Outcome] = []
    for key in keys:
        if key in accepted:
            out.append(Outcome.delivered())
        elif key in rejected:
            out.append(Outcome.park(f"rejected: {json.dumps(rejected[key])[:ANSWER_MAX]}"))
        else:
            out.append(Outcome.retry(None, "not named in the 2xx answer"))
    return out


def write_secret_file(path: Path) -> str:
    """Write a new whsec_ secret to `path` (mode 0600, never overwriting); returns it."""
    secret = signing.generate_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
