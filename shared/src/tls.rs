//! TLS for every client the functions build: rustls with ring.
//!
//! Three clients speak TLS: the AWS SDK's (SQS, Secrets Manager), reqwest's
//! (the OnlyFans API) and redis-rs's (`rediss://`, ElastiCache with transit
//! encryption). Their default features would each bring aws-lc-rs; the
//! workspace turns those off and this module supplies ring instead, so the
//! functions carry one crypto library.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Re-exported so the functions can name it without depending on aws-config.
pub use aws_config::SdkConfig;

/// Makes ring rustls's process-wide provider, which reqwest requires before a
/// client is built (`rustls-no-provider`). Idempotent; redis-rs would pick
/// ring by itself, as the only provider compiled in.
pub fn install() {
    // An Err means a provider is already installed: an earlier call's.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The AWS SDK's HTTPS client on rustls with ring (the SDK's own default,
/// `default-https-client`, is rustls with aws-lc). Without one, an SDK
/// client fails every request ("No HTTP client was available").
pub fn sdk_http_client() -> aws_sdk_sqs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// `aws_config::defaults` with [`sdk_http_client`]. Every SDK client is
/// built from this loader.
pub fn sdk_config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(sdk_http_client())
}

/// The shared SDK configuration, loaded once per cold start: every client
/// (SQS, Secrets Manager) is built from it, so a function resolves region
/// and credentials once and all its clients share one HTTP connection pool.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_loader().load().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn install_makes_ring_the_default_and_can_be_called_twice() {
        super::install();
        super::install();
        let provider = rustls::crypto::CryptoProvider::get_default();
        assert!(provider.is_some());
        // A client of reqwest's builds (it panics without a provider).
        assert!(reqwest::Client::builder().build().is_ok());
    }
}
