//! The clients' TLS: rustls with ring, as in the functions (`shared::tls`;
//! the poller does not depend on the product's library). The workspace turns
//! off the SDK's and reqwest's aws-lc-rs defaults.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Makes ring rustls's process-wide provider, which reqwest requires before a
/// client is built. Idempotent.
pub fn install() {
    // An Err means a provider is already installed: an earlier call's.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `aws_config::defaults` with an HTTPS client on rustls with ring.
pub fn sdk_config_loader() -> aws_config::ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http)
}
