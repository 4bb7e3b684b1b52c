#!/usr/bin/env python3
"""Interop checks of the listener kinds: the release `herald` binary with TLS,
WebSocket, secure WebSocket and a PROXY-protocol TCP listener, against
independent clients: PyPI's paho-mqtt (tls_set, transport="websockets"),
Debian's mosquitto_pub/mosquitto_sub (--cafile, --cert) and openssl s_client,
and MQTT.js under Node (ws and wss) and in headless Chromium (ws). What the broker saw of each client is
read from the WebHook's client.connected bodies (username, ipaddress),
received by a small HTTP server here.

Certificates are made here with openssl, the way README's "Listeners"
section shows. Prints one line per check and 'listeners: N passed, N
failed'; exits non-zero if any failed. Every wait is bounded.
"""

import http.server
import json
import os
import queue
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from interop import run_checks

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("HERALD_BIN", os.path.join(ROOT, "target", "release", "herald"))
JS = os.path.join(HERE, "js")
WAIT = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, timeout=30, **kw)


def make_certs(d):
    """A CA, a server certificate for 127.0.0.1/localhost, a client
    certificate with CN dev1 and one from another CA."""
    def ca(name):
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", f"/CN={name} CA",
            "-keyout", f"{d}/{name}-ca.key", "-out", f"{d}/{name}-ca.pem")

    def issue(name, subj, ca_name, ext):
        ext_file = f"{d}/{name}.ext"
        with open(ext_file, "w") as f:
            f.write(ext)
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", subj,
            "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr")
        run("openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-days", "2",
            "-CA", f"{d}/{ca_name}-ca.pem", "-CAkey", f"{d}/{ca_name}-ca.key",
            "-CAcreateserial", "-extfile", ext_file, "-out", f"{d}/{name}.pem")

    ca("test")
    ca("other")
    issue("server", "/CN=localhost", "test",
          "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    issue("dev1", "/O=Acme/CN=dev1", "test", "extendedKeyUsage=clientAuth\n")
    issue("stranger", "/CN=stranger", "other", "extendedKeyUsage=clientAuth\n")


class Hooks:
    """Receives the WebHook's POSTs; client.connected bodies land in a queue."""

    def __init__(self):
        self.connected = queue.Queue()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                for line in body.splitlines() or [body]:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    for e in event if isinstance(event, list) else [event]:
                        if e.get("action") == "client_connected":
                            outer.connected.put(e)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self, clientid):
        """The client.connected body of `clientid`."""
        deadline = time.time() + WAIT
        while True:
            e = self.connected.get(timeout=max(0.01, deadline - time.time()))
            if e.get("clientid") == clientid:
                return e


class Broker:
    def __init__(self, d, hooks):
        self.ports = {k: free_port() for k in ("tcp", "proxy", "tls", "ws", "wss")}
        p = self.ports
        config = f"""
data_dir = "{d}/data"
[listener]
bind = ["127.0.0.1:{p['tcp']}"]
[listener.tls]
bind = ["127.0.0.1:{p['tls']}"]
certfile = "{d}/server.pem"
keyfile = "{d}/server.key"
cacertfile = "{d}/test-ca.pem"
verify_peer = true
peer_cert_as_username = "cn"
[listener.ws]
bind = ["127.0.0.1:{p['ws']}"]
[listener.wss]
bind = ["127.0.0.1:{p['wss']}"]
verify_peer = false
peer_cert_as_username = ""
[metrics]
bind = ""
# The PROXY check carries remote addresses (192.0.2.x, 2001:db8::x): anonymous
# clients from those are refused by default (access control's secure default).
[auth]
allow_anonymous = true
[webhook]
url = "http://127.0.0.1:{hooks.port}/hook"
"rule.client.connected.1" = '{{"action": "on_client_connected"}}'
"""
        path = f"{d}/herald.toml"
        with open(path, "w") as f:
            f.write(config)
        # A second broker process would need its own data dir; the PROXY
        # listener is a TCP listener with proxy_protocol on, so it runs in
        # its own process.
        proxy_config = config.replace(f"127.0.0.1:{p['tcp']}", f"127.0.0.1:{p['proxy']}", 1)
        proxy_config = proxy_config.replace("[listener]\n", "[listener]\nproxy_protocol = true\n", 1)
        proxy_config = proxy_config.replace(f'data_dir = "{d}/data"', f'data_dir = "{d}/data-proxy"')
        for kind in ("tls", "ws", "wss"):
            proxy_config = proxy_config.replace(f'bind = ["127.0.0.1:{p[kind]}"]', "bind = []")
        proxy_path = f"{d}/herald-proxy.toml"
        with open(proxy_path, "w") as f:
            f.write(proxy_config)
        env = dict(os.environ, RUST_LOG="warn")
        self.procs = [subprocess.Popen([BIN, "--config", c], env=env) for c in (path, proxy_path)]
        for port in self.ports.values():
            self.wait_port(port)

    def wait_port(self, port):
        deadline = time.time() + WAIT
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if any(p.poll() is not None for p in self.procs):
                    raise RuntimeError("herald exited at start-up")
                time.sleep(0.05)
        raise RuntimeError(f"herald did not listen on {port}")

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                p.kill()


def paho_round_trip(port, transport="tcp", tls=None, cid=None):
    """Connects paho, subscribes, publishes QoS 1, waits for the message."""
    cid = cid or f"paho-{uuid.uuid4().hex[:8]}"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, transport=transport)
    if tls:
        c.tls_set(**tls)
    got = queue.Queue()
    connected = threading.Event()
    subscribed = threading.Event()
    c.on_connect = lambda c_, u, f, rc, p=None: connected.set()
    c.on_subscribe = lambda c_, u, mid, rcs, p=None: subscribed.set()
    c.on_message = lambda c_, u, m: got.put(m.payload)
    if transport == "websockets":
        c.ws_set_options(path="/mqtt")
    c.connect("localhost" if tls else "127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        assert connected.wait(WAIT), "no CONNACK"
        topic = f"interop/{cid}"
        c.subscribe(topic, 1)
        assert subscribed.wait(WAIT), "no SUBACK"
        c.publish(topic, b"round trip", qos=1)
        assert got.get(timeout=WAIT) == b"round trip"
    finally:
        c.disconnect()
        c.loop_stop()
    return cid


def check_paho_tls(b, d, hooks):
    paho_round_trip(b.ports["tls"], tls={"ca_certs": f"{d}/test-ca.pem"})


def check_paho_mutual_tls_cn_is_webhook_username(b, d, hooks):
    cid = paho_round_trip(b.ports["tls"], tls={
        "ca_certs": f"{d}/test-ca.pem", "certfile": f"{d}/dev1.pem", "keyfile": f"{d}/dev1.key"})
    body = hooks.client(cid)
    assert body["username"] == "dev1", body


def check_wrong_ca_client_certificate_refused(b, d, hooks):
    try:
        paho_round_trip(b.ports["tls"], tls={
            "ca_certs": f"{d}/test-ca.pem", "certfile": f"{d}/stranger.pem",
            "keyfile": f"{d}/stranger.key"})
    except (AssertionError, OSError, ssl.SSLError):
        return
    raise AssertionError("a certificate of another CA was accepted")


def check_mosquitto_clients_tls(b, d, hooks):
    topic = f"interop/mosq/{uuid.uuid4().hex[:8]}"
    base = ["-h", "localhost", "-p", str(b.ports["tls"]), "--cafile", f"{d}/test-ca.pem"]
    sub = subprocess.Popen(["mosquitto_sub", *base, "--cert", f"{d}/dev1.pem", "--key",
                            f"{d}/dev1.key", "-t", topic, "-C", "1", "-W", "10", "-q", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + WAIT
    while sub.poll() is None and time.time() < deadline:
        run("mosquitto_pub", *base, "-t", topic, "-m", "via mosquitto", "-q", "1")
        try:
            out, err = sub.communicate(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        out, err = sub.communicate(timeout=WAIT)
    assert out.decode().strip().startswith("via mosquitto"), (out, err)


def check_openssl_s_client(b, d, hooks):
    for version, ok in (("-tls1_2", True), ("-tls1_3", True), ("-tls1_1", False)):
        r = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{b.ports['tls']}", "-servername",
             "localhost", "-CAfile", f"{d}/test-ca.pem", "-alpn", "mqtt", version],
            input=b"", capture_output=True, timeout=30)
        text = (r.stdout + r.stderr).decode(errors="replace")
        if ok:
            assert r.returncode == 0, text
            assert "Verify return code: 0 (ok)" in text, text
            assert "ALPN protocol: mqtt" in text, text
        else:
            assert r.returncode != 0, text
            assert "ALPN protocol: mqtt" not in text, text


def check_paho_websocket(b, d, hooks):
    paho_round_trip(b.ports["ws"], transport="websockets")


def check_paho_secure_websocket(b, d, hooks):
    paho_round_trip(b.ports["wss"], transport="websockets", tls={"ca_certs": f"{d}/test-ca.pem"})


def node_round_trip(url, *extra):
    r = subprocess.run(["node", os.path.join(JS, "roundtrip.js"), url, *extra],
                       capture_output=True, timeout=30, cwd=JS)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")


def check_mqttjs_websocket(b, d, hooks):
    node_round_trip(f"ws://127.0.0.1:{b.ports['ws']}/mqtt")


def check_mqttjs_secure_websocket(b, d, hooks):
    node_round_trip(f"wss://localhost:{b.ports['wss']}/mqtt", f"{d}/test-ca.pem")


def connect_packet(cid):
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid.encode()
    return bytes([0x10, len(body)]) + body


def check_proxy_protocol_address_is_webhook_ipaddress(b, d, hooks):
    v2_src = bytes([192, 0, 2, 33])
    v2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12]) + v2_src
          + bytes([127, 0, 0, 1]) + struct.pack(">HH", 40003, 1883))
    cases = [
        (b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 1883\r\n", "198.51.100.7"),
        (v2, "192.0.2.33"),
    ]
    for header, ip in cases:
        cid = f"proxy-{uuid.uuid4().hex[:8]}"
        with socket.create_connection(("127.0.0.1", b.ports["proxy"]), timeout=WAIT) as s:
            s.sendall(header + connect_packet(cid))
            assert s.recv(4) == b"\x20\x02\x00\x00", "no CONNACK"
            body = hooks.client(cid)
            assert body["ipaddress"] == ip, body
    with socket.create_connection(("127.0.0.1", b.ports["proxy"]), timeout=WAIT) as s:
        s.sendall(connect_packet("no-header"))
        assert s.recv(4) == b"", "a connection without a PROXY header must be closed"


def chromium():
    """The headless Chromium binary (Debian's chromium-headless-shell, or a
    full chromium)."""
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/lib/chromium"]:
            path = os.path.join(d, name)
            if os.access(path, os.X_OK):
                return path
    raise RuntimeError("no headless Chromium (scripts/install-test-deps.sh installs "
                       "Debian's chromium-headless-shell)")


def check_browser_mqttjs_websocket(b, d, hooks):
    """A real browser: headless Chromium opens tests/interop/browser/index.html,
    whose MQTT.js connects over ws, subscribes, publishes and shows what it
    received; the page posts its text back here."""
    files = {
        "/": (os.path.join(HERE, "browser", "index.html"), "text/html"),
        "/mqtt.min.js": (os.path.join(JS, "node_modules", "mqtt", "dist", "mqtt.min.js"),
                         "text/javascript"),
    }
    results = queue.Queue()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path not in files:
                self.send_error(404)
                return
            name, kind = files[path]
            with open(name, "rb") as f:
                data = f.read()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(204)
            self.end_headers()
            if self.path == "/result":
                results.put(body.decode("utf-8", "replace"))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cid = f"browser-{uuid.uuid4().hex[:8]}"
    url = (f"http://127.0.0.1:{server.server_address[1]}/?id={cid}"
           f"&ws=ws://127.0.0.1:{b.ports['ws']}/mqtt")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=d)
    browser = subprocess.Popen(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        try:
            text = results.get(timeout=3 * WAIT)
        except queue.Empty:
            raise AssertionError("the page reported nothing (Chromium "
                                 + ("exited" if browser.poll() is not None else "still running")
                                 + ")") from None
        topic = f"browser/{cid}"
        for line in ("connected", f"subscribed {topic}",
                     f"received {topic}: hello from the browser"):
            assert line in text.splitlines(), f"{line!r} not on the page: {text!r}"
        assert hooks.client(cid)["clientid"] == cid
    finally:
        browser.kill()
        browser.wait()
        server.shutdown()


CHECKS = [
    check_paho_tls,
    check_paho_mutual_tls_cn_is_webhook_username,
    check_wrong_ca_client_certificate_refused,
    check_mosquitto_clients_tls,
    check_openssl_s_client,
    check_paho_websocket,
    check_paho_secure_websocket,
    check_mqttjs_websocket,
    check_mqttjs_secure_websocket,
    check_browser_mqttjs_websocket,
    check_proxy_protocol_address_is_webhook_ipaddress,
]


def main():
    d = tempfile.mkdtemp(prefix="herald-listeners-")
    make_certs(d)
    hooks = Hooks()
    broker = Broker(d, hooks)
    try:
        return run_checks("listeners", CHECKS, broker, d, hooks)
    finally:
        broker.stop()
        hooks.server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
