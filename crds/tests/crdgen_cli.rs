//! `crdgen` as a user runs it: `--version` and `--help` answer and write
//! nothing; an unknown flag or a second directory fails with the usage and
//! creates nothing (it used to create a directory named after the flag).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh, empty working directory.
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crdgen-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn crdgen(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn version_and_help_write_nothing() {
    let dir = workdir("version");
    let out = crdgen(&dir, &["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("crdgen {}", env!("CARGO_PKG_VERSION"))
    );
    let out = crdgen(&dir, &["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("usage: crdgen"));
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_flags_and_extra_arguments_fail_without_writing() {
    let dir = workdir("unknown");
    for args in [
        &["--verison"][..],
        &["-v"],
        &["--check", "a", "b"],
        &["out", "--force"],
    ] {
        let out = crdgen(&dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage: crdgen"), "{args:?}: {err}");
        assert!(
            entries(&dir).is_empty(),
            "{args:?} created {:?}",
            entries(&dir)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writes_then_checks_a_directory() {
    let dir = workdir("write");
    let out = crdgen(&dir, &["crds"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected: Vec<String> = portcullis_crds::all_crds()
        .into_iter()
        .map(|(file, _)| file.to_string())
        .collect();
    expected.sort();
    assert!(expected.contains(&"rulesources.yaml".to_owned()));
    assert_eq!(entries(&dir.join("crds")), expected);
    assert!(crdgen(&dir, &["--check", "crds"]).status.success());
    std::fs::write(dir.join("crds/rulesources.yaml"), "edited").unwrap();
    let out = crdgen(&dir, &["--check", "crds"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rulesources.yaml"));
    std::fs::remove_dir_all(&dir).unwrap();
}
