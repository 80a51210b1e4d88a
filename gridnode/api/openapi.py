"""GET /api/v1/openapi.json: an OpenAPI 3.1 document generated from the route table and the
pydantic models, so every served route is in it with the shapes it really validates."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gridnode import __version__
from gridnode.api.auth import COOKIE
from gridnode.api.models import EventMessage
from gridnode.api.problems import CONTENT_TYPE, ProblemDoc
from gridnode.chain.txtypes import TX_TYPES

if TYPE_CHECKING:
    from gridnode.api.server import Call, Route

REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{(\w+)(?::[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}")
_PATH_PARAMS: dict[str, dict[str, Any]] = {
    "id": {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
    "meter_id": {"type": "string", "minLength": 1, "maxLength": 64},
}
_REASONS = {400: "Malformed request", 401: "Missing, invalid or expired token",
            403: "Not allowed for this token", 404: "Not found", 409: "Conflicts with the state",
            413: "Body too large", 415: "Body is not JSON", 422: "Invalid fields",
            426: "Not a WebSocket request", 429: "Rate limited (see Retry-After)",
            503: "Not available now (see the detail)"}


async def document(call: Call) -> web.StreamResponse:
    from gridnode.api.routes import ROUTES

    return web.Response(text=_text(tuple(ROUTES)), content_type="application/json")


@functools.cache
def _text(routes: tuple[Route, ...]) -> str:
    return json.dumps(build(routes))


def build(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`."""
    Mode = Literal["validation", "serialization"]
    wanted: list[tuple[type[BaseModel], Mode]] = [(ProblemDoc, "serialization"),
                                                  (EventMessage, "serialization")]
    wanted += [(row.payload, "validation") for row in TX_TYPES.values()]
    for r in routes:
        if r.body is not None:
            wanted.append((r.body, "validation"))
        if r.response is not None:
            wanted.append((r.response, "serialization"))
    wanted = list(dict.fromkeys(wanted))
    keys, defs = models_json_schema(wanted, ref_template=REF)
    schemas = defs.get("$defs", {})
    create = schemas.get("CreateTransaction", {}).get("properties", {}).get("payload")
    item = schemas.get("BatchItem", {}).get("properties", {}).get("payload")
    for prop in (create, item):
        if prop is not None:
            prop["anyOf"] = [{"$ref": REF.format(model=row.payload.__name__)}
                             for row in TX_TYPES.values()]
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(_PARAM.sub(r"{\1}", r.path), {})[r.method.lower()] = _operation(r, keys)
    return {
        "openapi": "3.1.0",
        "info": {"title": "gridnode local API", "version": __version__,
                 "description": "The node's transactions (the platform's shapes), its meters, "
                                "the chain as it sees it, and live events. Errors are RFC 9457 "
                                "problem documents."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "cookieAuth": {"type": "apiKey", "in": "cookie", "name": COOKIE}}},
    }


def _operation(r: Route, keys: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": r.handler.__name__, "summary": r.summary,
                          "description": r.description or (r.handler.__doc__ or "").strip(),
                          "security": [] if r.roles is None
                          else [{"bearerAuth": []}, {"cookieAuth": []}]}
    if r.roles is not None:
        op["description"] += f"\n\nRoles: {', '.join(sorted(r.roles))}."
    params = [{"name": name, "in": "path", "required": True, "schema": _PATH_PARAMS[name]}
              for name in _PARAM.findall(r.path)]
    if r.query is not None:
        schema = r.query.model_json_schema(by_alias=True, ref_template=REF)
        required = set(schema.get("required", ()))
        params += [{"name": name, "in": "query", "required": name in required, "schema": prop}
                   for name, prop in schema.get("properties", {}).items()]
    if r.writes:
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "description": "the same key with the same request gets the first "
                                      "answer again; with another request, 422",
                       "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                                  "pattern": "^[\\x20-\\x7e]+$"}})
    if params:
        op["parameters"] = params
    if r.body is not None:
        op["requestBody"] = {"required": not r.body_optional, "content": {
            "application/json": {"schema": keys[(r.body, "validation")]}}}
    responses: dict[str, Any] = {}
    if r.websocket:
        responses["101"] = {"description": "Switching Protocols: events as EventMessage JSON"}
    else:
        schema = (keys[(r.response, "serialization")] if r.response is not None
                  else {"type": "object"} if r.media_type == "application/json"
                  else {"type": "string"})
        responses[str(r.ok)] = {"description": r.summary, "content": {
            r.media_type: {"schema": schema}}} if r.media_type else {"description": r.summary}
    problem = {CONTENT_TYPE: {"schema": {"$ref": REF.format(model="ProblemDoc")}}}
    for code in sorted({*r.errors, 405, 500}):
        responses[str(code)] = {"description": _REASONS.get(code, "Error"), "content": problem}
    op["responses"] = responses
    return op
