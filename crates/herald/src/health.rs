//! What `GET /ready` checks (served by the metrics listener, see
//! `metrics.rs`): every MQTT listener is bound, the data directory takes a
//! write, and each registered check (the broker state log, the WebHook's
//! spool) passes.
//!
//! A check never waits on the MQTT path; the data directory probe runs on a
//! blocking thread under a deadline, so a hung disk makes the answer "not
//! ready", never a hung probe.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// One more condition for readiness: `Err` says, in plain words, why it
/// does not hold.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// How long the data directory probe may take before the answer is "not
/// ready".
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// The state `/ready` reports on.
pub struct Readiness {
    /// Set once every MQTT listener is bound.
    listening: AtomicBool,
    /// Where state that outlives the process is kept; must take a write.
    data_dir: PathBuf,
    /// Further conditions, by name (the WebHook's spool).
    checks: Vec<(&'static str, Check)>,
    /// Numbers the probe files, so concurrent probes never collide.
    probes: AtomicU64,
}

impl Readiness {
    /// Not ready until [`Readiness::set_listening`]; `checks` are asked on
    /// every request.
    pub fn new(data_dir: PathBuf, checks: Vec<(&'static str, Check)>) -> Readiness {
        Readiness {
            listening: AtomicBool::new(false),
            data_dir,
            checks,
            probes: AtomicU64::new(0),
        }
    }

    /// Every MQTT listener is bound.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    /// Why the broker is not ready, one reason per entry; empty when it is.
    pub async fn problems(self: &Arc<Self>) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.listening.load(Ordering::Acquire) {
            problems.push("MQTT listeners are not bound yet".to_owned());
        }
        let this = self.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let n = this.probes.fetch_add(1, Ordering::Relaxed);
            probe_dir(&this.data_dir, n)
        });
        match tokio::time::timeout(PROBE_DEADLINE, probe).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(why))) => problems.push(why),
            Ok(Err(_)) => problems.push("data directory check failed to run".to_owned()),
            Err(_) => problems.push(format!(
                "data directory {}: a test write took longer than {} s",
                self.data_dir.display(),
                PROBE_DEADLINE.as_secs()
            )),
        }
        for (name, check) in &self.checks {
            if let Err(why) = check() {
                problems.push(format!("{name}: {why}"));
            }
        }
        problems
    }
}

/// Writes and removes a small file in `dir`: what any state write needs.
fn probe_dir(dir: &Path, n: u64) -> Result<(), String> {
    use std::io::Write;
    let path = dir.join(format!(".ready-probe-{}-{n}", std::process::id()));
    let fail = |what: &str, err: std::io::Error| {
        format!(
            "data directory {} is not writable ({what}: {err})",
            dir.display()
        )
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| fail("cannot create a file", e))?;
    let written = file.write_all(b"ok").map_err(|e| fail("cannot write", e));
    drop(file);
    let removed = std::fs::remove_file(&path).map_err(|e| fail("cannot remove a file", e));
    written.and(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("herald-health-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        dir
    }

    #[tokio::test]
    async fn ready_only_when_listening_writable_and_checks_pass() {
        let dir = temp("ready");
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        let check: Check = Arc::new(move || {
            if flag.load(Ordering::Relaxed) {
                Err("writer stopped".to_owned())
            } else {
                Ok(())
            }
        });
        let readiness = Arc::new(Readiness::new(dir.clone(), vec![("webhook", check)]));
        assert_eq!(
            readiness.problems().await,
            vec!["MQTT listeners are not bound yet"]
        );
        readiness.set_listening();
        assert!(readiness.problems().await.is_empty());
        assert_eq!(
            std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(99),
            0,
            "the probe leaves no file behind"
        );
        failing.store(true, Ordering::Relaxed);
        assert_eq!(readiness.problems().await, vec!["webhook: writer stopped"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A data directory whose parent is a regular file cannot take a write,
    /// whoever runs the test (root included).
    #[tokio::test]
    async fn unwritable_data_dir_is_named() {
        let dir = temp("unwritable");
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        let readiness = Arc::new(Readiness::new(file.join("data"), Vec::new()));
        readiness.set_listening();
        let problems = readiness.problems().await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!(
                "data directory {} is not writable (cannot create a file: ",
                file.join("data").display()
            )),
            "{problems:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
