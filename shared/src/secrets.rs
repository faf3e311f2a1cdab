//! Secrets Manager reads: the OnlyFans API token and the Redis AUTH token.
//!
//! Read once at cold start and kept in memory; the consumer reads the API
//! token again only when the API answers 401 (the secret may have rotated).

use crate::config::Secret;

#[derive(Debug, thiserror::Error)]
#[error("could not read secret {arn}: {message}")]
pub struct SecretError {
    arn: String,
    message: String,
}

/// Reads one secret, through a client built at cold start from the function's
/// shared SDK configuration.
#[derive(Clone, Debug)]
pub struct SecretReader {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
}

impl SecretReader {
    pub fn new(config: &aws_config::SdkConfig, arn: impl Into<String>) -> Self {
        Self {
            client: aws_sdk_secretsmanager::Client::new(config),
            arn: arn.into(),
        }
    }

    pub async fn read(&self) -> Result<Secret, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await
            .map_err(|e| SecretError {
                arn: self.arn.clone(),
                message: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            })?;
        out.secret_string
            .map(Secret::new)
            .ok_or_else(|| SecretError {
                arn: self.arn.clone(),
                message: "the secret has no string value".into(),
            })
    }
}

/// Puts a password into a `redis://` or `rediss://` URL (ElastiCache AUTH).
pub fn redis_url_with_password(url: &str, password: &str) -> Result<String, String> {
    let mut u = url::Url::parse(url).map_err(|e| format!("REDIS_URL: {e}"))?;
    u.set_password(Some(password))
        .map_err(|_| "REDIS_URL cannot hold a password".to_owned())?;
    Ok(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_url_encoded_into_the_redis_url() {
        let u = redis_url_with_password("rediss://master.x.cache.amazonaws.com:6379", "p@ss/w:rd")
            .unwrap();
        assert!(
            u.starts_with("rediss://:p%40ss%2Fw%3Ard@master.x.cache.amazonaws.com:6379"),
            "{u}"
        );
    }
}
