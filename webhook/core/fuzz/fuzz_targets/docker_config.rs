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
    "127.0.0.1:5000",
    "[::1]:5000",
    "myacr.azurecr.io",
];

fuzz_target!(|data: &[u8]| {
    let mut registries: Vec<String> = REGISTRIES.iter().map(|s| (*s).to_owned()).collect();
    // Also every registry the payload names.
    if let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(data)
        && let Some(serde_json::Value::Object(auths)) = top.get("auths")
    {
        for key in auths.keys().take(8) {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default();
            registries.push(host.to_owned());
        }
    }
    for registry in &registries {
        let found = docker_config_credentials(data, registry);
        let Ok(host) = RegistryHost::parse(registry) else {
            assert_eq!(
                found, None,
                "credentials for an invalid registry {registry:?}"
            );
            continue;
        };
        let upper = docker_config_credentials(data, &registry.to_ascii_uppercase());
        assert_eq!(
            upper, found,
            "case changed the credentials for {registry:?}"
        );
        if host.port().is_none() {
            let with_port = format!("{}:443", host.host());
            let explicit = docker_config_credentials(data, &with_port);
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
