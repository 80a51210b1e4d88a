"""Every endpoint of the API, as data: the server mounts these rows and the OpenAPI document is
generated from them (so a route cannot be served without being documented)."""

from __future__ import annotations

from gridnode.api import (
    alerts,
    dashboard,
    deliveries,
    metrics,
    node,
    openapi,
    transactions,
    webhooks,
    ws,
)
from gridnode.api.auth import Role
from gridnode.api.models import (
    AlertList,
    BatchCreate,
    BatchCreated,
    ChainState,
    CreatedTransaction,
    CreateTransaction,
    EventsQuery,
    FeeEstimate,
    FeeQuery,
    Health,
    IntervalList,
    IntervalQuery,
    ListQuery,
    Login,
    MeterList,
    Ready,
    RetryRequest,
    RetryResult,
    Session,
    TransactionDetail,
    TransactionList,
    TransactionStats,
    TransactionStatus,
)
from gridnode.api.server import OPERATOR, READ, WRITE, Route

OP = "{id:[0-9]{1,18}}"
TX = "/api/v1/transactions"
# Errors every authenticated route may answer.
AUTH = (401, 403, 429, 503)
# Node-wide figures: not for a user token, which sees only its own operations and meters.
NODE_WIDE = frozenset({Role.OPERATOR, Role.MONITOR})

ROUTES: list[Route] = [
    Route("GET", "/", dashboard.index, "Get the dashboard", None, media_type="text/html"),
    Route("GET", "/static/dashboard.css", dashboard.stylesheet, "Get the dashboard's style",
          None, media_type="text/css"),
    Route("GET", "/static/dashboard.js", dashboard.script, "Get the dashboard's script", None,
          media_type="text/javascript"),
    Route("POST", "/api/v1/login", dashboard.login, "Log in the dashboard", None, body=Login,
          response=Session, errors=(400, 401, 403, 413, 415, 422, 503),
          description="Checks the token and answers with an HttpOnly cookie holding it, which "
                      "the dashboard's requests and WebSocket then send."),
    Route("GET", "/api/v1/session", dashboard.session, "Get the dashboard's session", None,
          response=Session),
    Route("POST", "/api/v1/logout", dashboard.logout, "Log out the dashboard", None, ok=204,
          errors=(400,), media_type=""),
    Route("GET", "/health", node.health, "Check liveness", None, response=Health),
    Route("GET", "/ready", node.ready, "Check readiness", None, response=Ready, errors=(503,)),
    Route("GET", "/api/v1/openapi.json", openapi.document, "Get this OpenAPI document", None),
    Route("GET", "/metrics", metrics.metrics, "Get Prometheus metrics", NODE_WIDE,
          errors=AUTH, media_type="text/plain"),
    Route("POST", f"{TX}/create", transactions.create, "Create a transaction", WRITE, ok=201,
          body=CreateTransaction, response=CreatedTransaction, writes=True,
          errors=(*AUTH, 400, 409, 413, 415, 422)),
    Route("POST", f"{TX}/batch/create", transactions.create_batch,
          "Create transactions, all or none", WRITE, ok=201, body=BatchCreate,
          response=BatchCreated, writes=True, errors=(*AUTH, 400, 409, 413, 415, 422)),
    Route("GET", f"{TX}/user", transactions.list_user, "List transactions", READ,
          query=ListQuery, response=TransactionList, errors=(*AUTH, 422)),
    Route("GET", f"{TX}/stats", transactions.stats, "Get transaction statistics", READ,
          response=TransactionStats, errors=AUTH),
    Route("GET", f"{TX}/{OP}", transactions.get_detail, "Get a transaction", READ,
          response=TransactionDetail, errors=(*AUTH, 404)),
    Route("GET", f"{TX}/{OP}/status", transactions.get_status, "Get a transaction's status",
          READ, response=TransactionStatus, errors=(*AUTH, 404)),
    Route("POST", f"{TX}/{OP}/submit", transactions.submit, "Submit a created transaction",
          WRITE, response=TransactionStatus, writes=True, errors=(*AUTH, 400, 404, 409, 413)),
    Route("POST", f"{TX}/{OP}/retry", transactions.retry, "Retry a transaction", WRITE,
          body=RetryRequest, body_optional=True, response=RetryResult, writes=True,
          errors=(*AUTH, 400, 404, 409, 413, 415, 422)),
    Route("GET", "/api/v1/meters", node.meters, "List meters", READ, response=MeterList,
          errors=AUTH),
    Route("GET", "/api/v1/meters/{meter_id}/intervals", node.intervals, "List a meter's "
          "intervals", READ, query=IntervalQuery, response=IntervalList,
          errors=(*AUTH, 404, 422)),
    Route("GET", "/api/v1/chain", node.chain, "Get the chain's state", READ, response=ChainState,
          errors=AUTH),
    Route("GET", "/api/v1/alerts", alerts.list_alerts, "List alerts", NODE_WIDE,
          response=AlertList, errors=AUTH),
    Route("GET", "/api/v1/fees/estimate", node.fee_estimate, "Estimate a transaction's fee",
          READ, query=FeeQuery, response=FeeEstimate, errors=(*AUTH, 409, 422)),
    Route("GET", "/api/v1/ws", ws.events_ws, "Stream events", READ, query=EventsQuery,
          websocket=True, errors=(*AUTH, 422, 426),
          description="A WebSocket (101 Switching Protocols): one JSON text message per event "
                      "(schema EventMessage), oldest first; with `since`, the events after that "
                      "id are replayed from the durable log before live ones."),
    Route("POST", "/api/v1/webhooks", webhooks.add_webhook, "Register a webhook", OPERATOR,
          ok=201, body=webhooks.WebhookCreate, response=webhooks.WebhookCreated, writes=True,
          errors=(*AUTH, 400, 409, 413, 415, 422)),
    Route("GET", "/api/v1/webhooks", webhooks.list_webhooks, "List webhooks", OPERATOR,
          response=webhooks.WebhookList, errors=AUTH),
    Route("DELETE", f"/api/v1/webhooks/{OP}", webhooks.remove_webhook, "Remove a webhook",
          OPERATOR, ok=204, errors=(*AUTH, 404), media_type=""),
    Route("GET", "/api/v1/deliveries", deliveries.list_deliveries, "List deliveries", OPERATOR,
          query=deliveries.DeliveriesQuery, response=deliveries.DeliveryList,
          errors=(*AUTH, 422)),
    Route("POST", f"/api/v1/deliveries/{OP}/replay", deliveries.replay, "Replay a delivery",
          OPERATOR, response=deliveries.ReplayResult, writes=True,
          errors=(*AUTH, 400, 404, 409, 422)),
]
