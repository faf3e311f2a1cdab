//! The template's `small` profile, its code paths run locally: the functions
//! read the Redis password and the OnlyFans token from SSM `SecureString`
//! parameters (moto serves SSM), reach Redis over TLS with AUTH (a TLS-only
//! `redis-server` with a CA made for the test, as in redis_tls.rs), and the
//! limiter runs on the client's clock (`LIMITER_CLOCK=client`).
//!
//! One test in its own binary: it sets `SSL_CERT_FILE` and the SDK's endpoint
//! and credential variables for the process. Needs `redis-server`, `openssl`
//! and `moto_server` (the project's .venv, or `MOTO_SERVER`).

use shared::config::{Config, LimiterClock, TokenSource};
use shared::limiter::RedisLimiter;
use shared::message::AccountId;
use shared::ssm::{ParameterReader, SecretSource};
use shared::store::StoreHealth;
use std::collections::HashMap;
use std::time::Duration;
use support::{certificates, free_port, moto_server, scratch_dir, tls_server};

mod support;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const REDIS_PASSWORD: &str = "small-profile p@ss/word";
const TOKEN: &str = "of-token-from-ssm";
const REDIS_PARAMETER: &str = "/outbound-messages/test/redis-password";
const TOKEN_PARAMETER: &str = "/outbound-messages/test/onlyfans-api-token";

fn ssm_client(endpoint: &str) -> aws_sdk_ssm::Client {
    use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(shared::tls::sdk_http_client())
        .build();
    aws_sdk_ssm::Client::from_conf(conf)
}

async fn put_secure_string(
    client: &aws_sdk_ssm::Client,
    name: &str,
    value: &str,
) -> Result<(), aws_sdk_ssm::Error> {
    client
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await?;
    Ok(())
}

#[tokio::test]
async fn small_profile_reads_ssm_reaches_tls_redis_with_auth_on_the_client_clock() -> TestResult {
    let dir = scratch_dir()?;
    certificates(&dir)?;
    let redis_port = free_port()?;
    let _redis = tls_server(&dir, redis_port, REDIS_PASSWORD)?;
    let moto_port = free_port()?;
    let _moto = moto_server(moto_port)?;
    let endpoint = format!("http://127.0.0.1:{moto_port}");

    // The parameters as an operator creates them before the first deploy.
    let admin = ssm_client(&endpoint);
    put_secure_string(&admin, REDIS_PARAMETER, REDIS_PASSWORD).await?;
    put_secure_string(&admin, TOKEN_PARAMETER, TOKEN).await?;
    // Stored encrypted: without decryption the value is not the plain text.
    let raw = admin
        .get_parameter()
        .name(TOKEN_PARAMETER)
        .send()
        .await?
        .parameter
        .and_then(|p| p.value);
    assert_ne!(
        raw.as_deref(),
        Some(TOKEN),
        "a SecureString read without decryption"
    );

    // SAFETY: the only test of this binary; the runtime is current-thread and
    // nothing has read these variables yet.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", dir.join("ca.crt"));
        std::env::set_var("AWS_ENDPOINT_URL_SSM", &endpoint);
        std::env::set_var("AWS_ENDPOINT_URL_SECRETS_MANAGER", &endpoint);
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }

    // The environment the template's small profile gives both functions.
    let env: HashMap<&str, String> = HashMap::from([
        ("REDIS_URL", format!("rediss://127.0.0.1:{redis_port}")),
        ("REDIS_AUTH_PARAMETER", REDIS_PARAMETER.to_owned()),
        ("ONLYFANS_API_TOKEN_PARAMETER", TOKEN_PARAMETER.to_owned()),
        ("LIMITER_CLOCK", "client".to_owned()),
        ("RATE_LIMIT_PER_MINUTE", "60".to_owned()),
        // Two medium sends at once: a burst of 3, one token kept back.
        ("RATE_LIMIT_BURST", "3".to_owned()),
        ("RATE_LIMIT_RESERVE_MEDIUM_PERCENT", "50".to_owned()),
        ("RATE_LIMIT_RESERVE_LOW_PERCENT", "0".to_owned()),
    ]);
    let config = Config::from_lookup(|k| env.get(k).cloned())?;
    // Loaded once, as each function's wiring does.
    let aws = shared::tls::sdk_config().await;
    assert_eq!(
        config.onlyfans_token,
        TokenSource::SsmParameter(TOKEN_PARAMETER.into())
    );
    assert_eq!(config.limiter.clock, LimiterClock::Client);

    // The token, and the source the consumer re-reads it from after a 401.
    let (token, source) = shared::ssm::onlyfans_token(&config, &aws).await?;
    assert_eq!(token.expose(), TOKEN);
    assert!(matches!(source, Some(SecretSource::Parameter(_))));
    put_secure_string(&admin, TOKEN_PARAMETER, "rotated").await?;
    let reread = source.ok_or("no source")?.read().await?;
    assert_eq!(reread.expose(), "rotated", "a rotated token is picked up");

    // REDIS_URL with the password from SSM, over TLS, then the limiter.
    let url = shared::ssm::redis_url(&config, &aws).await?;
    let conn = shared::store::connect(url.expose()).await?;
    shared::store::RedisStore::new(conn.clone(), Duration::from_secs(60))
        .ping()
        .await?;
    let limiter = RedisLimiter::new(conn, config.limiter);
    let account =
        AccountId::parse(&format!("small_{}", uuid::Uuid::new_v4().simple())).map_err(|e| e.0)?;
    support::two_medium_sends_then_a_wait(&limiter, &account).await?;

    // A parameter that does not exist is an error naming it, not a panic.
    let missing = ParameterReader::from_conf(&aws, "/outbound-messages/test/absent")
        .read()
        .await
        .err()
        .ok_or("a missing parameter was read")?;
    assert!(
        missing
            .to_string()
            .contains("/outbound-messages/test/absent"),
        "{missing}"
    );

    // The production profile's Secrets Manager secret, through the same
    // configuration (its endpoint from AWS_ENDPOINT_URL_SECRETS_MANAGER).
    let admin = secrets_client(&endpoint);
    let arn = admin
        .create_secret()
        .name(format!("of-token-{}", uuid::Uuid::new_v4().simple()))
        .secret_string("of-token-from-secrets-manager")
        .send()
        .await?
        .arn
        .ok_or("no ARN")?;
    let secret = shared::secrets::SecretReader::new(&aws, arn).read().await?;
    assert_eq!(secret.expose(), "of-token-from-secrets-manager");

    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(shared::tls::sdk_http_client())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(conf)
}
