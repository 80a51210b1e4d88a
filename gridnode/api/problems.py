"""RFC 9457 problem documents: every error the API answers, in one shape.

A problem names its kind (`type`, a stable URN per code), a short title, the HTTP status, and a
detail sentence; an invalid request lists each invalid field with its JSON pointer (RFC 6901),
what was wrong and what is allowed, in the spirit of ``gridnode check-config``. Nothing internal
(tracebacks, SQL, exception text) goes into a problem: an unexpected error is a 500 whose
`error_id` is logged with the traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import Field, ValidationError
from pydantic_core import ErrorDetails

from gridnode.api.models import Model
from gridnode.config.api import NO_SECRET

CONTENT_TYPE = "application/problem+json"


class FieldProblem(Model):
    pointer: str = Field(description="JSON pointer (RFC 6901) into the request; query "
                                     "parameters and headers as /query/<name>, /header/<name>")
    detail: str = Field(description="what is wrong with the value")
    allowed: str = Field(description="what the field accepts")


class ProblemDoc(Model):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None
    error_id: str | None = Field(default=None, description="on a 500: the id of the log line")
    reasons: list[str] | None = Field(default=None, description="on /ready: why not ready")
    alerts: list[str] | None = Field(default=None, description="on /ready: the alerts raised "
                                     "now")


class Problem(Exception):
    """An error answered as a problem document; `code` names its type."""

    def __init__(self, status: int, code: str, title: str, detail: str, *,
                 errors: Sequence[FieldProblem] = (), headers: Mapping[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = extra

    def doc(self, instance: str | None) -> ProblemDoc:
        return ProblemDoc(type=f"urn:gridnode:problem:{self.code}", title=self.title,
                          status=self.status, detail=self.detail, instance=instance,
                          errors=self.errors or None, **self.extra)

    def response(self, instance: str | None) -> web.Response:
        body = self.doc(instance).model_dump(mode="json", exclude_none=True)
        return web.Response(status=self.status, text=json.dumps(body),
                            content_type=CONTENT_TYPE, headers=self.headers)


def no_token_secret() -> Problem:
    """What every authenticated route answers while the node has no JWT secret."""
    return Problem(503, "no-token-secret", "Tokens are not configured", NO_SECRET,
                   headers={"Retry-After": "3600"})


def invalid(errors: Iterable[FieldProblem], detail: str = "the request has invalid fields",
            status: int = 422) -> Problem:
    errs = list(errors)
    return Problem(status, "invalid-request", "Invalid request",
                   f"{detail}: " + "; ".join(f"{e.pointer}: {e.detail}" for e in errs[:5])
                   + ("; ..." if len(errs) > 5 else ""), errors=errs)


def pointer(*parts: str | int) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def from_validation(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[FieldProblem]:
    """One FieldProblem per pydantic error, located under `prefix`."""
    return [FieldProblem(pointer=pointer(*prefix, *e["loc"]),
                         detail=e["msg"].removeprefix("Value error, "), allowed=allowed(e))
            for e in exc.errors(include_url=False)]


_TYPES = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "dict_type": "a JSON object",
    "model_type": "a JSON object", "list_type": "a JSON array", "missing": "a value (required)",
    "extra_forbidden": "nothing: the field is not known here",
    "json_invalid": "valid JSON", "model_attributes_type": "a JSON object",
}
_BOUNDS = {"greater_than": "greater than {gt}", "greater_than_equal": "at least {ge}",
           "less_than": "less than {lt}", "less_than_equal": "at most {le}",
           "string_too_short": "at least {min_length} character(s)",
           "string_too_long": "at most {max_length} character(s)",
           "too_short": "at least {min_length} item(s)", "too_long": "at most {max_length} item(s)",
           "literal_error": "one of {expected}", "enum": "one of {expected}",
           "string_pattern_mismatch": "text matching {pattern}"}


def allowed(e: ErrorDetails) -> str:
    """What a field accepts, from a pydantic error (its type and context)."""
    kind = e["type"]
    if kind in _TYPES:
        return _TYPES[kind]
    ctx = e.get("ctx") or {}
    if kind in _BOUNDS:
        try:
            return _BOUNDS[kind].format(**ctx)
        except KeyError:
            pass
    return e["msg"].removeprefix("Value error, ")
