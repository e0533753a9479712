"""The brief's four user stories, errors included, run through a Python client
generated from the service's own OpenAPI document.

Usage: client_stories.py BASE_URL CLIENT_DIR

CLIENT_DIR holds the generated package `probe_client`. Every check compares
the status, the parsed model type the document promises for that status, and
the exact JSON body. All checks run; the last line is
`client: N checks, M failures` and the exit status is 1 if any check failed.

Each run works as a manager of its own (a fresh `manager_id`), so it can run
against a service that already holds data, and it makes about 25 requests for
that manager, well under the default limit of 100 per hour.

With PROBE_WEBHOOK_STORY=1 (the service must then allow loopback with
WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8) a fifth story registers a webhook
endpoint at a receiver on loopback, makes an order, and checks the signed
delivery (with the Standard Webhooks library) and the deliveries log.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

if len(sys.argv) != 3:
    sys.exit(__doc__)
BASE_URL, CLIENT_DIR = sys.argv[1].rstrip("/"), sys.argv[2]
sys.path.insert(0, CLIENT_DIR)

from probe_client import Client
from probe_client.api.inventory import add_products, discontinue_product, list_products
from probe_client.api.orders import process_order
from probe_client.errors import UnexpectedStatus
from probe_client.models import (
    AddProductsRequest,
    Customer,
    DiscontinueRequest,
    ErrorEnvelope,
    OrderLineInput,
    ProcessOrderRequest,
    ProcessOrderResponse,
    ProductInput,
    ProductsResponse,
)

# The webhook story needs a service that may deliver to loopback.
WEBHOOK_STORY = os.environ.get("PROBE_WEBHOOK_STORY") == "1"

# Extra arguments of the client's httpx.Client: scripts/probes/auth_probe.py,
# which imports this module, adds a hook that gives each request a bearer
# token for the manager it names.
HTTPX_ARGS: dict[str, Any] = {}

PRODUCT_ID = re.compile(r"prod_\d{3,}")
ORDER_ID = re.compile(r"ord_\d{3,}")
PRODUCT_KEYS = {"id", "name", "price", "quantity"}


class Mismatch(Exception):
    pass


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise Mismatch(what)


def body_of(response: Any) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise Mismatch(f"body is not JSON: {response.content[:200]!r}") from exc


def expect_response(response: Any, status: int, model: type | None) -> Any:
    """The status, the generated model the document promises for it, the
    `X-Request-ID` every response carries; returns the decoded JSON body."""
    body = body_of(response)
    expect(
        response.status_code == status,
        f"status {int(response.status_code)}, expected {status}; body {response.content[:300]!r}",
    )
    if model is None:
        expect(response.content == b"", f"expected an empty body, got {response.content[:200]!r}")
    else:
        expect(
            isinstance(response.parsed, model),
            f"the generated client parsed {type(response.parsed).__name__}, expected {model.__name__}",
        )
    expect(bool(response.headers.get("x-request-id")), "no X-Request-ID header")
    return body


def expect_error(response: Any, status: int, code: str, details: dict[str, Any] | None = None) -> dict:
    """The brief's error envelope and nothing else. `details` maps each
    expected key to its exact text, or to None where any text will do; the
    response must name exactly those keys."""
    body = expect_response(response, status, ErrorEnvelope)
    expect(isinstance(body, dict) and set(body) == {"error"}, f"top level is not only `error`: {body}")
    error = body["error"]
    expect(set(error) == {"code", "message", "details"}, f"error keys are {sorted(error)}")
    expect(error["code"] == code, f"code {error['code']!r}, expected {code!r}")
    expect(isinstance(error["message"], str) and error["message"], "message is not a non-empty string")
    got = error["details"]
    expect(isinstance(got, dict), f"details is not an object: {got!r}")
    expect(all(isinstance(v, str) and v for v in got.values()), f"details values are not all strings: {got}")
    if details is not None:
        expect(set(got) == set(details), f"details keys {sorted(got)}, expected {sorted(details)}")
        for key, text in details.items():
            expect(text is None or got[key] == text, f"details[{key!r}] is {got[key]!r}, expected {text!r}")
    return error


def expect_products(body: Any, expected: list[dict]) -> None:
    """Exactly `{"products": [...]}` with exactly these products, in order."""
    expect(isinstance(body, dict) and set(body) == {"products"}, f"body keys are not exactly products: {body}")
    products = body["products"]
    expect(isinstance(products, list), "products is not a list")
    for product in products:
        expect(isinstance(product, dict) and set(product) == PRODUCT_KEYS, f"product shape {product}")
        expect(type(product["price"]) in (int, float), f"price is not a JSON number: {product}")
        expect(type(product["quantity"]) is int, f"quantity is not a JSON integer: {product}")
    expect(products == expected, f"products {products}, expected {expected}")


class Run:
    def __init__(self) -> None:
        self.checks = 0
        self.failures = 0

    def check(self, name: str, test: Callable[[], None]) -> None:
        self.checks += 1
        try:
            test()
        except Mismatch as exc:
            self.failures += 1
            print(f"FAIL {name}: {exc}")
        except UnexpectedStatus as exc:
            self.failures += 1
            print(f"FAIL {name}: undocumented status {exc.status_code}: {exc.content[:300]!r}")
        except Exception:  # a crash of the probe itself is a failure too
            self.failures += 1
            print(f"FAIL {name}: {traceback.format_exc()}")
        else:
            print(f"ok   {name}")


def main() -> int:
    client = Client(base_url=BASE_URL, raise_on_unexpected_status=True, timeout=30.0, httpx_args=HTTPX_ARGS)
    manager = f"probe_{int(time.time())}_{os.getpid()}"
    other_manager = manager + "_other"
    run = Run()
    made: dict[str, dict] = {}

    def listed(status: str | None = None, who: str = manager) -> Any:
        kwargs = {"manager_id": who}
        if status is not None:
            kwargs["status"] = status
        return expect_response(list_products.sync_detailed(client=client, **kwargs), 200, ProductsResponse)

    def order(lines: list[tuple[str, int]], who: str = manager) -> Any:
        request = ProcessOrderRequest(
            manager_id=who,
            customer=Customer(id="cust_456", email="customer@example.com"),
            products=[OrderLineInput(product_id=p, quantity=q) for p, q in lines],
        )
        return process_order.sync_detailed(client=client, body=request)

    # Story 1: add products (the brief's example, then two more).
    def add_brief_products() -> None:
        request = AddProductsRequest(
            manager_id=manager,
            products=[
                ProductInput(name="Premium Coffee Beans", price=15.99, quantity=100),
                ProductInput(name="Ceramic Coffee Mug", price=12.99, quantity=50),
            ],
        )
        body = expect_response(add_products.sync_detailed(client=client, body=request), 201, ProductsResponse)
        expect(isinstance(body, dict) and set(body) == {"products"}, f"body {body}")
        ids = [p.get("id") for p in body["products"]]
        expect(all(isinstance(i, str) and PRODUCT_ID.fullmatch(i) for i in ids), f"ids {ids}")
        expect(ids == sorted(ids, key=lambda i: int(i[5:])) and len(set(ids)) == 2, f"ids not new and ascending: {ids}")
        expect_products(
            body,
            [
                {"id": ids[0], "name": "Premium Coffee Beans", "price": 15.99, "quantity": 100},
                {"id": ids[1], "name": "Ceramic Coffee Mug", "price": 12.99, "quantity": 50},
            ],
        )
        made["beans"], made["mug"] = body["products"]

    def add_more_products() -> None:
        request = AddProductsRequest(
            manager_id=manager,
            products=[
                ProductInput(name="Paper Filters", price=3.5, quantity=0),
                ProductInput(name="Espresso Tamper", price=24.0, quantity=5),
            ],
        )
        body = expect_response(add_products.sync_detailed(client=client, body=request), 201, ProductsResponse)
        ids = [p.get("id") for p in body.get("products", [])]
        expect(len(ids) == 2 and all(isinstance(i, str) and PRODUCT_ID.fullmatch(i) for i in ids), f"ids {ids}")
        expect_products(
            body,
            [
                {"id": ids[0], "name": "Paper Filters", "price": 3.5, "quantity": 0},
                {"id": ids[1], "name": "Espresso Tamper", "price": 24, "quantity": 5},
            ],
        )
        made["filters"], made["tamper"] = body["products"]

    run.check("add products: 201 with the brief's example", add_brief_products)
    run.check("add products: 201 with a product out of stock", add_more_products)

    # Story 2: list by status.
    run.check(
        "list in_stock: 200, exactly the products with stock",
        lambda: expect_products(listed("in_stock"), [made["beans"], made["mug"], made["tamper"]]),
    )
    run.check(
        "list out_of_stock: 200, exactly the product at 0",
        lambda: expect_products(listed("out_of_stock"), [made["filters"]]),
    )
    run.check("list discontinued: 200, empty", lambda: expect_products(listed("discontinued"), []))
    run.check(
        "list without status: 200, every product in id order",
        lambda: expect_products(listed(), [made["beans"], made["mug"], made["filters"], made["tamper"]]),
    )
    run.check("list for a manager with no products: 200, empty", lambda: expect_products(listed(who=other_manager), []))

    # Story 3: discontinue.
    def discontinue(product_id: str, who: str = manager) -> Any:
        request = DiscontinueRequest(manager_id=who, product_id=product_id)
        return discontinue_product.sync_detailed(client=client, body=request)

    run.check("discontinue: 204, empty body", lambda: expect_response(discontinue(made["tamper"]["id"]), 204, None))
    run.check("discontinue again: 204", lambda: expect_response(discontinue(made["tamper"]["id"]), 204, None))
    run.check(
        "list discontinued: 200, the discontinued product",
        lambda: expect_products(listed("discontinued"), [made["tamper"]]),
    )
    run.check(
        "list in_stock: 200, without it", lambda: expect_products(listed("in_stock"), [made["beans"], made["mug"]])
    )
    run.check(
        "order a discontinued product: 409 PRODUCT_DISCONTINUED",
        lambda: expect_error(
            order([(made["beans"]["id"], 1), (made["tamper"]["id"], 1)]),
            409,
            "PRODUCT_DISCONTINUED",
            {"products[1].product_id": None},
        ),
    )

    # Story 4: process an order.
    def process_brief_order() -> None:
        response = order([(made["beans"]["id"], 2), (made["mug"]["id"], 1)])
        body = expect_response(response, 200, ProcessOrderResponse)
        expect(isinstance(body, dict) and set(body) == {"order_id", "status", "total_amount"}, f"body {body}")
        expect(
            isinstance(body["order_id"], str) and ORDER_ID.fullmatch(body["order_id"]), f"order_id {body['order_id']!r}"
        )
        expect(body["status"] == "processed", f"status {body['status']!r}")
        # 2 × 15.99 + 1 × 12.99, as the JSON number 44.97 (not a string, no float noise).
        expect(type(body["total_amount"]) is float and body["total_amount"] == 44.97, f"total {body['total_amount']!r}")
        expect(b'"total_amount":44.97' in response.content.replace(b" ", b""), f"raw body {response.content!r}")

    run.check("process the brief's order: 200, total 44.97", process_brief_order)
    run.check(
        "stock after the order: 98 and 49",
        lambda: expect_products(
            listed("in_stock"), [{**made["beans"], "quantity": 98}, {**made["mug"], "quantity": 49}]
        ),
    )
    run.check(
        "insufficient stock: 409 INSUFFICIENT_STOCK with every short line",
        lambda: expect_error(
            order([(made["beans"]["id"], 1), (made["mug"]["id"], 50), (made["filters"]["id"], 1)]),
            409,
            "INSUFFICIENT_STOCK",
            {"products[1].quantity": "requested 50, available 49", "products[2].quantity": "requested 1, available 0"},
        ),
    )
    run.check(
        "a refused order changes no stock",
        lambda: expect_products(
            listed("in_stock"), [{**made["beans"], "quantity": 98}, {**made["mug"], "quantity": 49}]
        ),
    )

    # Not found.
    run.check(
        "order an unknown product: 404 PRODUCT_NOT_FOUND",
        lambda: expect_error(
            order([(made["beans"]["id"], 1), ("prod_999999999", 1)]),
            404,
            "PRODUCT_NOT_FOUND",
            {"products[1].product_id": None},
        ),
    )
    run.check(
        "order another manager's product: 404 PRODUCT_NOT_FOUND",
        lambda: expect_error(
            order([(made["beans"]["id"], 1)], who=other_manager),
            404,
            "PRODUCT_NOT_FOUND",
            {"products[0].product_id": None},
        ),
    )
    run.check(
        "discontinue an unknown product: 404 PRODUCT_NOT_FOUND",
        lambda: expect_error(discontinue("prod_999999999"), 404, "PRODUCT_NOT_FOUND", {"product_id": None}),
    )
    run.check(
        "discontinue another manager's product: 404 PRODUCT_NOT_FOUND",
        lambda: expect_error(
            discontinue(made["mug"]["id"], who=other_manager), 404, "PRODUCT_NOT_FOUND", {"product_id": None}
        ),
    )

    # Bad input: 400 INVALID_REQUEST listing every bad field. The generated
    # models do not check types, so a client can send what a careless one would.
    def bad_products() -> None:
        request = AddProductsRequest(
            manager_id="",
            products=[
                ProductInput(name="   ", price="15.99", quantity=1.5),  # type: ignore[arg-type]
                ProductInput(name="Fine Name", price=15.999, quantity=-1),
                ProductInput(name="Other Name", price=0, quantity=True),  # type: ignore[arg-type]
            ],
        )
        expect_error(
            add_products.sync_detailed(client=client, body=request),
            400,
            "INVALID_REQUEST",
            {
                "manager_id": None,
                "products[0].name": None,
                "products[0].price": None,
                "products[0].quantity": None,
                "products[1].price": None,
                "products[1].quantity": None,
                "products[2].price": None,
                "products[2].quantity": None,
            },
        )

    def bad_order() -> None:
        request = ProcessOrderRequest(
            manager_id=manager,
            customer=Customer(id="", email="not-an-email"),
            products=[
                OrderLineInput(product_id=made["beans"]["id"], quantity=0),
                OrderLineInput(product_id=made["mug"]["id"], quantity=2.5),  # type: ignore[arg-type]
                OrderLineInput(product_id=made["beans"]["id"], quantity=1),
            ],
        )
        expect_error(
            process_order.sync_detailed(client=client, body=request),
            400,
            "INVALID_REQUEST",
            {
                "customer.id": None,
                "customer.email": None,
                "products[0].quantity": None,
                "products[1].quantity": None,
                "products[2].product_id": None,
            },
        )

    def bad_list() -> None:
        response = list_products.sync_detailed(client=client, manager_id=manager, status="sold_out", limit=0)
        expect_error(response, 400, "INVALID_REQUEST", {"status": None, "limit": None})

    run.check("add products with bad fields: 400 listing every one", bad_products)
    run.check("order with bad fields: 400 listing every one", bad_order)
    run.check("list with a bad status and limit: 400 listing both", bad_list)
    run.check(
        "list without a manager: 400 naming manager_id",
        lambda: expect_error(
            list_products.sync_detailed(client=client, manager_id=""), 400, "INVALID_REQUEST", {"manager_id": None}
        ),
    )
    run.check(
        "nothing changed by the refused requests",
        lambda: expect_products(
            listed(),
            [{**made["beans"], "quantity": 98}, {**made["mug"], "quantity": 49}, made["filters"], made["tamper"]],
        ),
    )

    if WEBHOOK_STORY:
        webhook_story(client, run, manager)

    print(f"client: {run.checks} checks, {run.failures} failures")
    return 1 if run.failures else 0


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on loopback: answers 204 and keeps each request's
    headers and body."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], str]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/inventory"


def webhook_story(client: Any, run: Run, manager: str) -> None:
    """Story 5: register an endpoint, make an order, see the delivery."""
    from probe_client.api.webhooks import delete_webhook, list_deliveries, register_webhook
    from probe_client.models import (
        DeliveriesResponse,
        RegisterWebhookRequest,
        RegisterWebhookRequestEventTypesItem,
        Webhook as WebhookModel,
    )
    from standardwebhooks.webhooks import Webhook

    receiver = Receiver()
    hook: dict[str, Any] = {}
    try:

        def register() -> None:
            request = RegisterWebhookRequest(
                manager_id=manager,
                url=receiver.url,
                event_types=[RegisterWebhookRequestEventTypesItem.ORDER_PROCESSED],
            )
            body = expect_response(register_webhook.sync_detailed(client=client, body=request), 201, WebhookModel)
            expect(body["status"] == "enabled" and body["url"] == receiver.url, f"endpoint {body}")
            expect(str(body.get("secret", "")).startswith("whsec_"), f"secret {body.get('secret')}")
            hook.update(body)

        def order_delivered() -> None:
            added = expect_response(
                add_products.sync_detailed(
                    client=client,
                    body=AddProductsRequest(
                        manager_id=manager, products=[ProductInput(name="Webhook Kettle", price=30.0, quantity=3)]
                    ),
                ),
                201,
                ProductsResponse,
            )
            kettle = added["products"][0]["id"]
            request = ProcessOrderRequest(
                manager_id=manager,
                customer=Customer(id="cust_789", email="hooks@example.com"),
                products=[OrderLineInput(product_id=kettle, quantity=2)],
            )
            order = expect_response(process_order.sync_detailed(client=client, body=request), 200, ProcessOrderResponse)
            deadline = time.monotonic() + 20
            while not receiver.got and time.monotonic() < deadline:
                time.sleep(0.1)
            expect(len(receiver.got) >= 1, "no delivery within 20 s")
            headers, body = receiver.got[0]
            # The reference library checks the signature, the id and the time.
            payload = Webhook(hook["secret"]).verify(body, headers)
            expect(payload["type"] == "order.processed", f"delivery {payload}")
            expect(payload["data"]["order_id"] == order["order_id"], f"delivery {payload} for order {order}")
            expect(
                [(p["product_id"], p["quantity"]) for p in payload["data"]["products"]] == [(kettle, 2)],
                f"delivery lines {payload['data']}",
            )
            hook["event_id"] = headers["webhook-id"]

        def logged() -> None:
            deadline = time.monotonic() + 10
            while True:
                page = expect_response(
                    list_deliveries.sync_detailed(hook["id"], client=client, manager_id=manager),
                    200,
                    DeliveriesResponse,
                )
                rows = [r for r in page["deliveries"] if r["event_id"] == hook["event_id"]]
                if rows or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            expect(
                [(r["attempt"], r["status_code"]) for r in rows] == [(1, 204)],
                f"deliveries log {page}",
            )

        def deleted() -> None:
            response = delete_webhook.sync_detailed(hook["id"], client=client, manager_id=manager)
            expect(response.status_code == 204, f"delete answered {response.status_code}")

        run.check("register a webhook endpoint: 201 with its secret", register)
        run.check("an order is delivered, signed, to the endpoint", order_delivered)
        run.check("the deliveries log shows it delivered at the first attempt", logged)
        run.check("delete the endpoint: 204", deleted)
    finally:
        receiver.shutdown()


if __name__ == "__main__":
    sys.exit(main())
