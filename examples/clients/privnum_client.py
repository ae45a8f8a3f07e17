#!/usr/bin/env python3
"""A PrivateNumber API client in Python's standard library alone: signs each request (AKSK),
binds an AXB pair, queries it and unbinds it.

    python3 examples/clients/privnum_client.py [--base http://127.0.0.1:8080] [--app demo-app --secret demo-secret]

The signature is the reference API's: `Authorization: AKSK realm="SDP",profile="UsernameToken",
type="Appkey"` and `X-AKSK: UsernameToken Username=<app key>,PasswordDigest=<base64 of
HMAC-SHA256(app secret, Nonce + Created)>,Nonce=<fresh>,Created=<UTC, RFC 3339 to the second>`.
It covers neither the method, the path nor the body: use https beyond a trusted network.
Exits 1, saying which step failed, on any answer other than resultcode "0".
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

AXB_PATH = "/rest/caas/relationnumber/partners/v1.0"


def signed_headers(app_key, secret):
    """The two headers that authenticate one request; a new nonce each time."""
    nonce = uuid.uuid4().hex.upper()
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(hmac.new(secret.encode(), (nonce + created).encode(), hashlib.sha256).digest())
    return {
        "Authorization": 'AKSK realm="SDP",profile="UsernameToken",type="Appkey"',
        "X-AKSK": 'UsernameToken Username="{}",PasswordDigest="{}",Nonce="{}",Created="{}"'.format(
            app_key, digest.decode(), nonce, created
        ),
    }


def call(base, app_key, secret, method, path, body=None):
    """One signed request; the parsed JSON answer (also for 4xx, which carry a resultcode)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers=signed_headers(app_key, secret))
    if data is not None:
        request.add_header("Content-Type", "application/json;charset=UTF-8")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        return json.load(err)


def expect_ok(step, answer):
    if answer.get("resultcode") != "0":
        print("{}: refused: {}".format(step, json.dumps(answer, ensure_ascii=False)), file=sys.stderr)
        sys.exit(1)
    print("{}: ok".format(step))
    return answer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="http://127.0.0.1:8080")
    parser.add_argument("--app", default="demo-app")
    parser.add_argument("--secret", default="demo-secret")
    parser.add_argument("--caller", default="+8613800000071")
    parser.add_argument("--callee", default="+8613900000072")
    args = parser.parse_args()

    bind = {"areaCode": "0755", "callerNum": args.caller, "calleeNum": args.callee, "duration": 600, "userData": "py-1"}
    bound = expect_ok("bind", call(args.base, args.app, args.secret, "POST", AXB_PATH, bind))
    x, subscription = bound["relationNum"], bound["subscriptionId"]
    print("  {} <-> {} through {} ({})".format(args.caller, args.callee, x, subscription))

    query = "?" + urllib.parse.urlencode({"subscriptionId": subscription})
    found = expect_ok("query", call(args.base, args.app, args.secret, "GET", AXB_PATH + query))
    if found["relationNumList"][0]["userData"] != "py-1":
        print("query: the binding came back changed: {}".format(found), file=sys.stderr)
        sys.exit(1)

    expect_ok("unbind", call(args.base, args.app, args.secret, "DELETE", AXB_PATH + query))
    gone = call(args.base, args.app, args.secret, "GET", AXB_PATH + query)
    if gone.get("resultcode") == "0" and gone.get("relationNumList"):
        print("unbind: the binding is still there: {}".format(gone), file=sys.stderr)
        sys.exit(1)
    print("gone: ok ({})".format(gone.get("resultcode")))


if __name__ == "__main__":
    main()
