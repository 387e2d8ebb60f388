//! Warm-path benchmark: admissions per second of the real webhook binary
//! with every image's findings cached, next to the transport floor measured
//! in the same run with the same request body (see `bench_common::start_floor`:
//! a bare rustls + hyper HTTP/1.1 server, same certificate, that reads the
//! whole body, finds the review's uid and answers a fixed allow echoing it).
//!
//! Knobs (each a comma-separated list; every combination is run):
//!   --containers 1,3,10        pod width (3 and more: one init container)
//!   --rules 5,50,500           rules in force
//!   --violations none,few,all  none; three Audit rules violated; every rule violated (Audit)
//!   --scope all|other          all rules apply (Namespace '*'), or all but 5
//!                              are scoped to other namespaces
//!   --findings 200             findings per image (generated Grype reports)
//!   --seconds 10 --connections 32
//!   --profile DIR              perf record (cpu-clock, dwarf) the floor and the webhook during each run
//!   --log warn                 the webhook's --log (info writes one line per audited image)
//!   --pin                      wrk on CPU 0, the server measured (floor, then webhook)
//!                              on CPU 1; without it every process shares both cores
//! Without knobs it runs the matrix (see `default_cases`).
//!
//!     cargo build --release -p portcullis-webhook --bins --examples
//!     target/release/examples/bench_warm
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "../tests/support/mod.rs"]
mod support;

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "bench_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{Placement, Rng, Seeder, grype_report, pod_review, realistic_pod, wrk_placed};
use serde_json::Value;
use support::{Registry, Webhook};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Violations {
    None,
    Few,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    All,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Case {
    containers: usize,
    rules: usize,
    violations: Violations,
    scope: Scope,
}

/// Rules that apply whatever the scope setting (`--scope other`).
const IN_SCOPE: usize = 5;
/// Rules violated with `--violations few`.
const FEW: usize = 3;

fn policies(case: Case) -> String {
    let mut out = String::new();
    for i in 0..case.rules {
        let violated = match case.violations {
            Violations::None => false,
            Violations::Few => i < FEW,
            Violations::All => true,
        };
        let action = if violated || i % 2 == 1 {
            "Audit"
        } else {
            "Deny"
        };
        let scope = if case.scope == Scope::Other && i >= IN_SCOPE {
            format!("team-{i:03}")
        } else {
            "'*'".to_owned()
        };
        let limits = if violated {
            // Every generated report has Medium findings.
            ["{medium: 0}", "{high: 0}", "{critical: 0, medium: 1}"][i % 3]
        } else {
            [
                "{critical: 1000}",
                "{high: 5000}",
                "{critical: 1000, medium: 90000}",
            ][i % 3]
        };
        // Rules ignore CVEs (one absent; every fifth also one present) and
        // forbid absent ones, as real rule sets do.
        let mut ignored = format!("{{id: CVE-2000-{i:04}}}");
        if i % 5 == 0 {
            ignored.push_str(&format!(", {{id: {}}}", common::vulnerability_id(i * 7)));
        }
        let forbidden = if i % 2 == 1 {
            format!(", forbiddenCves: [CVE-1999-{i:04}]")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicy\nmetadata: {{name: rule-{i:03}}}\nspec:\n  action: {action}\n  priority: {i}\n  scope: [{{matcherType: Namespace, values: [{scope}]}}]\n  ignoredCves: [{ignored}]\n  conditions: {{maxAllowedSeverities: {limits}{forbidden}}}\n"
        ));
    }
    out
}

fn list<T: std::str::FromStr>(args: &BTreeMap<String, String>, key: &str) -> Option<Vec<T>> {
    args.get(key).map(|v| {
        v.split(',')
            .map(|x| x.trim().parse().unwrap_or_else(|_| panic!("--{key} {x}?")))
            .collect()
    })
}

/// The matrix: widths × violations at 50 rules; 5 and 500 rules at
/// width 3; and the same rule counts with all but five rules out of scope.
fn default_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for containers in [1, 3, 10] {
        for violations in [Violations::None, Violations::Few, Violations::All] {
            cases.push(Case {
                containers,
                rules: 50,
                violations,
                scope: Scope::All,
            });
        }
    }
    for rules in [5, 500] {
        cases.push(Case {
            containers: 3,
            rules,
            violations: Violations::None,
            scope: Scope::All,
        });
    }
    for rules in [5, 50, 500] {
        cases.push(Case {
            containers: 3,
            rules,
            violations: Violations::None,
            scope: Scope::Other,
        });
    }
    cases
}

#[tokio::main]
async fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = BTreeMap::new();
    let mut i = 0;
    while i < raw.len() {
        let key = raw[i].trim_start_matches("--").to_owned();
        // A flag (`--pin`) has no value.
        let value = raw.get(i + 1).filter(|v| !v.starts_with("--")).cloned();
        i += if value.is_some() { 2 } else { 1 };
        args.insert(key, value.unwrap_or_default());
    }
    let seconds: u64 = args.get("seconds").map_or(10, |s| s.parse().unwrap());
    let connections: usize = args.get("connections").map_or(32, |s| s.parse().unwrap());
    let findings: usize = args.get("findings").map_or(200, |s| s.parse().unwrap());
    let log = args.get("log").cloned().unwrap_or_else(|| "warn".into());
    let profile: Option<PathBuf> = args.get("profile").map(PathBuf::from);
    let placement = if args.contains_key("pin") {
        Placement::Pinned
    } else {
        Placement::Shared
    };
    let cases: Vec<Case> = if ["containers", "rules", "violations", "scope"]
        .iter()
        .any(|k| args.contains_key(*k))
    {
        let mut cases = Vec::new();
        for containers in list(&args, "containers").unwrap_or(vec![3]) {
            for rules in list(&args, "rules").unwrap_or(vec![50]) {
                for v in list::<String>(&args, "violations").unwrap_or(vec!["none".into()]) {
                    for s in list::<String>(&args, "scope").unwrap_or(vec!["all".into()]) {
                        cases.push(Case {
                            containers,
                            rules,
                            violations: match v.as_str() {
                                "none" => Violations::None,
                                "few" => Violations::Few,
                                "all" => Violations::All,
                                other => panic!("--violations {other}?"),
                            },
                            scope: match s.as_str() {
                                "all" => Scope::All,
                                "other" => Scope::Other,
                                other => panic!("--scope {other}?"),
                            },
                        });
                    }
                }
            }
        }
        cases
    } else {
        default_cases()
    };

    // Ten images, each with its own generated Grype report, in a real registry.
    let registry = Registry::distribution(None);
    let r = registry.addr.clone();
    let seeder = Seeder::new(&r, true);
    let mut rng = Rng(0x5EED_0000_0000_0001);
    let mut images = Vec::new();
    for i in 0..10 {
        let repo = format!("bench/app{i}");
        let pushed = seeder.image(&repo, "1.0", &format!("warm-{i}")).await;
        let report = grype_report(&mut rng, findings, 60_000, 5_000);
        seeder
            .attach(
                &repo,
                &pushed,
                &report,
                common::FINDINGS_TYPE,
                "application/json",
                "2026-11-20T10:00:00Z",
            )
            .await;
        images.push(format!("{r}/{repo}:1.0"));
    }

    println!(
        "warm path: {findings} findings per image, wrk -t2 -c{connections} -d{seconds}s, webhook --log={log}, {}",
        match placement {
            Placement::Shared => "wrk and server share both cores",
            Placement::Pinned => "wrk on CPU 0, server on CPU 1",
        }
    );
    println!(
        "{:>5} {:>5} {:>5} {:>6} {:>6} | {:>9} {:>8} {:>8} {:>7} | {:>9} {:>8} {:>8} {:>7} | {:>5}",
        "width",
        "rules",
        "viol",
        "scope",
        "bytes",
        "floor/s",
        "p50",
        "p99",
        "cpu/req",
        "webhook/s",
        "p50",
        "p99",
        "cpu/req",
        "ratio"
    );
    for case in cases {
        let webhook = Webhook::start(
            &policies(case),
            None,
            &[
                "--allow-destination=127.0.0.1/32",
                &format!("--insecure-registry={r}"),
                &format!("--log={log}"),
            ],
        );
        let floor_port = common::start_floor(
            &webhook.dir.path().join("tls.crt"),
            &webhook.dir.path().join("tls.key"),
        )
        .await;
        let pod = realistic_pod("shop", &images[..case.containers]);
        let body = pod_review(&pod, "705ab4f5-6393-11e8-b7cc-42010a800002");
        // Warm-up: fills the caches; checks the answer is what the case means.
        let (status, answer) = webhook.post(body.clone().into_bytes()).await;
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let response = &answer["response"];
        let warnings = response["warnings"].as_array().map_or(0, Vec::len);
        let expected = match case.violations {
            Violations::None => 0,
            Violations::Few => (FEW * case.containers).min(10),
            Violations::All => 10,
        };
        assert_eq!(response["allowed"], true, "{case:?}: {response}");
        assert_eq!(warnings, expected, "{case:?}: {response}");
        let (status, _) = webhook.post(body.clone().into_bytes()).await;
        assert_eq!(status, 200);

        // CPU per request: the floor runs in this process (idle otherwise
        // while wrk runs), the webhook in its own.
        let own = std::process::id();
        let before = common::cpu_seconds(own);
        let floor_perf = profile.as_ref().map(|dir| {
            std::fs::create_dir_all(dir).unwrap();
            common::perf_record(
                own,
                seconds.saturating_sub(2).max(1),
                &dir.join(format!("floor-{}.perf.data", case.containers)),
            )
        });
        placement.place_server(own);
        let floor = tokio::task::spawn_blocking({
            let body = body.clone();
            move || {
                wrk_placed(
                    &format!("https://localhost:{floor_port}/validate"),
                    &body,
                    connections,
                    seconds,
                    placement,
                )
            }
        })
        .await
        .unwrap();
        Placement::Shared.place_server(own);
        let floor_cpu = (common::cpu_seconds(own) - before) / floor.requests.max(1) as f64;
        if let Some(mut p) = floor_perf {
            let _ = p.wait();
        }
        let perf = profile.as_ref().map(|dir| {
            std::fs::create_dir_all(dir).unwrap();
            let name = format!(
                "warm-c{}-r{}-{:?}-{:?}.perf.data",
                case.containers, case.rules, case.violations, case.scope
            )
            .to_lowercase();
            common::perf_record(
                webhook.pid(),
                seconds.saturating_sub(2).max(1),
                &dir.join(name),
            )
        });
        let port = webhook.port;
        let before = common::cpu_seconds(webhook.pid());
        placement.place_server(webhook.pid());
        let measured = tokio::task::spawn_blocking({
            let body = body.clone();
            move || {
                wrk_placed(
                    &format!("https://localhost:{port}/validate"),
                    &body,
                    connections,
                    seconds,
                    placement,
                )
            }
        })
        .await
        .unwrap();
        let webhook_cpu =
            (common::cpu_seconds(webhook.pid()) - before) / measured.requests.max(1) as f64;
        if let Some(mut p) = perf {
            let _ = p.wait();
        }
        for l in [&floor, &measured] {
            assert!(l.errors.is_none(), "{case:?}: {:?}", l.errors);
        }
        println!(
            "{:>5} {:>5} {:>5} {:>6} {:>6} | {:>9.0} {:>8} {:>8} {:>5.1}us | {:>9.0} {:>8} {:>8} {:>5.1}us | {:>5.2}",
            case.containers,
            case.rules,
            format!("{:?}", case.violations).to_lowercase(),
            format!("{:?}", case.scope).to_lowercase(),
            body.len(),
            floor.rps,
            floor.p50,
            floor.p99,
            floor_cpu * 1e6,
            measured.rps,
            measured.p50,
            measured.p99,
            webhook_cpu * 1e6,
            measured.rps / floor.rps
        );
    }
}
