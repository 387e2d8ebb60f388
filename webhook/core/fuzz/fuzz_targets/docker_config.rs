//! `kubernetes.io/dockerconfigjson` payloads. Looking up credentials never
//! panics; a registry's case and its default port do not change the answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::auth::docker_config_credentials;
use portcullis_core::reference::RegistryHost;

const REGISTRIES: &[&str] = &[
    "docker.io",
    "registry.example.com:5000",
    "localhost:5000",
    "[::1]:5000",
];

fuzz_target!(|data: &[u8]| {
    // (registry, repository) pairs: fixed ones, and the host and path of
    // every key the payload names (the path as a repository, below it, and
    // beside it).
    let mut lookups: Vec<(String, String)> = REGISTRIES
        .iter()
        .map(|r| ((*r).to_owned(), "library/nginx".to_owned()))
        .collect();
    if let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(data)
        && let Some(serde_json::Value::Object(auths)) = top.get("auths")
    {
        for key in auths.keys().take(4) {
            let rest = key
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            for repository in [path.to_owned(), format!("{path}/app"), "other".to_owned()] {
                lookups.push((host.to_owned(), repository));
            }
        }
    }
    for (registry, repository) in &lookups {
        let found = docker_config_credentials(data, registry, repository);
        let Ok(host) = RegistryHost::parse(registry) else {
            assert_eq!(
                found, None,
                "credentials for an invalid registry {registry:?}"
            );
            continue;
        };
        let upper = docker_config_credentials(data, &registry.to_ascii_uppercase(), repository);
        assert_eq!(
            upper, found,
            "case changed the credentials for {registry:?}"
        );
        if host.port().is_none() {
            let with_port = format!("{}:443", host.host());
            let explicit = docker_config_credentials(data, &with_port, repository);
            assert_eq!(
                explicit, found,
                "port 443 changed the credentials for {registry:?}"
            );
        }
        if let Some(c) = found {
            let _ = (c.fingerprint(), c.basic_header(), format!("{c:?}"));
        }
    }
});
