//! Runs the `herald` binary to check what users see for bad input: exit
//! status 2 and a message naming the flag, variable, file or key at fault.
//! Only failures are exercised here; a good configuration starts the broker.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use std::process::{Command, Output};

/// Runs `herald` with `args` and only the environment in `env`.
fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    // Metrics on a free port unless a test says otherwise.
    cmd.env_clear()
        .args(args)
        .env("HERALD_METRICS__BIND", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(output) => output,
        Err(err) => panic!("cannot run herald: {err}"),
    }
}

/// Asserts exit status 2 and that stderr contains every one of `needles`.
fn assert_usage_error(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
}

#[test]
fn help_and_version_succeed() {
    let help = herald(&["--help"], &[]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--config",
        "--listen",
        "--data-dir",
        "--webhook-conf",
        "HERALD_",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
    let version = herald(&["--version"], &[]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("herald "));
}

#[test]
fn bad_flag_exits_2() {
    let output = herald(&["--listen", "nowhere"], &[]);
    assert_usage_error(&output, &["--listen", "nowhere"]);
}

#[test]
fn bad_environment_exits_2() {
    let output = herald(&[], &[("HERALD_MQTT__MAX_INFLIGHT", "lots")]);
    assert_usage_error(&output, &["HERALD_MQTT__MAX_INFLIGHT", "lots"]);
}

#[test]
fn invalid_value_exits_2() {
    let output = herald(&[], &[("HERALD_MQTT__MAX_QOS", "3")]);
    assert_usage_error(&output, &["mqtt.max_qos = 3", "HERALD_MQTT__MAX_QOS"]);
}

#[test]
fn missing_config_file_exits_2() {
    let output = herald(&["--config", "/nonexistent/herald.toml"], &[]);
    assert_usage_error(&output, &["/nonexistent/herald.toml"]);
}

#[test]
fn bad_config_file_exits_2() {
    let path = std::env::temp_dir().join(format!("herald-cli-test-{}.toml", std::process::id()));
    if let Err(err) = std::fs::write(&path, "[mqtt]\nmax_qos = \"two\"\n") {
        panic!("cannot write {}: {err}", path.display());
    }
    let output = herald(&[], &[("HERALD_CONFIG", &path.to_string_lossy())]);
    let _ = std::fs::remove_file(&path);
    assert_usage_error(&output, &["key mqtt.max_qos", "line 2"]);
}
