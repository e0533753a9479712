"""Verifies captured webhook deliveries with the Standard Webhooks reference
library (PyPI `standardwebhooks`): reads a JSON list of
`{secret, id, timestamp, signature, body, valid}` on stdin, where `valid`
says whether verification must succeed, and exits non-zero on any surprise.
Used by tests/api/delivery.rs (with target/probe-venv/bin/python)."""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

failures = 0
cases = json.load(sys.stdin)
for case in cases:
    headers = {
        "webhook-id": case["id"],
        "webhook-timestamp": case["timestamp"],
        "webhook-signature": case["signature"],
    }
    try:
        Webhook(case["secret"]).verify(case["body"], headers)
        verified = True
    except WebhookVerificationError:
        verified = False
    if verified != case["valid"]:
        failures += 1
        print(f"unexpected: verified={verified} for {case['id']}", file=sys.stderr)
print(f"{len(cases) - failures} of {len(cases)} as expected")
sys.exit(1 if failures else 0)
