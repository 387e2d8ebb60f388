//! `portcullis-attach --help` and `-h` describe the attach tool (they used to
//! print the webhook's description); `--version` answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn attach(arg: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis-attach"))
        .arg(arg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{arg}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_describes_attaching_not_the_webhook() {
    for flag in ["-h", "--help"] {
        let help = attach(flag);
        let first = help.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("Attach a vulnerability report"),
            "{flag}: {first}"
        );
        assert!(!help.contains("admission webhook"), "{flag}: {help}");
        assert!(help.contains("Usage: portcullis-attach"), "{flag}: {help}");
    }
}

#[test]
fn version() {
    assert_eq!(
        attach("--version").trim(),
        format!("portcullis-attach {}", env!("CARGO_PKG_VERSION"))
    );
}
