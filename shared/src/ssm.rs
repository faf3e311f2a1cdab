//! Where the two secrets come from, and SSM Parameter Store reads.
//!
//! The template's `production` profile keeps the OnlyFans API token and the
//! Redis AUTH token in Secrets Manager (`*_SECRET_ARN`, [`crate::secrets`]);
//! its `small` profile keeps them in SSM Parameter Store `SecureString`
//! parameters (`ONLYFANS_API_TOKEN_PARAMETER`, `REDIS_AUTH_PARAMETER`), which
//! cost nothing at standard throughput where a secret costs $0.40 a month
//! (docs/cost.md). Both are read once at cold start; the consumer re-reads the
//! token after a 401. [`SecretSource`] is the one choice between them, made
//! from [`Config`]: a Secrets Manager ARN wins over a parameter, a parameter
//! over the plain local value.
//!
//! The parameters are encrypted with the AWS managed key `aws/ssm`, whose key
//! policy lets every principal of the account decrypt through SSM, so the
//! functions need only `ssm:GetParameter` on the two names.

use crate::config::{Config, Secret, TokenSource};
use crate::secrets::{SecretError, SecretReader, redis_url_with_password};
use aws_config::SdkConfig;

/// A failed read of a secret, wherever it is kept.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    SecretsManager(#[from] SecretError),
    #[error("could not read parameter {name}: {message}")]
    Parameter { name: String, message: String },
    #[error("{0}")]
    RedisUrl(String),
}

/// Reads one `SecureString` (or `String`) parameter, decrypted; holds its own client.
#[derive(Clone, Debug)]
pub struct ParameterReader {
    client: aws_sdk_ssm::Client,
    name: String,
}

impl ParameterReader {
    /// With a client built from the SDK configuration loaded once at cold
    /// start (`AWS_ENDPOINT_URL_SSM` points it at the local server).
    pub fn from_conf(config: &aws_config::SdkConfig, name: impl Into<String>) -> Self {
        Self::with_client(aws_sdk_ssm::Client::new(config), name)
    }

    pub fn with_client(client: aws_sdk_ssm::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    pub async fn read(&self) -> Result<Secret, SourceError> {
        let failed = |message: String| SourceError::Parameter {
            name: self.name.clone(),
            message,
        };
        let out = self
            .client
            .get_parameter()
            .name(&self.name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| failed(aws_sdk_ssm::error::DisplayErrorContext(e).to_string()))?;
        out.parameter
            .and_then(|p| p.value)
            .map(Secret::new)
            .ok_or_else(|| failed("the parameter has no value".into()))
    }
}

/// Where one secret is read from in AWS.
#[derive(Clone, Debug)]
pub enum SecretSource {
    SecretsManager(SecretReader),
    Parameter(ParameterReader),
}

impl SecretSource {
    pub async fn read(&self) -> Result<Secret, SourceError> {
        match self {
            Self::SecretsManager(r) => Ok(r.read().await?),
            Self::Parameter(r) => r.read().await,
        }
    }

    /// The Redis AUTH token's source: `REDIS_AUTH_SECRET_ARN`, else
    /// `REDIS_AUTH_PARAMETER`, else none (the password, if any, is in `REDIS_URL`).
    pub fn redis_auth(config: &Config, aws: &SdkConfig) -> Option<Self> {
        if let Some(arn) = &config.redis_auth_secret_arn {
            return Some(Self::SecretsManager(SecretReader::new(aws, arn.as_str())));
        }
        config
            .redis_auth_parameter
            .as_ref()
            .map(|name| Self::Parameter(ParameterReader::from_conf(aws, name.as_str())))
    }
}

/// `REDIS_URL` with the AUTH token from wherever the configuration keeps it.
/// Both functions build their Redis URL here, once at cold start.
pub async fn redis_url(config: &Config, aws: &SdkConfig) -> Result<Secret, SourceError> {
    let url = config.redis_url.expose();
    match SecretSource::redis_auth(config, aws) {
        None => Ok(config.redis_url.clone()),
        Some(source) => {
            let password = source.read().await?;
            redis_url_with_password(url, password.expose())
                .map(Secret::new)
                .map_err(SourceError::RedisUrl)
        }
    }
}

/// The OnlyFans API token, and where to read it again after a 401 (none for
/// the plain local token).
pub async fn onlyfans_token(
    config: &Config,
    aws: &SdkConfig,
) -> Result<(Secret, Option<SecretSource>), SourceError> {
    let source = match &config.onlyfans_token {
        TokenSource::Plain(token) => return Ok((token.clone(), None)),
        TokenSource::SecretsManager(arn) => {
            SecretSource::SecretsManager(SecretReader::new(aws, arn.as_str()))
        }
        TokenSource::SsmParameter(name) => {
            SecretSource::Parameter(ParameterReader::from_conf(aws, name.as_str()))
        }
    };
    Ok((source.read().await?, Some(source)))
}
