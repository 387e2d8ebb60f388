//! What Portcullis's two binaries share, in the spirit of linkerd's kubert
//! runtime (which pins an older kube, so it does not fit here): logging
//! set-up, the process's start and stop, the bounded HTTP server and the
//! admin endpoints (`/healthz`, `/readyz`, `/metrics`), metrics rendering,
//! signal handling, and the duration and size syntax of every flag.

pub mod admin;
pub mod flags;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod signals;
