//! Writes the Portcullis CRDs to a directory (default `config/crd`), or checks
//! that the committed files are current (`--check`, used by CI).
//!
//! Arguments are handled strictly: an unknown flag or a second directory is
//! an error (exit 2) and writes nothing, so that `crdgen --verison` does not
//! create a directory named `--verison`.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: crdgen [--check] [DIR]

Writes the Portcullis CRDs as YAML into DIR (default config/crd).

options:
  --check        write nothing; fail when a file in DIR differs from the Rust types
  -h, --help     print this help
  -V, --version  print the version";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Version,
    Generate { check: bool, dir: PathBuf },
}

/// Parses the arguments (without the program name). `--` ends the options,
/// so a directory whose name starts with `-` can still be given.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut check = false;
    let mut dir: Option<PathBuf> = None;
    let mut options_done = false;
    for arg in args {
        if !options_done && arg.starts_with('-') {
            match arg.as_str() {
                "--check" => check = true,
                "-h" | "--help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                "--" => options_done = true,
                other => return Err(format!("unknown option {other:?}")),
            }
            continue;
        }
        if arg.is_empty() {
            return Err("the directory must not be empty".into());
        }
        if let Some(first) = &dir {
            return Err(format!(
                "one directory only (got {} and {arg:?})",
                first.display()
            ));
        }
        dir = Some(PathBuf::from(arg));
    }
    Ok(Command::Generate {
        check,
        dir: dir.unwrap_or_else(|| PathBuf::from("config/crd")),
    })
}

fn main() -> ExitCode {
    let (check, dir) = match parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("crdgen {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Generate { check, dir }) => (check, dir),
        Err(e) => {
            eprintln!("crdgen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut stale = Vec::new();
    for (file, crd) in portcullis_crds::all_crds() {
        let yaml = match portcullis_crds::crd_yaml(&crd) {
            Ok(yaml) => yaml,
            Err(err) => {
                eprintln!("crdgen: cannot render {file}: {err}");
                return ExitCode::FAILURE;
            }
        };
        let path = dir.join(file);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
        } else if let Err(err) =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, yaml))
        {
            eprintln!("crdgen: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "crdgen: these CRDs differ from the Rust types: {}\nrun `cargo run -p portcullis-crds --bin crdgen` and commit the result",
            stale.join(", ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Command, String> {
        parse(a.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn flags_and_directory() {
        assert_eq!(
            args(&[]),
            Ok(Command::Generate {
                check: false,
                dir: "config/crd".into()
            })
        );
        assert_eq!(
            args(&["--check", "out"]),
            Ok(Command::Generate {
                check: true,
                dir: "out".into()
            })
        );
        assert_eq!(
            args(&["--", "-odd"]),
            Ok(Command::Generate {
                check: false,
                dir: "-odd".into()
            })
        );
        assert_eq!(args(&["--version"]), Ok(Command::Version));
        assert_eq!(args(&["-V"]), Ok(Command::Version));
        assert_eq!(args(&["out", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn unknown_flags_and_extra_directories_are_errors() {
        assert!(args(&["--verison"]).is_err());
        assert!(args(&["-x"]).is_err());
        assert!(args(&["a", "b"]).is_err());
        assert!(args(&[""]).is_err());
    }
}
