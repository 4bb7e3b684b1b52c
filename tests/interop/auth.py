#!/usr/bin/env python3
"""Access-control interop checks: the release `herald` binary with a
password file made by Debian's `mosquitto_passwd` and a mosquitto ACL file,
against Debian's mosquitto-clients and PyPI's paho-mqtt (3.1.1 and 5.0);
`herald passwd`'s file read by Debian's mosquitto broker; the password and
ACL files re-read on SIGHUP (a broken file keeps the old one); and the
secure default (anonymous clients from loopback only), with the remote
address carried in a PROXY protocol header so no traffic leaves the machine.

Prints one line per check and a closing 'N passed, N failed' line; exits
non-zero if any check failed. Every wait is bounded.
"""

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as mqtt

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("HERALD_BIN", os.path.join(ROOT, "target", "release", "herald"))
WAIT = 10.0

ACL = """\
# anonymous clients: nothing
user alice
topic readwrite #
topic deny secret/#

user bob
topic read open/#

user writer
topic write #

user reader
topic read secret/#

pattern write devices/%c/#
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc):
    deadline = time.time() + WAIT
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the broker exited at start-up")
            time.sleep(0.05)
    raise RuntimeError("the broker did not start listening")


class Herald:
    """The release binary with a config file in `folder`; stderr in a file."""

    def __init__(self, folder, toml):
        self.port = free_port()
        self.folder = folder
        conf = os.path.join(folder, "herald.toml")
        with open(conf, "w") as f:
            f.write(toml)
        self.log_path = os.path.join(folder, "herald.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ, RUST_LOG="info", HERALD_METRICS__BIND="127.0.0.1:0")
        self.proc = subprocess.Popen(
            [BIN, "--config", conf, "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", os.path.join(folder, "data")],
            env=env, stderr=self.log, stdout=subprocess.DEVNULL,
        )
        wait_listening(self.port, self.proc)

    def logged(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_logged(self, text):
        deadline = time.time() + WAIT
        while time.time() < deadline:
            if text in self.logged():
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def paho_connack(port, user=None, password=None, v5=False, client_id="paho"):
    """The CONNACK reason paho reports (0: accepted)."""
    proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
    if user is not None:
        c.username_pw_set(user, password)
    got = queue.Queue()
    c.on_connect = lambda c, u, f, rc, p=None: got.put(rc.value)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        return got.get(timeout=WAIT)
    finally:
        c.disconnect()
        c.loop_stop()


def mosquitto_pub(port, *args):
    return subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", "t", "-m", "x", *args],
        capture_output=True, text=True, timeout=WAIT,
    )


class Sub:
    """A paho subscriber whose messages land in a queue."""

    def __init__(self, port, client_id, user, password, topic):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.c.username_pw_set(user, password)
        self.messages = queue.Queue()
        subscribed = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode()))
        self.c.on_subscribe = lambda c, u, mid, rcs, p=None: subscribed.put([r.value for r in rcs])
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.granted = subscribed.get(timeout=WAIT)

    def until(self, payload):
        got = []
        deadline = time.time() + WAIT
        while time.time() < deadline:
            topic, text = self.messages.get(timeout=max(0.01, deadline - time.time()))
            if text == payload:
                return got
            got.append(f"{topic}={text}")
        raise TimeoutError(payload)

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def publish(port, client_id, user, password, topic, payload, retain=False):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(user, password)
    c.connect("127.0.0.1", port)
    c.loop_start()
    info = c.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(timeout=WAIT)
    c.disconnect()
    c.loop_stop()


def raw_connack(port, proxy_header, client_id=b"raw"):
    """Sends a PROXY header and an MQTT 3.1.1 CONNECT; the CONNACK's
    return code."""
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = var + payload
    packet = bytes([0x10, len(body)]) + body
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(proxy_header + packet)
        answer = b""
        while len(answer) < 4:
            chunk = s.recv(4 - len(answer))
            if not chunk:
                break
            answer += chunk
    if len(answer) < 4 or answer[0] != 0x20:
        return None
    return answer[3]


results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure, go on
        results.append((name, e))
        print(f"FAIL {name}: {e!r}")


def main():
    work = tempfile.mkdtemp(prefix="herald-auth-interop-")
    passwd = os.path.join(work, "passwd")
    subprocess.run(["mosquitto_passwd", "-c", "-b", passwd, "alice", "secret"], check=True)
    subprocess.run(["mosquitto_passwd", "-H", "sha512", "-b", passwd, "bob", "pw2"], check=True)
    for user in ("writer", "reader"):
        subprocess.run(["mosquitto_passwd", "-b", passwd, user, "pw"], check=True)
    with open(os.path.join(work, "acl"), "w") as f:
        f.write(ACL)
    # Relative paths: relative to the config file's folder.
    broker = Herald(work, '[auth]\npassword_file = "passwd"\n[acl]\nfile = "acl"\n')
    port = broker.port
    try:
        def mosquitto_clients():
            ok = mosquitto_pub(port, "-u", "alice", "-P", "secret")
            assert ok.returncode == 0, ok.stderr
            bad = mosquitto_pub(port, "-u", "alice", "-P", "wrong")
            assert bad.returncode != 0 and "bad user name or password" in bad.stderr.lower(), bad.stderr
            anon = mosquitto_pub(port)
            assert anon.returncode != 0 and "not authorised" in anon.stderr.lower(), anon.stderr
            sha = mosquitto_pub(port, "-u", "bob", "-P", "pw2", "-t", "open/x")
            assert sha.returncode == 0, f"$6$ entry: {sha.stderr}"
        check("mosquitto_pub: right password, wrong one (code 4), none (code 5)", mosquitto_clients)

        def paho():
            for v5 in (False, True):
                assert paho_connack(port, "alice", "secret", v5) == 0
                # paho reports 3.1.1 code 4 / 5 as 0x86 / 0x87.
                assert paho_connack(port, "alice", "wrong", v5) == 0x86
                assert paho_connack(port, None, None, v5) == 0x87
        check("paho-mqtt 3.1.1 and 5.0: accepted, 0x86, 0x87", paho)

        def acl_no_leak():
            # The writer may publish anywhere; the reader may read secret/.
            publish(port, "writer", "writer", "pw", "secret/r", "retained-leak", retain=True)
            subs = [Sub(port, f"alice-{i}", "alice", "secret", f) for i, f in
                    enumerate(["#", "+/a", "+/#", "$share/g/#"])]
            reader = Sub(port, "reader", "reader", "pw", "secret/#")
            try:
                for s in subs + [reader]:
                    assert s.granted == [1], s.granted
                publish(port, "writer", "writer", "pw", "secret/a", "leak")
                publish(port, "writer", "writer", "pw", "open/a", "end")
                assert reader.until("leak") == ["secret/r=retained-leak"], "the secrets are there"
                for s in subs:
                    got = s.until("end")
                    assert not [g for g in got if g.startswith("secret/")], got
            finally:
                for s in subs + [reader]:
                    s.stop()
        check("ACL: #, +/a, +/#, $share/g/# and retained never deliver secret/...", acl_no_leak)

        def sighup_reload():
            carol = subprocess.run([BIN, "passwd", "-b", passwd, "carol", "pw3"],
                                   capture_output=True, text=True, timeout=WAIT)
            assert carol.returncode == 0, carol.stderr
            assert paho_connack(port, "carol", "pw3") == 0x86, "not before SIGHUP"
            broker.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + WAIT
            while paho_connack(port, "carol", "pw3") != 0:
                assert time.time() < deadline, "carol never let in after SIGHUP"
                time.sleep(0.1)
            with open(passwd, "a") as f:
                f.write("dave:not-a-hash\n")
            broker.proc.send_signal(signal.SIGHUP)
            assert broker.wait_logged("access control not reloaded"), broker.logged()[-2000:]
            assert "passwd:6" in broker.logged(), "the error names file:line"
            assert paho_connack(port, "carol", "pw3") == 0, "the loaded file stays in force"
            assert "pw3" not in broker.logged(), "no password in the log"
        check("SIGHUP re-reads the password file; a broken one keeps the old", sighup_reload)
    finally:
        broker.stop()

    def herald_passwd_read_by_mosquitto():
        folder = tempfile.mkdtemp(prefix="herald-passwd-mosquitto-", dir=work)
        pw = os.path.join(folder, "pw")
        made = subprocess.run([BIN, "passwd", "-c", "-b", pw, "alice", "s3cret"],
                              capture_output=True, text=True, timeout=WAIT)
        assert made.returncode == 0, made.stderr
        mport = free_port()
        conf = os.path.join(folder, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {mport} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n")
            if os.geteuid() == 0:
                # mosquitto run as root drops to user mosquitto, which cannot
                # read a 0600 file of root's.
                f.write("user root\n")
        proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(mport, proc)
            assert mosquitto_pub(mport, "-u", "alice", "-P", "s3cret").returncode == 0
            assert mosquitto_pub(mport, "-u", "alice", "-P", "wrong").returncode != 0
        finally:
            proc.terminate()
            proc.wait(timeout=WAIT)
    check("herald passwd's file is read by Debian's mosquitto", herald_passwd_read_by_mosquitto)

    def secure_default():
        folder = tempfile.mkdtemp(prefix="default-", dir=work)
        b = Herald(folder, "[listener]\nproxy_protocol = true\n")
        try:
            local = raw_connack(b.port, b"PROXY TCP4 127.0.0.9 127.0.0.1 40001 1883\r\n")
            assert local == 0, f"loopback refused: {local}"
            local6 = raw_connack(b.port, b"PROXY TCP6 ::1 ::1 40002 1883\r\n")
            assert local6 == 0, f"::1 refused: {local6}"
            remote = raw_connack(b.port, b"PROXY TCP4 198.51.100.7 127.0.0.1 40003 1883\r\n")
            assert remote == 5, f"remote anonymous client: {remote}"
            assert "auth.allow_anonymous" in b.logged(), "the start-up line names the key"
        finally:
            b.stop()
    check("secure default: anonymous from loopback only (PROXY-carried address)", secure_default)

    shutil.rmtree(work, ignore_errors=True)
    failed = [n for n, e in results if e is not None]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
