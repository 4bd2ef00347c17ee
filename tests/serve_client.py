#!/usr/bin/python3
# Clients of a running `cterp serve` for tests/cli_serve.sh, standard library only.
#
#   serve_client.py api PORT PID      good and malformed requests, 20 parallel connections, then
#                                     rounds of abuse: the status codes, and no growth of the
#                                     server's RSS (from /proc/PID/status) after the first round
#   serve_client.py browser PORT TMP  headless Chromium over the DevTools protocol: load the page,
#                                     submit a prompt, read the shaded tokens back from the DOM,
#                                     steer a latent and see the continuation change; no console
#                                     messages (and a deliberate error is seen, so that can fail)
# Prints "ok: ..." / "FAIL: ..." lines; exits 1 on any failure.
import base64, http.client, json, os, re, socket, struct, subprocess, sys, threading, time

failed = 0


def check(what, cond, detail=""):
    global failed
    print(("ok: " if cond else "FAIL: ") + what + ("" if cond or not detail else " (%s)" % detail))
    if not cond:
        failed = 1


def request(port, method, path, body=None, headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if isinstance(body, str):
        body = body.encode()
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type") or "", data


def api(port, route, obj):
    st, ct, data = request(port, "POST", "/api/" + route, json.dumps(obj),
                           {"Content-Type": "application/json"})
    return st, json.loads(data) if ct.startswith("application/json") else data


def rss_kib(pid):
    for line in open("/proc/%s/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def raw(port, data, read=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        if read:
            out = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
            return out
    except OSError:
        return b""
    finally:
        s.close()
    return b""


def abuse(port):
    """Bad requests of every kind; returns [(what, expected status, got status, json ok)]"""
    res = []

    def want(what, code, st, ct, data):
        ok_json = True
        if ct.startswith("application/json"):
            try:
                j = json.loads(data)
                ok_json = code == 200 or bool(j.get("error"))
            except ValueError:
                ok_json = False
        res.append((what, code, st, ok_json))

    A = "/api/activations"
    for what, code, method, path, body, hdr in [
        ("bad JSON", 400, "POST", A, '{"prompt": "x"', {}),
        ("not an object", 400, "POST", A, '["prompt"]', {}),
        ("empty body", 400, "POST", A, "", {}),
        ("unknown field", 400, "POST", A, '{"prompt": "x", "evil": 1}', {}),
        ("prompt not a string", 400, "POST", A, '{"prompt": 12}', {}),
        ("prompt longer than the context", 400, "POST", A, json.dumps({"prompt": "a b " * 400}), {}),
        ("invalid UTF-8 in the prompt", 200, "POST", A, b'{"prompt": "\xff\xfe x"}', {}),
        ("deep nesting", 400, "POST", A, "[" * 5000, {}),
        ("unknown latent", 400, "POST", "/api/steer", '{"prompt": "x", "latent": 100000}', {}),
        ("negative latent", 400, "POST", "/api/latent", '{"latent": -3}', {}),
        ("n too large", 400, "POST", "/api/steer", '{"prompt": "x", "latent": 1, "n": 1000000}', {}),
        ("wrong method on the API", 405, "GET", A, None, {}),
        ("wrong method on a page", 405, "POST", "/", "x", {}),
        ("unknown API route", 404, "POST", "/api/nothing", "{}", {}),
        ("unknown path", 404, "GET", "/etc/passwd", None, {}),
        ("path games in the dashboard", 404, "GET", "/dash/f/..%2f..%2fetc%2fpasswd", None, {}),
        ("a latent page past the end", 404, "GET", "/dash/f/99999.html", None, {}),
        ("a foreign Host (DNS rebinding)", 403, "GET", "/api/info", None, {"Host": "evil.example:80"}),
        ("a domain that starts with 127.", 403, "GET", "/api/info", None, {"Host": "127.evil.example"}),
        ("Host localhost", 200, "GET", "/api/info", None, {"Host": "localhost:1"}),
        ("Host 127.1.2.3", 200, "GET", "/api/info", None, {"Host": "127.1.2.3"}),
    ]:
        try:
            st, ct, data = request(port, method, path, body, hdr)
        except (OSError, http.client.HTTPException) as e:
            st, ct, data = "error %s" % e, "", b""
        want(what, code, st, ct, data)
    # a Content-Length over the limit: refused before the body is read (a client that waits for
    # "100 Continue" never sends it; one that does not may find the connection closed mid-body)
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.putrequest("POST", A)
        c.putheader("Content-Length", str(1 << 30))
        c.putheader("Expect", "100-continue")
        c.endheaders()
        r = c.getresponse()
        want("oversized body (Content-Length 1 GiB)", 413, r.status, r.getheader("Content-Type") or "", r.read())
        c.close()
    except (OSError, http.client.HTTPException) as e:
        res.append(("oversized body (Content-Length 1 GiB)", 413, "error %s" % e, False))
    # a chunked body over the limit: no length to refuse it by, dropped as it comes
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.putrequest("POST", A)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        piece = b"y" * 16384
        for _ in range(64):
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        want("oversized chunked body", 413, r.status, r.getheader("Content-Type") or "", r.read())
        c.close()
    except (OSError, http.client.HTTPException) as e:
        res.append(("oversized chunked body", 413, "error %s" % e, False))
    # not HTTP at all, a request cut short, a connection opened and dropped
    out = raw(port, b"GARBAGE\x00\xff\r\n\r\n")
    res.append(("garbage bytes: a 400 or a close", 400, 400 if out == b"" or out.startswith(b"HTTP/1.1 4") else out[:20], True))
    raw(port, b"POST /api/activations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"pro", read=False)
    raw(port, b"", read=False)
    return res


def cmd_api(port, pid):
    port = int(port)
    st, ct, data = request(port, "GET", "/api/info")
    info = json.loads(data)
    check("GET /api/info", st == 200 and info["d_sae"] > 0 and info["features"] is True, data[:200])
    st, ct, page = request(port, "GET", "/")
    check("GET / is the explorer page", st == 200 and ct.startswith("text/html") and b"cterp explorer" in page)
    st, ct, dash = request(port, "GET", "/dash/")
    check("GET /dash/ is the dashboard's index", st == 200 and b'id="lat"' in dash)
    st, ct, lp = request(port, "GET", "/dash/f/3.html")
    check("GET /dash/f/3.html is latent 3's page", st == 200 and b"Latent 3" in lp)
    st, a = api(port, "activations", {"prompt": "Tom had a red ball.", "top": 3, "next": 5})
    check("POST /api/activations", st == 200 and len(a["tokens"]) > 3 and len(a["next"]) == 5
          and all(len(t["latents"]) <= 3 for t in a["tokens"]) and a["tokens"][0]["loss"] is None,
          str(a)[:300])
    lat = a["top_latents"][0]["latent"]
    body = {"prompt": "Once upon a time", "latent": lat, "strength": 20, "n": 12}
    st, s = api(port, "steer", body)
    check("POST /api/steer: both continuations and the loss change",
          st == 200 and s["original"]["continuation"] and len(s["loss"]) == len(s["original"]["tokens"])
          and s["loss"][0]["delta"] is None and isinstance(s["loss"][1]["delta"], float), str(s)[:300])
    check("steering latent %d changes the continuation" % lat,
          s["original"]["tokens"] != s["steered"]["tokens"], str(s)[:300])
    st, l = api(port, "latent", {"latent": lat})
    check("POST /api/latent: statistics and logit effects",
          st == 200 and l["stats"]["fired"] > 0 and len(l["logits"]["top"]) == 10)

    # 20 connections at once, each an activations and a steer request: all answered, each the same
    # as the answer given alone
    ref_a = request(port, "POST", "/api/activations", json.dumps({"prompt": "The dog ran."}))[2]
    ref_s = request(port, "POST", "/api/steer", json.dumps(body))[2]
    out = [None] * 20

    def client(k):
        try:
            ra = request(port, "POST", "/api/activations", json.dumps({"prompt": "The dog ran."}))
            rs = request(port, "POST", "/api/steer", json.dumps(body))
            out[k] = ra[0] == 200 and rs[0] == 200 and ra[2] == ref_a and rs[2] == ref_s
        except (OSError, http.client.HTTPException) as e:
            out[k] = "error %s" % e

    t0 = time.time()
    th = [threading.Thread(target=client, args=(k,)) for k in range(20)]
    [t.start() for t in th]
    [t.join() for t in th]
    check("20 parallel connections: every answer 200 and equal to the serial one (%.1f s)" % (time.time() - t0),
          all(o is True for o in out), str(out))

    # abuse, round after round; memory measured after the first (heaps and pools warmed)
    res = abuse(port)
    for what, code, st, ok_json in res:
        check("%s -> %s" % (what, code), st == code and ok_json, "got %s" % st)
    def round_():
        abuse(port)
        th = [threading.Thread(target=client, args=(k,)) for k in range(20)]
        [t.start() for t in th]
        [t.join() for t in th]

    round_()  # one more to warm the heaps of every server thread
    rss = [rss_kib(pid)]
    sanitized = bool(os.environ.get("CTERP_SANITIZED"))
    for _ in range(1 if sanitized else 5):
        round_()
        rss.append(rss_kib(pid))
    print("server RSS after each round of abuse (KiB): %s" % rss)
    if sanitized:
        print("skip: RSS bound under the sanitizers (ASan's quarantine grows; LeakSanitizer checks the server at exit)")
    else:
        check("no growth in memory: < 2 MiB over 5 rounds after the warm-up", rss[-1] - rss[0] < 2048, str(rss))
    st, ct, data = request(port, "GET", "/api/info")
    check("the server still answers", st == 200)
    return failed


# ---- headless Chromium over the DevTools protocol ------------------------------------------------

class WS:
    """A WebSocket client, text frames only (RFC 6455: client frames masked)."""

    def __init__(self, url):
        m = re.match(r"ws://([^:/]+):(\d+)(/.*)", url)
        self.s = socket.create_connection((m.group(1), int(m.group(2))), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        % (m.group(3), m.group(1), m.group(2), key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.s.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("websocket handshake: %r" % head[:200])
        self.id, self.events = 0, []

    def _read(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise RuntimeError("websocket closed")
            b += c
        return b

    def send(self, obj):
        p = json.dumps(obj).encode()
        mask = os.urandom(4)
        h = bytes([0x81])
        h += bytes([0x80 | len(p)]) if len(p) < 126 else (bytes([0x80 | 126]) + struct.pack(">H", len(p)) if len(p) < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", len(p)))
        self.s.sendall(h + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(p)))

    def recv(self):
        data = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            data += self._read(n)
            if b0 & 0x80:
                return json.loads(data)

    def call(self, method, **params):
        self.id += 1
        self.send({"id": self.id, "method": method, "params": params})
        while True:
            m = self.recv()
            if m.get("id") == self.id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self.events.append(m)

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("js %s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait(self, expr, secs=30):
        t0 = time.time()
        while time.time() - t0 < secs:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.1)
        return None

    def problems(self):
        """console messages and uncaught exceptions seen so far"""
        self.js("0")  # drain: events arrive before the answer to this
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append("exception: %s" % p["exceptionDetails"].get("exception", {}).get("description", p["exceptionDetails"].get("text")))
            elif m == "Runtime.consoleAPICalled":
                out.append("console.%s: %s" % (p["type"], [a.get("value", a.get("description")) for a in p["args"]]))
            elif m == "Log.entryAdded":
                out.append("log %s: %s" % (p["entry"]["level"], p["entry"]["text"]))
        return out


def cmd_browser(port, tmp):
    port = int(port)
    base = "http://127.0.0.1:%d" % port
    log = open(os.path.join(tmp, "chromium.log"), "w")
    proc = subprocess.Popen(["timeout", "90", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--remote-debugging-port=0", "--no-first-run",
                             "--user-data-dir=" + os.path.join(tmp, "chrome-profile"), "about:blank"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        url = None
        t0 = time.time()
        while time.time() - t0 < 30 and not url:  # "DevTools listening on ws://127.0.0.1:P/devtools/browser/..."
            time.sleep(0.1)
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", open(log.name).read())
            if m:
                url = m.group(1)
        if not url:
            check("chromium started with the DevTools protocol", False, open(log.name).read()[-500:])
            return failed
        targets = json.loads(request(int(url), "GET", "/json/list")[2])
        page = [t for t in targets if t["type"] == "page"][0]
        ws = WS(page["webSocketDebuggerUrl"])
        for d in ("Runtime.enable", "Log.enable", "Page.enable"):
            ws.call(d)
        ws.call("Page.navigate", url=base + "/")
        info = ws.wait("document.readyState === 'complete' && document.getElementById('info').textContent.indexOf('latents') >= 0 && document.getElementById('info').textContent")
        check("the page loads and shows the model (%s)" % (info or "")[:80], bool(info))
        prompt = "Tom had a red ball. He liked to play with it."
        ws.js("document.getElementById('prompt').value = %s; document.getElementById('run').click(); 1" % json.dumps(prompt))
        n = ws.wait("document.querySelectorAll('#toks i').length")
        st, a = api(port, "activations", {"prompt": prompt, "top": 5, "next": 10})
        dom = ws.js("Array.from(document.querySelectorAll('#toks i')).map(function(e){return [e.textContent, e.className, Number(e.dataset.act)]})")
        check("the prompt's %s tokens are in the DOM, as the API gives them" % n,
              dom and [d[0] for d in dom] == [t["text"] or "\u2205" for t in a["tokens"]], str(dom)[:300])
        sel = int(ws.js("document.getElementById('lat-n').textContent") or -1)
        top = a["top_latents"][0]["latent"]
        acts = [next((l["act"] for l in t["latents"] if l["latent"] == sel), 0) for t in a["tokens"]]
        shaded = [k for k, d in enumerate(dom or []) if re.search(r"\bh\d+\b", d[1])]
        hot = [k for k, d in enumerate(dom or []) if re.search(r"\bh10\b", d[1])]
        check("the top latent (%d) is selected and its tokens are shaded: %s, darkest at %s" % (top, shaded, hot),
              sel == top and shaded == [k for k, v in enumerate(acts) if v > 0] and hot and
              all(abs(acts[k] - max(acts)) < 1e-6 for k in hot), "selected %s, acts %s" % (sel, acts))
        # click a token: its top latents, as the API lists them
        k = len(a["tokens"]) // 2
        ws.js("document.querySelectorAll('#toks i')[%d].click(); 1" % k)
        shown = ws.wait("Array.from(document.querySelectorAll('#tokinfo button.lat')).map(function(b){return Number(b.dataset.latent)})")
        want_l = [l["latent"] for l in a["tokens"][k]["latents"]]
        check("clicking token %d lists its top latents %s" % (k, want_l), shown == want_l or (not want_l and shown is None), str(shown))
        # click another latent in the ranking table, then steer it
        other = a["top_latents"][1]["latent"]
        ws.js("document.querySelector('#ranked button.lat[data-latent=\"%d\"]').click(); 1" % other)
        check("clicking latent %d in the table opens it" % other,
              ws.wait("document.getElementById('lat-n').textContent === '%d' && !document.getElementById('latent').hidden" % other))
        check("its panel shows its logit effects and a link to its dashboard page",
              ws.wait("document.getElementById('lat-logits').textContent.indexOf('promotes') >= 0 && document.getElementById('lat-page').getAttribute('href')") == "/dash/f/%d.html" % other)
        ws.js("document.getElementById('prompt').value = 'Once upon a time'; document.getElementById('strength').value = '20';"
              "document.getElementById('n').value = '12'; document.getElementById('steer').click(); 1")
        got = ws.wait("(function(){var o=document.querySelector('#orig .cont'),s=document.querySelector('#steered .cont');"
                      "return o && s && document.querySelectorAll('#dloss i').length ? [o.textContent, s.textContent, document.querySelectorAll('#dloss i[title]').length] : null})()")
        st, s = api(port, "steer", {"prompt": "Once upon a time", "latent": other, "strength": 20, "n": 12, "mode": "add"})
        check("steering latent %d in the page: the continuation changes (%r -> %r)" % (other, got and got[0], got and got[1]),
              got and got[0] != got[1] and got[0] == s["original"]["continuation"] and got[1] == s["steered"]["continuation"],
              str(got))
        check("the per-token loss change is drawn for every token after the first",
              got and got[2] == len(s["loss"]) - 1, str(got))
        # the dashboard as served (its own inline script, under the server's Content-Security-Policy)
        ws.call("Page.navigate", url=base + "/dash/index.html#sort=max")
        check("the served dashboard's index sorts itself on load (its script ran)",
              ws.wait("document.body && document.body.dataset.sorted === '3d'"))
        ws.call("Page.navigate", url=base + "/dash/f/%d.html" % other)
        check("latent %d's dashboard page loads" % other,
              ws.wait("document.readyState === 'complete' && document.querySelector('h1') && document.querySelector('h1').textContent") == "Latent %d" % other)
        probs = ws.problems()
        check("no console messages or uncaught errors on any page", not probs, str(probs)[:500])
        # the detector itself: a deliberate error is seen
        ws.js("setTimeout(function(){ undefinedFunctionForTheTest(); }, 0); 1")
        time.sleep(0.3)
        probs = ws.problems()
        check("a deliberate error is caught by the same check", any("undefinedFunctionForTheTest" in p for p in probs), str(probs)[:300])
    finally:
        proc.terminate()
        proc.wait()
        log.close()
    return failed


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "api":
        sys.exit(cmd_api(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 4 and sys.argv[1] == "browser":
        sys.exit(cmd_browser(sys.argv[2], sys.argv[3]))
    print("usage: serve_client.py api PORT PID | browser PORT TMPDIR", file=sys.stderr)
    sys.exit(2)
