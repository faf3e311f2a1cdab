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

/// The shared SDK configuration, built once per cold start: every client
/// (SQS, Secrets Manager, SSM) is built from it, so a function resolves
/// region and credentials once and all its clients share one HTTP
/// connection pool.
///
/// From the environment alone, which is all a Lambda function is given:
/// `AWS_REGION` (or `AWS_DEFAULT_REGION`), the execution role's
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, and
/// `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL` (the local servers).
/// `aws_config`'s default chain would also read profile files, instance
/// metadata, container and web-identity credentials (STS), none of which a
/// function uses; not calling it lets the linker drop that code from both
/// zips (docs/performance.md). Dev tools keep the full chain
/// ([`sdk_config_loader`]).
pub async fn sdk_config() -> SdkConfig {
    sdk_config_from(|name| std::env::var(name).ok())
}

/// [`sdk_config`] with the environment read through `var`.
pub fn sdk_config_from(var: impl Fn(&str) -> Option<String>) -> SdkConfig {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
    use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .filter(|r| !r.is_empty())
        .map(aws_config::Region::new);
    let endpoints = EnvEndpoints(
        ENDPOINT_VARS
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), var(name).filter(|v| !v.is_empty())?)))
            .collect(),
    );
    let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        // Lambda sets them once for the execution environment's lifetime.
        (Some(id), Some(secret)) => SharedCredentialsProvider::new(Credentials::new(
            id,
            secret,
            var("AWS_SESSION_TOKEN").filter(|t| !t.is_empty()),
            None,
            "environment",
        )),
        _ => SharedCredentialsProvider::new(NoCredentials),
    };
    let mut config = SdkConfig::builder();
    config.set_region(region);
    config
        .behavior_version(aws_config::BehaviorVersion::latest())
        .credentials_provider(credentials)
        .http_client(sdk_http_client())
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .time_source(SharedTimeSource::new(SystemTimeSource::new()))
        .retry_config(RetryConfig::standard())
        // aws_config's default connect timeout; SQS sets its own.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_millis(3100))
                .build(),
        )
        .service_config(endpoints)
        .build()
}

/// Without the execution role's keys in the environment every request fails
/// with this, as the SDK's own environment provider would.
#[derive(Debug)]
struct NoCredentials;

impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
            ),
        ))
    }
}

/// The endpoint overrides the functions' three clients read (the service
/// ids `SQS`, `SSM` and `Secrets Manager`, as the SDK spells them).
const ENDPOINT_VARS: [&str; 4] = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
];

/// `AWS_ENDPOINT_URL_<SERVICE_ID>`, then `AWS_ENDPOINT_URL`, as the SDK's own
/// environment lookup does (the service id upper-cased, spaces as `_`).
#[derive(Debug)]
struct EnvEndpoints(std::collections::HashMap<String, String>);

impl aws_types::service_config::LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_ascii_uppercase().replace(' ', "_");
        self.0
            .get(&format!("{}_{service}", key.env()))
            .or_else(|| self.0.get(key.env()))
            .cloned()
    }
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

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn region_and_endpoints_come_from_the_environment() {
        use aws_types::service_config::ServiceConfigKey;
        let key = |service| {
            ServiceConfigKey::builder()
                .service_id(service)
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .unwrap()
        };
        let c = super::sdk_config_from(env(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:4567"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9999"),
        ]));
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-1"));
        let endpoints = c.service_config().unwrap();
        assert_eq!(
            endpoints.load_config(key("SQS")).as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert_eq!(
            endpoints.load_config(key("Secrets Manager")).as_deref(),
            Some("http://127.0.0.1:4567")
        );
        // no service-specific one: the global one
        assert_eq!(
            endpoints.load_config(key("SSM")).as_deref(),
            Some("http://127.0.0.1:9999")
        );
        // AWS_REGION wins; nothing set: no endpoint override at all
        let c = super::sdk_config_from(env(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "x"),
        ]));
        assert_eq!(c.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert_eq!(c.service_config().unwrap().load_config(key("SQS")), None);
    }

    #[tokio::test]
    async fn credentials_are_the_execution_roles_from_the_environment() {
        use aws_credential_types::provider::ProvideCredentials;
        let c = super::sdk_config_from(env(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ]));
        let creds = c
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(creds.session_token(), Some("token"));
        // none set: an error at the first request, not a panic at cold start
        let c = super::sdk_config_from(env(&[("AWS_REGION", "us-east-1")]));
        assert!(
            c.credentials_provider()
                .unwrap()
                .provide_credentials()
                .await
                .is_err()
        );
    }
}
