"""Identity probe: tokens made by PyJWT (an implementation no one here wrote)
against instances running with AUTH_MODE=jwt.

Usage:
  auth_probe.py keys DIR
      Makes the keys: DIR/jwks.json (an RS256 public key, kid `probe-rsa`),
      DIR/rsa-private.pem, and DIR/hs256.secret.
  auth_probe.py check RS_URL HS_URL DIR CLIENT_DIR
      RS_URL runs with AUTH_JWKS_FILE=DIR/jwks.json, HS_URL with
      AUTH_HS256_SECRET=$(cat DIR/hs256.secret); both with
      AUTH_ISSUER=https://issuer.probe and AUTH_AUDIENCE=ecommerce-api.
      For each: valid, expired, not yet valid, wrong key, `alg: none`,
      algorithm confusion, wrong issuer and audience, missing claim, no
      token, another manager, and the audit records of those; then the
      brief's four stories (client_stories.py, through the client generated
      in CLIENT_DIR) with a valid token for each request's manager.

The last line is `auth: N checks, M failures`; the exit status is 1 if any
check failed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://issuer.probe"
AUDIENCE = "ecommerce-api"
KID = "probe-rsa"
MANAGER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_keys(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (folder / "rsa-private.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
    (folder / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    (folder / "hs256.secret").write_text(secrets.token_urlsafe(48))


class Run:
    def __init__(self) -> None:
        self.checks = 0
        self.failures = 0

    def check(self, name: str, test: Any) -> None:
        self.checks += 1
        try:
            test()
            print(f"  ok    {name}")
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            self.failures += 1
            print(f"  FAIL  {name}: {exc}")
            if not isinstance(exc, AssertionError):
                traceback.print_exc()


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


class Instance:
    """One running instance and how to sign tokens it accepts."""

    def __init__(self, name: str, url: str, sign: Any) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.sign = sign
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    def claims(self, manager: str, **changes: Any) -> dict:
        now = int(time.time())
        claims = {"sub": manager, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
        for key, value in changes.items():
            if value is None:
                claims.pop(key, None)
            else:
                claims[key] = value
        return claims

    def token(self, manager: str, **changes: Any) -> str:
        return self.sign(self.claims(manager, **changes))

    def list(self, manager: str, token: str | None, request_id: str) -> httpx.Response:
        headers = {"X-Request-ID": request_id}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.get("/api/inventory/products", params={"manager_id": manager}, headers=headers)


def expect_refused(response: httpx.Response, status: int, code: str, challenge: str | None = None) -> None:
    expect(response.status_code == status, f"status {response.status_code}, expected {status}: {response.text[:300]}")
    body = response.json()
    expect(set(body) == {"error"}, f"not the error envelope: {body}")
    expect(body["error"]["code"] == code, f"code {body['error'].get('code')}, expected {code}")
    expect(isinstance(body["error"]["details"], dict), f"details: {body}")
    if challenge is not None:
        got = response.headers.get("www-authenticate")
        expect(got == challenge, f"WWW-Authenticate {got!r}, expected {challenge!r}")


INVALID = 'Bearer error="invalid_token"'


def probe_instance(run: Run, instance: Instance, confusion: list[tuple[str, str]], wrong_key: str) -> None:
    tag = f"{int(time.time())}_{os.getpid()}_{instance.name}"
    manager, other = f"auth_{tag}", f"auth_{tag}_other"
    ids: dict[str, str] = {}

    def request_id(what: str) -> str:
        ids[what] = f"{what}-{uuid.uuid4()}"
        return ids[what]

    def valid() -> None:
        response = instance.list(manager, instance.token(manager), request_id("valid"))
        expect(response.status_code == 200, f"status {response.status_code}: {response.text[:300]}")
        expect(response.json() == {"products": []}, f"body {response.text[:300]}")
        expect(response.headers.get("x-ratelimit-limit") is not None, "no X-RateLimit-Limit")

    def refused(what: str, token: str | None, challenge: str = INVALID) -> Any:
        return lambda: expect_refused(
            instance.list(manager, token, request_id(what)), 401, "UNAUTHENTICATED", challenge
        )

    now = int(time.time())
    n = instance.name
    run.check(f"{n}: valid token: 200", valid)
    run.check(f"{n}: no token: 401 with WWW-Authenticate: Bearer", refused("none", None, "Bearer"))
    run.check(f"{n}: expired token: 401", refused("expired", instance.token(manager, exp=now - 600)))
    run.check(
        f"{n}: expired within the 60 s leeway: 200",
        lambda: expect(
            instance.list(manager, instance.token(manager, exp=now - 20), "leeway").status_code == 200, "refused"
        ),
    )
    run.check(f"{n}: not yet valid: 401", refused("nbf", instance.token(manager, nbf=now + 600)))
    run.check(f"{n}: no exp: 401", refused("no-exp", instance.token(manager, exp=None)))
    run.check(f"{n}: wrong key: 401", refused("wrong-key", wrong_key))
    none_token = jwt.encode(instance.claims(manager), None, algorithm="none")
    run.check(f"{n}: alg none: 401", refused("alg-none", none_token))
    for label, token in confusion:
        run.check(f"{n}: algorithm confusion ({label}): 401", refused("confusion", token))
    run.check(f"{n}: wrong audience: 401", refused("audience", instance.token(manager, aud="another-api")))
    run.check(f"{n}: wrong issuer: 401", refused("issuer", instance.token(manager, iss="https://elsewhere")))
    run.check(f"{n}: no manager claim: 401", refused("no-sub", instance.token(manager, sub=None)))
    run.check(
        f"{n}: not a bearer token: 401",
        lambda: expect_refused(
            instance.http.get(
                "/api/inventory/products",
                params={"manager_id": manager},
                headers={"Authorization": "Basic " + b64url(b"user:password")},
            ),
            401,
            "UNAUTHENTICATED",
            INVALID,
        ),
    )

    def other_manager() -> None:
        response = instance.list(other, instance.token(manager), request_id("other"))
        expect_refused(response, 403, "FORBIDDEN")
        body = {"manager_id": other, "products": [{"name": "Probe", "price": 1, "quantity": 1}]}
        response = instance.http.post(
            "/api/inventory/products",
            json=body,
            headers={"Authorization": f"Bearer {instance.token(manager)}", "X-Request-ID": request_id("other-write")},
        )
        expect_refused(response, 403, "FORBIDDEN")
        listed = instance.list(other, instance.token(other), request_id("other-own"))
        expect(listed.status_code == 200 and listed.json() == {"products": []}, f"{listed.text[:300]}")

    run.check(f"{n}: another manager's request: 403, nothing written", other_manager)

    def audit() -> None:
        # The 403s are the caller's; the 401s belong to no manager.
        records: list[dict] = []
        for _ in range(50):
            response = instance.http.get(
                "/api/audit",
                params={"manager_id": manager, "limit": 1000},
                headers={"Authorization": f"Bearer {instance.token(manager)}"},
            )
            expect(response.status_code == 200, f"audit: {response.status_code} {response.text[:300]}")
            records = response.json()["records"]
            seen = {r["request_id"] for r in records}
            if {ids["other"], ids["other-write"]} <= seen:
                break
            time.sleep(0.1)
        by_id = {r["request_id"]: r for r in records}
        for what in ("other", "other-write"):
            record = by_id.get(ids[what])
            expect(record is not None, f"no audit record of the {what} 403 under {manager}")
            expect((record["status"], record["error_code"]) == (403, "FORBIDDEN"), f"{record}")
        for what in ("none", "expired", "alg-none", "confusion", "wrong-key"):
            expect(ids[what] not in by_id, f"the {what} 401 is audited under the manager it named")
        expect(by_id[ids["valid"]]["status"] == 200, "the valid request's record")

    run.check(f"{n}: audit: 403s under the token's manager, 401s under none", audit)


def stories(run: Run, instance: Instance, client_dir: str) -> None:
    """The brief's stories through the generated client, each request with a
    token for the manager it names (the main story manager's when it names
    none or an invalid one)."""
    fallback: dict[str, str] = {}

    def add_token(request: httpx.Request) -> None:
        named = parse_qs(urlsplit(str(request.url)).query).get("manager_id", [None])[0]
        if request.method == "POST" and request.content:
            try:
                named = json.loads(request.content).get("manager_id")
            except (ValueError, AttributeError):
                named = None
        if not isinstance(named, str) or not MANAGER_ID.fullmatch(named):
            named = fallback.setdefault("manager", "probe_stories_fallback")
        request.headers["Authorization"] = f"Bearer {instance.token(named)}"

    sys.argv = [sys.argv[0], instance.url, client_dir]
    sys.path.insert(0, str(Path(__file__).parent))
    import client_stories

    client_stories.HTTPX_ARGS = {"event_hooks": {"request": [add_token]}}
    print(f"==> {instance.name}: the brief's stories with a valid token per request")
    run.check(
        f"{instance.name}: the brief's four stories pass with valid tokens",
        lambda: expect(client_stories.main() == 0, "a story failed"),
    )


def check(rs_url: str, hs_url: str, folder: Path, client_dir: str) -> int:
    private_pem = (folder / "rsa-private.pem").read_bytes()
    secret = (folder / "hs256.secret").read_text().strip()
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads((folder / "jwks.json").read_text())["keys"][0]
    public_pem = (
        serialization.load_pem_private_key(private_pem, None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def rs256(claims: dict) -> str:
        return jwt.encode(claims, private_pem, algorithm="RS256", headers={"kid": KID})

    def hs256(claims: dict) -> str:
        return jwt.encode(claims, secret, algorithm="HS256")

    def hmac_token(claims: dict, key: bytes, kid: str | None) -> str:
        # PyJWT itself refuses to use a public key as an HMAC secret, so the
        # attacker's token is put together by hand.
        header = {"alg": "HS256", "typ": "JWT"} | ({"kid": kid} if kid else {})
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"

    run = Run()
    rs = Instance("rs256", rs_url, rs256)
    hs = Instance("hs256", hs_url, hs256)
    print(f"==> RS256 JWKS instance at {rs.url}")
    claims = rs.claims(f"auth_confusion_{os.getpid()}")
    probe_instance(
        run,
        rs,
        confusion=[
            ("HS256 with the public key PEM", hmac_token(claims, public_pem, KID)),
            ("HS256 with the JWK's modulus", hmac_token(claims, jwk["n"].encode(), None)),
            ("HS256 with the JWKS text", hmac_token(claims, (folder / "jwks.json").read_bytes(), KID)),
        ],
        wrong_key=jwt.encode(rs.claims("x"), other_rsa, algorithm="RS256", headers={"kid": KID}),
    )
    print(f"==> HS256 secret instance at {hs.url}")
    probe_instance(
        run,
        hs,
        confusion=[
            ("RS256 token to an HS256 service", rs256(hs.claims("x"))),
            ("HS384 with the secret", jwt.encode(hs.claims("x"), secret, algorithm="HS384")),
        ],
        wrong_key=jwt.encode(hs.claims("x"), secrets.token_urlsafe(48), algorithm="HS256"),
    )
    stories(run, rs, client_dir)
    print(f"auth: {run.checks} checks, {run.failures} failures")
    return 1 if run.failures else 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "keys":
        make_keys(Path(sys.argv[2]))
        return 0
    if len(sys.argv) == 6 and sys.argv[1] == "check":
        return check(sys.argv[2], sys.argv[3], Path(sys.argv[4]), sys.argv[5])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
