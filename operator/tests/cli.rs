//! The operator binary as a user starts it, without a cluster: it stops with a
//! clear error; `--log-format text` writes no colour codes into a pipe; the
//! portal timeout takes the webhook's duration syntax.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn operator(args: &[&str]) -> Output {
    let home = std::env::temp_dir().join(format!("portcullis-operator-cli-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    Command::new(env!("CARGO_BIN_EXE_portcullis-operator"))
        .args(args)
        // No kubeconfig and no in-cluster service: connecting fails at once.
        .env("KUBECONFIG", home.join("no-such-kubeconfig"))
        .env("HOME", &home)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("NO_COLOR")
        .env_remove("PORTCULLIS_FETCH_TIMEOUT")
        .output()
        .unwrap()
}

#[test]
fn text_logs_into_a_pipe_have_no_colour_codes() {
    let out = operator(&["--log-format=text", "--metrics-listen=127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to the Kubernetes API"), "{err}");
    assert!(err.contains("ERROR"), "the failure is logged: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes in a pipe: {err:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = operator(&["--metrics-listen=127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let logged: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        logged.iter().any(|v| v["level"] == "ERROR"),
        "no JSON error line in {err}"
    );
}

#[test]
fn fetch_timeout_takes_durations() {
    for ok in ["10s", "500ms", "1m"] {
        let out = operator(&[
            &format!("--fetch-timeout={ok}"),
            "--metrics-listen=127.0.0.1:0",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        // Parsed: the run goes on to connecting to the API.
        assert!(
            err.contains("connecting to the Kubernetes API"),
            "{ok}: {err}"
        );
    }
    let out = operator(&["--fetch-timeout=10"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a duration like 500ms, 3s or 10m"),
        "{err}"
    );
}

#[test]
fn version_names_the_release() {
    let out = operator(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("portcullis-operator {}", env!("CARGO_PKG_VERSION"))
    );
}
