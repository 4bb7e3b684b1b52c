//! Shared by the tests that run the real `herald` binary: temp folders, a
//! child process whose output lines arrive on channels (so tests wait on
//! lines, never sleep), and a plain HTTP/1.1 exchange.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest any single wait may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// A fresh, empty folder under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-bin-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("{}: {e}", dir.display());
    }
    dir
}

pub fn write(path: &Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        panic!("{}: {e}", path.display());
    }
}

/// The herald binary the tests run: `HERALD_TEST_BINARY` if set
/// (scripts/test.sh runs the crash tests again against the release build
/// that way), else the one cargo built with the tests.
pub fn herald_binary() -> PathBuf {
    std::env::var_os("HERALD_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_herald")))
}

/// A tmpfs of a given size mounted on a fresh folder (only as root: `None`
/// otherwise), unmounted when dropped: a small filesystem to fill.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, e.g. `4m`) on `dir`.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let root = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&root.stdout).trim() != "0" {
            return None;
        }
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a failed test may leave a process with files open there.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A child process whose stdout and stderr lines arrive on channels.
pub struct Running {
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
    /// Every stderr line so far, for failure messages.
    pub log: Vec<String>,
}

impl Running {
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Running {
        Running::spawn_in(None, args, env)
    }

    /// [`Running::spawn`] in the working directory `cwd`.
    pub fn spawn_in(cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(herald_binary());
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        Running::spawn_command(cmd, args, env)
    }

    /// Runs herald with at most `n` open files (soft and hard limit).
    pub fn spawn_with_open_files(n: u32, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut sh = Command::new("/bin/sh");
        sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")]);
        sh.arg(herald_binary());
        Running::spawn_command(sh, args, env)
    }

    /// Runs herald with every write past `kib` KiB of a file failing
    /// (`EFBIG`, as on a full disk; pipes are not files): the soft
    /// `RLIMIT_FSIZE`, with SIGXFSZ ignored so the write fails rather than
    /// the process dying. [`Running::lift_file_size_limit`] lifts it.
    /// Needs no privileges: runs anywhere the tests do.
    pub fn spawn_with_file_size_limit(kib: u64, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut sh = Command::new("/bin/bash");
        sh.args([
            "-c",
            &format!("trap '' XFSZ && ulimit -S -f {kib} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_herald"),
        ]);
        Running::spawn_command(sh, args, env)
    }

    /// Lifts what [`Running::spawn_with_file_size_limit`] set (the soft
    /// limit back up to the hard one, which is unlimited).
    pub fn lift_file_size_limit(&self) {
        let status = Command::new("prlimit")
            .args(["--pid", &self.child.id().to_string(), "--fsize=unlimited:"])
            .status()
            .unwrap_or_else(|e| panic!("prlimit: {e}"));
        assert!(status.success(), "prlimit failed");
    }

    /// Lowers the file size limit of a process started by
    /// [`Running::spawn_with_file_size_limit`] to `bytes`: writes to the
    /// state log (past that size) fail from now on, until
    /// [`Running::lift_file_size_limit`].
    pub fn limit_file_size(&self, bytes: u64) {
        let status = Command::new("prlimit")
            .args(["--pid", &self.child.id().to_string()])
            .arg(format!("--fsize={bytes}:"))
            .status()
            .unwrap_or_else(|e| panic!("prlimit: {e}"));
        assert!(status.success(), "prlimit failed");
    }

    fn spawn_command(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Running {
        cmd.env_clear()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run herald: {e}"));
        let lines = |r: Box<dyn Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().expect("piped stdout")));
        let stderr = lines(Box::new(child.stderr.take().expect("piped stderr")));
        Running {
            child,
            stdout,
            stderr,
            log: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`.
    pub fn stderr_line(&mut self, needle: &str) -> String {
        let until = Instant::now() + WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no {needle:?} on stderr; so far:\n{}", self.log.join("\n")),
            }
        }
    }

    /// The next stdout line.
    pub fn stdout_line(&mut self) -> String {
        self.stdout
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no stdout line within {WAIT:?}"))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.terminate_with_log().0
    }

    /// [`Running::terminate`], also returning every stderr line.
    pub fn terminate_with_log(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success());
        let until = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
                self.log.extend(self.stderr.try_iter());
                return (status, std::mem::take(&mut self.log));
            }
            // Drain stderr while waiting; a closed pipe means it exited.
            match self
                .stderr
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.log.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().unwrap_or_else(|e| panic!("{e}"));
                    return (status, std::mem::take(&mut self.log));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("herald did not stop; log:\n{}", self.log.join("\n"));
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address after `addr=` in a log line.
pub fn logged_addr(line: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr=")?.parse().ok())
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
}

/// A plain HTTP/1.1 exchange; returns the whole answer.
pub fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    stream
        .set_read_timeout(Some(WAIT))
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// The value of a metric line in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `/metrics` until `name` reaches `at_least` (the process is
/// external: there is nothing to await but its answers).
pub fn wait_metric(metrics: SocketAddr, name: &str, at_least: u64) {
    let until = std::time::Instant::now() + WAIT;
    loop {
        let text = http(
            metrics,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if metric(&text, name).is_some_and(|v| v >= at_least) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{name} < {at_least}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Appends `n` as an MQTT Remaining Length (variable byte integer), for
/// tests that write raw packets.
pub fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

/// One raw-socket MQTT 3.1.1 publisher flooding QoS 1 PUBLISHes (payload:
/// its index) without waiting for each PUBACK (at most `WINDOW` unanswered),
/// counting the PUBACKs until the connection breaks.
pub mod flood {
    use super::varint;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Most PUBLISHes sent and not yet acknowledged.
    const WINDOW: u64 = 500;

    /// A 3.1.1 CONNECT for `client_id` (clean session, no keep alive).
    pub fn connect_packet(client_id: &str) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0];
        body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
        body.extend_from_slice(client_id.as_bytes());
        let mut out = vec![0x10];
        varint(body.len(), &mut out);
        out.extend_from_slice(&body);
        out
    }

    /// Appends a QoS 1 PUBLISH to `topic`: payload `index`, packet id
    /// `index % 65,535 + 1`.
    pub fn publish_packet(topic: &str, index: u64, out: &mut Vec<u8>) {
        let topic = topic.as_bytes();
        let payload = index.to_string();
        let id = (index % 65_535 + 1) as u16;
        out.push(0x32);
        varint(2 + topic.len() + 2 + payload.len(), out);
        out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        out.extend_from_slice(topic);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(payload.as_bytes());
    }

    /// Floods `topic` until the broker goes away; `acked` counts the PUBACKs (in
    /// order: each must carry the next packet id). Returns when the socket
    /// breaks.
    pub fn run(mqtt: SocketAddr, client_id: &str, topic: &str, acked: Arc<AtomicU64>) {
        let Ok(mut stream) = TcpStream::connect(mqtt) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        if stream.write_all(&connect_packet(client_id)).is_err() {
            return;
        }
        let mut connack = [0u8; 4];
        if stream.read_exact(&mut connack).is_err() || connack != [0x20, 2, 0, 0] {
            return;
        }
        let Ok(mut reader) = stream.try_clone() else {
            return;
        };
        let counter = acked.clone();
        let reading = std::thread::spawn(move || {
            let mut ack = [0u8; 4];
            while reader.read_exact(&mut ack).is_ok() {
                let n = counter.load(Ordering::SeqCst);
                let expected = (n % 65_535 + 1) as u16;
                assert_eq!(ack[..2], [0x40, 2], "a PUBACK");
                assert_eq!(
                    u16::from_be_bytes([ack[2], ack[3]]),
                    expected,
                    "PUBACKs in PUBLISH order"
                );
                counter.store(n + 1, Ordering::SeqCst);
            }
        });
        let mut sent = 0u64;
        let mut buf = Vec::new();
        loop {
            let done = acked.load(Ordering::SeqCst);
            if reading.is_finished() {
                break;
            }
            if sent - done >= WINDOW {
                std::thread::yield_now();
                continue;
            }
            buf.clear();
            while sent - done < WINDOW && buf.len() < 16 * 1024 {
                publish_packet(topic, sent, &mut buf);
                sent += 1;
            }
            if stream.write_all(&buf).is_err() {
                break;
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
        if let Err(panic) = reading.join() {
            std::panic::resume_unwind(panic);
        }
    }
}
