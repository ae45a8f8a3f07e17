"""Schemathesis hooks for `.ci/schemathesis`: authenticate every generated request as the
document's security schemes say, so the real handlers run instead of the 401s.

- provisioning and call controls (`/rest/...`): signed with the app of the path's mode, the way
  `privnum sign` signs (src/auth.rs): `X-AKSK` digest = base64(HMAC-SHA256(secret, Nonce + Created)),
  every fourth request `X-WSSE` instead, digest = base64(SHA256(Nonce + Created + secret));
- `/v1/admin/...`: `Authorization: Bearer <admin token>`; `/v1/switch/...`: the switch token;
- every other tone upload is a real WAV to a real app (random bytes never are one).

The tokens and apps come from the environment that `.ci/schemathesis` sets. The hooks also
count the calls and their statuses, written to $PRIVNUM_ST_COUNTS at exit.
"""

import atexit
import base64
import collections
import datetime
import hashlib
import hmac
import itertools
import json
import os
import io
import threading
import uuid
import wave

import schemathesis

ADMIN_TOKEN = os.environ["PRIVNUM_ST_ADMIN_TOKEN"]
SWITCH_TOKEN = os.environ["PRIVNUM_ST_SWITCH_TOKEN"]
# "AXB=key:secret,AX=key:secret,AXE=key:secret"
APPS = dict(
    (mode, tuple(pair.split(":", 1)))
    for mode, pair in (item.split("=", 1) for item in os.environ["PRIVNUM_ST_APPS"].split(","))
)

_lock = threading.Lock()
_sequence = itertools.count()
_statuses = collections.Counter()


def _silence_wav():
    """A tenth of a second of 16-bit PCM silence at 8 kHz: a WAV that privnum converts."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 800)
    return out.getvalue()


SILENCE = _silence_wav()
TONE_PATH = "/v1/admin/apps/{app_key}/tones/{file_name}"


def _mode_of(path):
    if path.startswith("/rest/caas/relationnumber/"):
        return "AXB"
    if path.startswith("/rest/provision/caas/privatenumber/") or path.startswith("/rest/caas/privatenumber/"):
        return "AX"
    if path.startswith("/rest/caas/extendnumber/"):
        return "AXE"
    # Call controls take any app: the AXB one.
    return "AXB"


def _sign(app_key, secret, wsse):
    nonce = uuid.uuid4().hex.upper()
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if wsse:
        raw = hashlib.sha256((nonce + created + secret).encode()).digest()
    else:
        raw = hmac.new(secret.encode(), (nonce + created).encode(), hashlib.sha256).digest()
    digest = base64.b64encode(raw).decode()
    word, header = ("WSSE", "X-WSSE") if wsse else ("AKSK", "X-AKSK")
    authorization = f'{word} realm="SDP",profile="UsernameToken",type="Appkey"'
    token = f'UsernameToken Username="{app_key}",PasswordDigest="{digest}",Nonce="{nonce}",Created="{created}"'
    return authorization, header, token


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    sequence = next(_sequence)
    if path == TONE_PATH and case.method.upper() == "PUT" and sequence % 2 == 0:
        # Random bytes are never a WAV: every other upload is a real one, to a real app, so
        # that conversion, review and the switch's download run too (links follow the upload).
        case.path_parameters["app_key"] = APPS["AXB"][0]
        case.body = SILENCE
    headers = case.headers
    for name in ("Authorization", "X-AKSK", "X-WSSE"):
        headers.pop(name, None)
    if path.startswith("/v1/admin/"):
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    elif path.startswith("/v1/switch/"):
        headers["Authorization"] = f"Bearer {SWITCH_TOKEN}"
    elif path.startswith("/rest/"):
        app_key, secret = APPS[_mode_of(path)]
        wsse = sequence % 4 == 3
        authorization, name, token = _sign(app_key, secret, wsse)
        headers["Authorization"] = authorization
        headers[name] = token


@schemathesis.hook
def after_call(context, case, response):
    with _lock:
        _statuses[response.status_code] += 1


def _write_counts():
    target = os.environ.get("PRIVNUM_ST_COUNTS")
    if target:
        with _lock, open(target, "w") as out:
            json.dump({str(status): n for status, n in sorted(_statuses.items())}, out)


atexit.register(_write_counts)
