#!/usr/bin/env python3
"""The ops console in a real browser: headless Chromium driven through chromedriver (the W3C
WebDriver protocol, spoken with the standard library), against a real `privnum serve` on a
temporary configuration and data directory.

It signs in with the admin token, sees a pending tone, loads its audio and approves it; sees the
scripts' version and reloads them; sees a dead letter and redelivers it; sees a live call made
through the switch API and ends it. Each step is checked through the admin and switch APIs, and
each page is saved as a PNG under target/console-screenshots/.

Usage: browser.py PRIVNUM_BINARY   (run by .ci/browser)
"""

import base64
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = os.path.join(ROOT, "target", "console-screenshots")
ADMIN_TOKEN = "browser-admin-token"
SWITCH_TOKEN = "browser-switch-token"
APP, SECRET = "demo-app", "demo-secret"
X, A, B = "+8617000000001", "+8613800000001", "+8613900000002"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
STEP_LIMIT = 20.0  # seconds any one wait may take


def fail(message):
    print(f"browser test FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method, url, body=None, headers=None, raw=False):
    """(status, parsed JSON or bytes, headers) of one request."""
    data = None
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, bytes):
        data = body
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, payload, answer_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        status, payload, answer_headers = err.code, err.read(), err.headers
    if raw:
        return status, payload, answer_headers
    try:
        return status, json.loads(payload or b"null"), answer_headers
    except ValueError:
        return status, payload, answer_headers


def wait_for(what, probe, limit=STEP_LIMIT):
    deadline = time.monotonic() + limit
    while True:
        try:
            found = probe()
        except Exception as err:  # a probe that cannot answer yet is retried
            found = None
            last = err
        else:
            last = None
        if found:
            return found
        if time.monotonic() > deadline:
            fail(f"{what} (waited {limit:.0f} s){f': {last}' if last else ''}")
        time.sleep(0.1)


def sine_wav(seconds=1.0, rate=16000, hz=440):
    """A 16-bit PCM WAV at 16 kHz: privnum converts it to A-law 8 kHz on upload."""
    frames = int(seconds * rate)
    samples = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate))) for i in range(frames))
    header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", len(samples))
    return header + samples


class Browser:
    """A WebDriver session on chromedriver."""

    def __init__(self, driver_url, profile):
        self.driver = driver_url
        args = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
            f"--user-data-dir={profile}", "--window-size=1280,900",
        ]
        options = {"binary": shutil.which("chromium") or "/usr/bin/chromium", "args": args}
        capabilities = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        status, answer, _ = http("POST", f"{driver_url}/session", capabilities)
        if status != 200:
            fail(f"chromedriver did not start a session: {status} {answer}")
        self.session = answer["value"]["sessionId"]
        self.base = f"{driver_url}/session/{self.session}"

    def command(self, method, path, body=None):
        status, answer, _ = http(method, f"{self.base}{path}", body if body is not None else ({} if method == "POST" else None))
        if status != 200:
            raise RuntimeError(f"WebDriver {method} {path}: {status} {answer}")
        return answer["value"]

    def go(self, url):
        self.command("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        return self.command("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        element = wait_for(f"{css} to be on the page and enabled", lambda: self.js(
            "const e = document.querySelector(arguments[0]); return !!e && !e.disabled && e.offsetParent !== null;", css,
        ) and self.find(css))
        self.command("POST", f"/element/{element}/click")

    def type(self, css, text):
        element = self.find(css)
        self.command("POST", f"/element/{element}/clear")
        self.command("POST", f"/element/{element}/value", {"text": text})

    def text(self, css):
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)

    def wait_text(self, css, needle):
        return wait_for(f"{css} to say {needle!r}", lambda: needle in (self.text(css) or "") and self.text(css))

    def screenshot(self, name):
        path = os.path.join(SHOTS, f"{name}.png")
        with open(path, "wb") as file:
            file.write(base64.b64decode(self.command("GET", "/screenshot")))
        print(f"  screenshot {os.path.relpath(path, ROOT)}")

    def close(self):
        try:
            http("DELETE", self.base)
        except Exception:
            pass


def write_config(tmp, port):
    scripts = os.path.join(tmp, "scripts")
    shutil.copytree(os.path.join(ROOT, "scripts"), scripts)
    config = f"""
listen = "127.0.0.1:{port}"
data_dir = "{tmp}/data"
scripts_dir = "{scripts}"
admin_token = "{ADMIN_TOKEN}"
switch_token = "{SWITCH_TOKEN}"
push_retry_schedule = ["100ms"]

[[apps]]
app_key = "{APP}"
app_secret = "{SECRET}"
mode = "AXB"
scenario = "browser test"
recording = false
call_event_url = "http://127.0.0.1:{free_port()}/events"
cdr_url = "http://127.0.0.1:{free_port()}/cdr"
numbers = [{{ number = "{X}", area_code = "0755" }}]
"""
    path = os.path.join(tmp, "privnum.toml")
    with open(path, "w") as file:
        file.write(config)
    return path


def main():
    if len(sys.argv) != 2:
        fail("usage: browser.py PRIVNUM_BINARY")
    privnum = os.path.abspath(sys.argv[1])
    os.makedirs(SHOTS, exist_ok=True)
    for old in os.listdir(SHOTS):
        if old.endswith(".png"):
            os.remove(os.path.join(SHOTS, old))
    tmp = tempfile.mkdtemp(prefix="privnum-browser-")
    port, driver_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    switch = {"Authorization": f"Bearer {SWITCH_TOKEN}"}
    processes, browser = [], None
    log = open(os.path.join(tmp, "privnum.log"), "w")
    try:
        config = write_config(tmp, port)
        processes.append(subprocess.Popen([privnum, "serve", "--config", config], stdout=log, stderr=subprocess.STDOUT, cwd=tmp))
        wait_for("privnum to answer /healthz", lambda: http("GET", f"{base}/healthz")[0] == 200)
        driver_log = open(os.path.join(tmp, "chromedriver.log"), "w")
        processes.append(subprocess.Popen(["chromedriver", f"--port={driver_port}"], stdout=driver_log, stderr=subprocess.STDOUT))
        driver = f"http://127.0.0.1:{driver_port}"
        wait_for("chromedriver to be ready", lambda: http("GET", f"{driver}/status")[1]["value"]["ready"])

        # What the pages will show: a tone waiting for review, a dead letter (the app's receiver
        # is a closed port and it has one retry), and a live call.
        status, tone, _ = http("PUT", f"{base}/v1/admin/apps/{APP}/tones/welcome.wav", sine_wav(), admin)
        if status != 200 or tone.get("state") != "pending":
            fail(f"uploading a tone: {status} {tone}")
        signed = subprocess.run([privnum, "sign", "--app", APP, "--secret", SECRET], capture_output=True, text=True, check=True)
        headers = dict(line.split(": ", 1) for line in signed.stdout.splitlines())
        bind = {"relationNum": X, "callerNum": A, "calleeNum": B}
        status, bound, _ = http("POST", f"{base}/rest/caas/relationnumber/partners/v1.0", bind, headers)
        if status != 200 or bound.get("resultcode") != "0":
            fail(f"binding A and B on X: {status} {bound}")
        status, decision, _ = http("POST", f"{base}/v1/switch/calls", {"caller": A, "called": X, "sessionId": "browser-call"}, switch)
        if decision.get("action") != "connect":
            fail(f"the call was not connected: {status} {decision}")
        http("POST", f"{base}/v1/switch/calls/browser-call/events", {"event": "callout"}, switch)
        http("POST", f"{base}/v1/switch/calls/browser-call/events", {"event": "alerting"}, switch)
        wait_for("the callin push to die (its one retry used up)",
                 lambda: http("GET", f"{base}/v1/admin/pushes/dead", headers=admin)[1]["pushes"])

        browser = Browser(driver, os.path.join(tmp, "profile"))
        console = f"{base}/console"

        print("sign in")
        browser.go(console)
        wait_for("the sign-in form", lambda: browser.js("return !document.getElementById('login').hidden;"))
        browser.type("#token", "not-the-token")
        browser.click("#login-submit")
        browser.wait_text("#login-error", "refused the admin token")
        browser.screenshot("1-sign-in-refused")
        browser.type("#token", ADMIN_TOKEN)
        browser.click("#login-submit")
        if browser.js("return sessionStorage.getItem('privnum.adminToken');") != ADMIN_TOKEN:
            fail("the token is not kept in sessionStorage")

        print("tones: a pending tone, its audio, approval")
        card = ".card.tone[data-tone='welcome.wav']"
        wait_for("the pending tone's card", lambda: browser.text(card))
        duration = wait_for("the tone's audio to load in the player", lambda: browser.js(
            "const a = document.querySelector(arguments[0] + ' audio');"
            "return a && a.readyState >= 1 && isFinite(a.duration) && a.duration > 0 ? a.duration : null;", card))
        if abs(duration - tone["seconds"]) > 0.05:
            fail(f"the player's audio lasts {duration} s, the tone {tone['seconds']} s")
        # Playing needs no sound card in headless Chromium; its outcome is reported, not required.
        played = browser.js(
            "const a = document.querySelector(arguments[0] + ' audio');"
            "return a.play().then(() => { a.pause(); return 'played'; }, (e) => 'not played: ' + e);", card)
        browser.screenshot("2-tones-pending")
        print(f"  audio loaded: {duration:.2f} s; play() -> {played}")
        browser.click(f"{card} button.approve")
        browser.wait_text("#flash", "approved")
        _, tones, _ = http("GET", f"{base}/v1/admin/apps/{APP}/tones", headers=admin)
        state = {t["fileName"]: t["state"] for t in tones["tones"]}
        if state.get("welcome.wav") != "approved":
            fail(f"the console approved the tone, but the API says {state}")
        browser.wait_text("#tones-pending", "No tone waits")
        browser.screenshot("3-tones-approved")

        print("scripts: version, reload")
        browser.click("nav a[data-page='scripts']")
        _, scripts, _ = http("GET", f"{base}/v1/admin/scripts", headers=admin)
        browser.wait_text("#scripts-active", scripts["scripts"]["active"])
        browser.click("#scripts-reload")
        browser.wait_text("#scripts-outcome", "version")
        outcome = browser.text("#scripts-outcome")
        if "unchanged" not in outcome and "reloaded" not in outcome.lower():
            fail(f"the reload's outcome: {outcome}")
        _, after, _ = http("GET", f"{base}/v1/admin/scripts", headers=admin)
        if after["scripts"]["attempts"] <= scripts["scripts"]["attempts"]:
            fail(f"the console's reload was not tried by the server: {after}")
        browser.screenshot("4-scripts")
        # A broken edit: the reload is refused, the version stays, and the page shows why.
        broken = os.path.join(tmp, "scripts", "release.rhai")
        with open(broken, "a") as file:
            file.write("\nfn broken( {\n")
        browser.click("#scripts-reload")
        browser.wait_text("#scripts-outcome", "stays active")
        last_error = browser.wait_text("#scripts-last-error", "release.rhai")
        if scripts["scripts"]["active"] not in browser.text("#scripts-active"):
            fail("a refused reload changed the active version shown")
        print(f"  refused reload shown: {last_error.strip()[:100]}")
        browser.screenshot("4b-scripts-refused")

        print("pushes: dead letters, redeliver")
        browser.click("nav a[data-page='pushes']")
        wait_for("a dead letter with its Redeliver button", lambda: browser.js("return document.querySelectorAll('button.redeliver').length;"))
        _, dead, _ = http("GET", f"{base}/v1/admin/pushes/dead", headers=admin)
        browser.screenshot("5-pushes")
        browser.click("button.redeliver")
        browser.wait_text("#flash", "back in its lane")
        _, revived, _ = http("GET", f"{base}/v1/admin/pushes/dead", headers=admin)
        if {p["id"] for p in revived["pushes"]} & {dead["pushes"][0]["id"]}:
            fail("the console redelivered a dead letter, but it is still dead under its old id")

        print("calls: a live call, ended")
        browser.click("nav a[data-page='calls']")
        row = "tr[data-session='browser-call']"
        browser.wait_text(row, "alerting")
        browser.screenshot("6-calls-live")
        browser.click(f"{row} button.end")
        browser.screenshot("7-calls-confirm")
        browser.click(f"{row} button.confirm-end")
        browser.wait_text("#flash", "ended")
        wait_for("the ended call to leave the list", lambda: browser.js("return !document.querySelector(arguments[0]);", row))
        browser.screenshot("8-calls-ended")
        _, calls, _ = http("GET", f"{base}/v1/admin/calls", headers=admin)
        if calls["total"] != 0:
            fail(f"the call is still live for the API: {calls}")
        status, cdr, _ = http("GET", f"{base}/v1/switch/calls/browser-call/cdr", headers=switch)
        if status != 200 or cdr.get("ulFailReason") != 8020:
            fail(f"the ended call has no CDR with 8020: {status} {cdr}")
        print("browser test passed")
    except SystemExit:
        raise
    except Exception as err:
        if browser:
            try:
                browser.screenshot("failure")
            except Exception:
                pass
        fail(f"{type(err).__name__}: {err}")
    finally:
        if sys.exc_info()[0] is not None:
            log.flush()
            with open(os.path.join(tmp, "privnum.log")) as server_log:
                print("--- privnum's log (last lines) ---\n" + "".join(server_log.readlines()[-30:]), file=sys.stderr)
        if browser:
            browser.close()
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        if os.environ.get("KEEP_BROWSER_TMP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
