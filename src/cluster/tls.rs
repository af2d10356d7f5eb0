//! The process-wide rustls crypto provider.
//!
//! reqwest (Prometheus, alerts) and kube both use rustls. When two providers
//! are compiled in (kube's default `ring` next to reqwest's `aws-lc-rs`),
//! rustls cannot pick one and panics at the first TLS client. canaryd builds
//! kube with `aws-lc-rs` only and installs that provider before anything else.

/// Installs aws-lc-rs as the process's rustls provider. Idempotent: a second
/// call (tests, or a provider already installed by a library) is a no-op.
pub fn install_crypto_provider() {
    // `install_default` fails only when a provider is already installed,
    // which is what we want either way.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
