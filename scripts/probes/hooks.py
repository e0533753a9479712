"""Schemathesis hooks for scripts/probes/run.

They adapt generated requests to the documented rules that JSON Schema
cannot state, so that a schema-valid request is also valid for the service:
prices with at most 2 decimals, no product twice in one batch, order or
adjustment, one body per `Idempotency-Key`. One more hook only steers test data: the stateful
phase works as a single manager, so chained requests reach that manager's
products (see `_pin_manager`).

A rule the OpenAPI document could state (a pattern, a bound, a format) is
left alone on purpose: while the document is too loose the fuzzer must keep
reporting it, until the document says it.

Every adaptation applies to positive data only. A part of a request that
schemathesis generated to break the schema is sent as it was generated, so
the service's rejection of invalid input is still tested.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import TestPhase

# The characters Rust's `str::trim` removes (Unicode White_Space). The service
# trims names with it; Python's `str.strip` would also remove \x1c-\x1f.
_WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_MAX_PRICE = 1_000_000
_MAX_NAME = 200
# An `Idempotency-Key` the service takes: 1-255 visible ASCII characters,
# spaces allowed between them.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")
# The one manager of the stateful phase (see `_pin_manager`).
STATEFUL_MANAGER = "probe_stateful"


def _positive(case: Any, location: ParameterLocation) -> bool:
    meta = case.meta
    return meta is None or not meta.is_negative_at(location)


def _name_key(name: str) -> str:
    # How the service compares names: trimmed, then Unicode lower case.
    return name.strip(_WHITE_SPACE).lower()


def _unique_name(name: str, index: int, taken: set[str]) -> str:
    """`name` with a suffix that no other item of the batch has, still within
    200 characters after trimming."""
    suffix = f" #{index}"
    stem = name.strip(_WHITE_SPACE)[: _MAX_NAME - len(suffix)]
    candidate = stem + suffix
    n = 0
    while _name_key(candidate) in taken:
        n += 1
        suffix = f" #{index}.{n}"
        candidate = stem[: _MAX_NAME - len(suffix)] + suffix
    return candidate


def _two_decimals(price: Any) -> Any:
    """Rule: a price has at most 2 decimal places. The document cannot say so
    for a float: `multipleOf: 0.01` makes float-based validators reject 15.99
    itself (0.01 is not exact in binary). A price inside the documented range
    is rounded to cents, staying inside (0, 1,000,000]; anything else (another
    type, out of range) is left as generated."""
    if isinstance(price, bool) or not isinstance(price, float):
        return price
    if not 0 < price <= _MAX_PRICE:
        return price
    cents = round(price, 2)
    if cents <= 0:
        cents = 0.01
    return min(cents, float(_MAX_PRICE))


def _adapt_products(body: dict) -> None:
    """POST /api/inventory/products.

    Rules: prices have at most 2 decimals (see `_two_decimals`); no two items
    of one batch may name the same product, i.e. carry the same `id` or the
    same name after trimming and lower-casing (`uniqueItems` compares whole
    items, and only exactly). A repeated `id` is dropped from the later item,
    which then adds or updates by name; a repeated name gets a numeric suffix.
    """
    items = body.get("products")
    if not isinstance(items, list):
        return
    ids: set[str] = set()
    names: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if "price" in item:
            item["price"] = _two_decimals(item["price"])
        product_id = item.get("id")
        if isinstance(product_id, str):
            if product_id in ids:
                del item["id"]
            else:
                ids.add(product_id)
        name = item.get("name")
        # A name that is empty after trimming is invalid whatever else the
        # batch holds; it is left as generated.
        if isinstance(name, str) and _name_key(name):
            if _name_key(name) in names:
                name = item["name"] = _unique_name(name, index, names)
            names.add(_name_key(name))


def _once_per_product(body: dict, field: str) -> None:
    """POST /api/orders/process (`products`), POST /api/inventory/adjustments
    (`adjustments`).

    Rule: a request names each product at most once. `uniqueItems` cannot
    say "unique by `product_id`", so later items repeating a product are
    dropped (the first stays, so the list never becomes empty)."""
    lines = body.get(field)
    if not isinstance(lines, list):
        return
    seen: set[str] = set()
    kept = []
    for line in lines:
        product_id = line.get("product_id") if isinstance(line, dict) else None
        if isinstance(product_id, str):
            if product_id in seen:
                continue
            seen.add(product_id)
        kept.append(line)
    body[field] = kept


def _pin_manager(case: Any) -> None:
    """Not a rule, a way to reach deeper: in the stateful phase, where one
    request uses the ids an earlier response returned, every schema-valid
    request names the same manager. Products belong to their manager, so with
    a random `manager_id` per request the chained order, discontinue and list
    requests would all end in 404 or an empty list. The other phases keep
    generating `manager_id` freely."""
    meta = case.meta
    if meta is None or meta.phase.name != TestPhase.STATEFUL:
        return
    if _positive(case, ParameterLocation.QUERY) and isinstance(case.query, dict) and "manager_id" in case.query:
        case.query["manager_id"] = STATEFUL_MANAGER
    if _positive(case, ParameterLocation.BODY) and isinstance(case.body, dict) and "manager_id" in case.body:
        case.body["manager_id"] = STATEFUL_MANAGER


def _adapt_idempotency_key(case: Any) -> None:
    """Rule: one `Idempotency-Key` belongs to one request body; the same key
    with another body is a documented 422 IDEMPOTENCY_KEY_REUSED. The
    generator repeats keys across different bodies, so a well-formed key is
    replaced by one derived from the generated key and the body: the same
    body keeps its key (a real retry, answered with the first response), a
    different body gets a different key. A key that is not well-formed is left
    as generated, so the service's checks of the header are still tested."""
    headers = case.headers
    for header in list(headers):
        key = headers[header]
        if header.lower() == "idempotency-key" and isinstance(key, str) and _IDEMPOTENCY_KEY.fullmatch(key):
            payload = case.path + " " + json.dumps(case.body, sort_keys=True, default=str)
            digest = hashlib.sha256(f"{key}\n{payload}".encode()).hexdigest()
            headers[header] = f"probe-{digest[:40]}"


# `before_call` runs right before each request is sent, in every phase, after
# schemathesis has put values from earlier responses (stateful links, captured
# ids) into the case; schemathesis then validates the edited case again
# before it decides what the response must be.
def _known_cursor(case: Any) -> None:
    """Rule: `after` must be an event of the manager's own feed (400
    otherwise, a documented rule JSON Schema cannot state); generated ids
    name no such event, so a well-formed `after` of a schema-valid request
    is dropped (the feed from its start). A malformed one is left as
    generated, so the service's check of it is still tested."""
    if case.path == "/api/events" and _positive(case, ParameterLocation.QUERY) and isinstance(case.query, dict):
        case.query.pop("after", None)
    if case.path.endswith("/replay") and _positive(case, ParameterLocation.BODY) and isinstance(case.body, dict):
        case.body.pop("after", None)


def _reachable_url(case: Any) -> None:
    """Rule: a webhook URL must be an absolute http(s) URL whose host is not
    an internal address (documented; JSON Schema's `uri` format cannot say
    which hosts). A schema-valid body gets a public example URL."""
    if case.path == "/api/webhooks" and _positive(case, ParameterLocation.BODY) and isinstance(case.body, dict):
        if "url" in case.body:
            case.body["url"] = "https://hooks.example.com/inventory"


@schemathesis.hook
def before_call(context, case, kwargs):
    _pin_manager(case)
    _known_cursor(case)
    if case.method.upper() != "POST":
        return
    _reachable_url(case)
    if _positive(case, ParameterLocation.BODY) and isinstance(case.body, dict):
        if case.path == "/api/inventory/products":
            _adapt_products(case.body)
        elif case.path == "/api/orders/process":
            _once_per_product(case.body, "products")
        elif case.path == "/api/inventory/adjustments":
            _once_per_product(case.body, "adjustments")
    if case.path in ("/api/orders/process", "/api/inventory/adjustments") and _positive(
        case, ParameterLocation.HEADER
    ):
        _adapt_idempotency_key(case)
