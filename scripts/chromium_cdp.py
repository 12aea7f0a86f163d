#!/usr/bin/python3
"""Drives a headless Chromium through its DevTools protocol, one step per call; the review
page's integration test and scripts/review-screenshots.sh use it.

  chromium_cdp.py launch PROFILE [URL]   exec Chromium headless (1200x800) with its DevTools on a
                                         port of its choosing, written to PROFILE/DevToolsActivePort
  chromium_cdp.py PROFILE wait           until that port answers
  chromium_cdp.py PROFILE open URL       load URL in the page; print the page (below)
  chromium_cdp.py PROFILE act JS         run JS that navigates (a click, a submit); print the page
  chromium_cdp.py PROFILE eval JS        print JS's value as JSON (promises are awaited)
  chromium_cdp.py PROFILE cookies        print the browser's cookies as JSON
  chromium_cdp.py PROFILE screenshot F   write a PNG of the page's viewport to F

"The page" is one JSON object: status (of the main document's response), url, title, text
(document.body.innerText), js (whether the page's script ran) and errors (console errors,
exceptions and Content-Security-Policy reports seen while it loaded). The exit status is 1 with a
message on stderr when Chromium does not answer or the page does not load within 20 s.
Standard library plus Debian's python3-websocket.
"""
import json
import os
import sys
import time
import urllib.request

import websocket

TIMEOUT = 20.0


def fail(message):
    print("chromium_cdp: " + message, file=sys.stderr)
    sys.exit(1)


def launch(profile, url):
    os.makedirs(profile, exist_ok=True)
    try:
        os.unlink(os.path.join(profile, "DevToolsActivePort"))
    except FileNotFoundError:
        pass
    argv = ["chromium", "--headless", "--disable-gpu", "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1", "--user-data-dir=" + profile,
            "--window-size=1200,800", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
            # The test's controller has a certificate from its own throwaway CA.
            "--ignore-certificate-errors"]
    if os.geteuid() == 0:
        argv.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    argv.append(url or "about:blank")
    os.execvp(argv[0], argv)


def devtools_port(profile, deadline):
    path = os.path.join(profile, "DevToolsActivePort")
    while time.time() < deadline:
        try:
            with open(path) as f:
                port = f.readline().strip()
            if port:
                return int(port)
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    fail("no DevTools port in " + path + " (is Chromium running with this profile?)")


def page_socket(profile, deadline):
    port = devtools_port(profile, deadline)
    while time.time() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                targets = json.load(r)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return websocket.create_connection(pages[0]["webSocketDebuggerUrl"],
                                                   timeout=TIMEOUT, suppress_origin=True)
        except OSError:
            pass
        time.sleep(0.1)
    fail("Chromium's DevTools on port %d shows no page" % port)


class Session:
    def __init__(self, profile):
        self.deadline = time.time() + TIMEOUT
        self.ws = page_socket(profile, self.deadline)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self.receive()
            if message.get("id") == self.next_id:
                if "error" in message:
                    fail("%s: %s" % (method, message["error"].get("message")))
                return message.get("result", {})
            self.events.append(message)

    def receive(self):
        left = self.deadline - time.time()
        if left <= 0:
            fail("timed out after %.0f s" % TIMEOUT)
        self.ws.settimeout(left)
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            fail("timed out after %.0f s" % TIMEOUT)

    def wait_event(self, method):
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                del self.events[: i + 1]
                return event
        while True:
            message = self.receive()
            if message.get("method") == method:
                return message
            self.events.append(message)

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            fail("script failed: " + details.get("exception", {}).get(
                "description", details.get("text", "?")))
        return result.get("result", {}).get("value")

    def start_watching(self):
        self.call("Page.enable")
        self.call("Network.enable")
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.events = []

    def page(self):
        """The page once loaded: the main document's status, and what went wrong on the way."""
        self.wait_event("Page.loadEventFired")
        status = None
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.responseReceived" and params.get("type") == "Document":
                status = params["response"]["status"]
            elif method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                       for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                # A document answered 4xx is what some steps expect; its log line is not a fault.
                if not (entry.get("source") == "network" and status is not None and status >= 400):
                    errors.append(entry.get("text", "error"))
        info = self.evaluate(
            "({url: location.href, title: document.title, text: document.body ? "
            "document.body.innerText : '', js: document.documentElement.classList.contains('js')})")
        info["status"] = status
        info["errors"] = errors
        return info


def main():
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "launch":
        launch(args[1], args[2] if len(args) > 2 else "")
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    profile, command, rest = args[0], args[1], args[2:]
    if command == "wait" and not rest:
        Session(profile)
        return
    session = Session(profile)
    if command == "open" and len(rest) == 1:
        session.start_watching()
        session.call("Page.navigate", url=rest[0])
        print(json.dumps(session.page()))
    elif command == "act" and len(rest) == 1:
        session.start_watching()
        session.evaluate(rest[0])
        print(json.dumps(session.page()))
    elif command == "eval" and len(rest) == 1:
        print(json.dumps(session.evaluate(rest[0])))
    elif command == "cookies" and not rest:
        print(json.dumps(session.call("Network.getAllCookies").get("cookies", [])))
    elif command == "screenshot" and len(rest) == 1:
        import base64
        session.call("Emulation.setDeviceMetricsOverride", width=1200, height=800,
                     deviceScaleFactor=1, mobile=False)
        data = session.call("Page.captureScreenshot", format="png")["data"]
        with open(rest[0], "wb") as f:
            f.write(base64.b64decode(data))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
