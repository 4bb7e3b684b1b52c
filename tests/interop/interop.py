#!/usr/bin/env python3
"""Interop checks: the release `herald` binary against independent clients,
PyPI's paho-mqtt (3.1.1 and 5.0) and Debian's mosquitto-clients.

Starts the broker on a free loopback port, runs each check, prints one line
per check and a closing 'N passed, N failed' line, and exits non-zero if any
check failed. Every wait is bounded; nothing sleeps to let things happen
except where a client must be given time to *not* receive something.
"""

import os
import queue
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("HERALD_BIN", os.path.join(ROOT, "target", "release", "herald"))
WAIT = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="herald-interop-")
        # Metrics on a free port too, so a broker already running on the
        # defaults (1883, 9464) does not get in the way.
        env = dict(os.environ, RUST_LOG="warn", HERALD_METRICS__BIND="127.0.0.1:0")
        self.proc = subprocess.Popen(
            [BIN, "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data],
            env=env,
        )
        deadline = time.time() + WAIT
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("herald exited at start-up")
                time.sleep(0.05)
        raise RuntimeError("herald did not start listening")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Client:
    """A paho client whose received messages and acks land in queues."""

    def __init__(self, port, client_id, v5=False, clean=True, will=None, props=None):
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kwargs = {"client_id": client_id, "protocol": proto}
        if not v5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.v5 = v5
        self.messages = queue.Queue()
        self.events = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_connect = lambda c, u, f, rc, p=None: self.events.put(("connack", f, rc, p))
        self.c.on_subscribe = lambda c, u, mid, rcs, p=None: self.events.put(("suback", mid, rcs))
        self.c.on_publish = lambda c, u, mid, rc=None, p=None: self.events.put(("puback", mid))
        if will:
            self.c.will_set(*will)
        if v5:
            self.c.connect("127.0.0.1", port, keepalive=30, clean_start=clean, properties=props)
        else:
            self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        kind, flags, rc, _ = self.expect("connack")
        self.session_present = bool(flags.session_present)
        assert not rc.is_failure, f"connect refused: {rc}"

    def expect(self, kind):
        deadline = time.time() + WAIT
        while True:
            ev = self.events.get(timeout=max(0.01, deadline - time.time()))
            if ev[0] == kind:
                return ev

    def subscribe(self, topic, qos=0, **kw):
        if self.v5:
            opts = mqtt.SubscribeOptions(qos=qos, **kw)
            self.c.subscribe(topic, options=opts)
        else:
            self.c.subscribe(topic, qos)
        return self.expect("suback")

    def publish(self, topic, payload, qos=0, retain=False, props=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published(), "publish not acknowledged"

    def message(self):
        return self.messages.get(timeout=WAIT)

    def no_message(self, seconds=0.5):
        try:
            m = self.messages.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic}")

    def close(self, drop=False):
        if drop:
            # Abnormal end: close the socket without DISCONNECT.
            self.c.loop_stop()
            self.c.socket().close()
        else:
            self.c.disconnect()
            self.c.loop_stop()


def uid():
    return uuid.uuid4().hex[:8]


def check_qos_round_trips(port):
    for v5 in (False, True):
        sub = Client(port, "s" + uid(), v5=v5)
        pub = Client(port, "p" + uid(), v5=v5)
        t = "rt/" + uid()
        sub.subscribe(t, qos=2)
        for qos in (0, 1, 2):
            pub.publish(t, f"q{qos}".encode(), qos=qos)
            m = sub.message()
            assert m.payload == f"q{qos}".encode() and m.qos == qos, (m.payload, m.qos)
        sub.close()
        pub.close()


def check_retained(port):
    t = "ret/" + uid()
    pub = Client(port, "p" + uid())
    pub.publish(t, b"kept", qos=1, retain=True)
    sub = Client(port, "s" + uid())
    sub.subscribe(t, qos=1)
    m = sub.message()
    assert m.payload == b"kept" and m.retain, (m.payload, m.retain)
    pub.publish(t, b"", qos=1, retain=True)  # delete
    late = Client(port, "l" + uid())
    late.subscribe(t, qos=1)
    late.no_message()
    for c in (pub, sub, late):
        c.close()


def check_will(port):
    t = "will/" + uid()
    sub = Client(port, "s" + uid())
    sub.subscribe(t, qos=1)
    dying = Client(port, "d" + uid(), will=(t, b"gone", 1, False))
    dying.close(drop=True)
    m = sub.message()
    assert m.payload == b"gone", m.payload
    polite = Client(port, "n" + uid(), will=(t, b"never", 1, False))
    polite.close()
    sub.no_message()
    sub.close()


def check_persistent_session(port):
    cid, t = "persist-" + uid(), "off/" + uid()
    c = Client(port, cid, clean=False)
    c.subscribe(t, qos=1)
    c.close()
    pub = Client(port, "p" + uid())
    for i in range(3):
        pub.publish(t, f"m{i}".encode(), qos=1)
    back = Client(port, cid, clean=False)
    assert back.session_present, "session not present on resume"
    got = [back.message().payload for _ in range(3)]
    assert got == [b"m0", b"m1", b"m2"], got
    back.close()
    pub.close()


def check_v5_properties(port):
    t = "props/" + uid()
    sub = Client(port, "s" + uid(), v5=True)
    sub.subscribe(t, qos=1)
    pub = Client(port, "p" + uid(), v5=True)
    p = Properties(PacketTypes.PUBLISH)
    p.PayloadFormatIndicator = 1
    p.ContentType = "text/plain"
    p.ResponseTopic = "reply/here"
    p.CorrelationData = b"\x01\x02"
    p.UserProperty = [("k", "v"), ("k", "w")]
    p.MessageExpiryInterval = 60
    pub.publish(t, b"payload", qos=1, props=p)
    m = sub.message()
    q = m.properties
    assert q.PayloadFormatIndicator == 1
    assert q.ContentType == "text/plain"
    assert q.ResponseTopic == "reply/here"
    assert q.CorrelationData == b"\x01\x02"
    assert q.UserProperty == [("k", "v"), ("k", "w")], q.UserProperty
    assert 0 < q.MessageExpiryInterval <= 60
    sub.close()
    pub.close()


def check_shared_subscriptions(port):
    t = "work/" + uid()
    a = Client(port, "a" + uid(), v5=True)
    b = Client(port, "b" + uid(), v5=True)
    a.subscribe(f"$share/g/{t}", qos=1)
    b.subscribe(f"$share/g/{t}", qos=1)
    pub = Client(port, "p" + uid(), v5=True)
    for i in range(10):
        pub.publish(t, f"{i}".encode(), qos=1)
    got_a = [a.message() for _ in range(5)]
    got_b = [b.message() for _ in range(5)]
    a.no_message(0.3)
    b.no_message(0.3)
    assert len(got_a) + len(got_b) == 10
    for c in (a, b, pub):
        c.close()


def check_mosquitto_clients(port):
    import threading

    for version in ("mqttv31", "mqttv311", "mqttv5"):
        t = "mosq/" + uid()
        sub = subprocess.Popen(
            ["mosquitto_sub", "-p", str(port), "-t", t, "-q", "2", "-V", version],
            stdout=subprocess.PIPE, text=True,
        )
        lines = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(line.strip()) for line in sub.stdout], daemon=True
        ).start()

        def pub(message, qos="0"):
            subprocess.run(["mosquitto_pub", "-p", str(port), "-t", t, "-m", message,
                            "-q", qos, "-V", version], check=True, timeout=WAIT)

        try:
            # The subscriber is ready when a probe comes back to it.
            deadline = time.time() + WAIT
            while True:
                pub("ready")
                try:
                    if lines.get(timeout=0.2) == "ready":
                        break
                except queue.Empty:
                    assert time.time() < deadline, "mosquitto_sub never subscribed"
            for qos in ("0", "1", "2"):
                pub(f"{version}-{qos}", qos)
            got = []
            while len(got) < 3:
                line = lines.get(timeout=WAIT)
                if line != "ready":
                    got.append(line)
            assert got == [f"{version}-0", f"{version}-1", f"{version}-2"], (version, got)
        finally:
            sub.terminate()
            sub.wait(timeout=WAIT)


CHECKS = [
    check_qos_round_trips,
    check_retained,
    check_will,
    check_persistent_session,
    check_v5_properties,
    check_shared_subscriptions,
    check_mosquitto_clients,
]


def run_checks(label, checks, *args):
    """Runs every check with `args`, one line each, then a summary line;
    returns the exit status (1 if any failed)."""
    passed = failed = 0
    for check in checks:
        name = check.__name__[len("check_"):]
        try:
            check(*args)
            passed += 1
            print(f"ok   {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    print(f"{label}: {passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    broker = Broker()
    try:
        return run_checks("interop", CHECKS, broker.port)
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
