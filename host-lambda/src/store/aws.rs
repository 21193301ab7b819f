//! The AWS SDK's settings every S3 and DynamoDB client is built from: region, credentials
//! and endpoint from the usual `AWS_*` settings, and the deadlines of every call.

use std::time::Duration;

/// Deadlines of every S3 and DynamoDB call, so a hung store fails requests instead of
/// holding them forever.
#[derive(Debug, Clone, Copy)]
pub struct AwsTimeouts {
    /// To open a connection.
    pub connect: Duration,
    /// One attempt (a retry starts a new one).
    pub attempt: Duration,
    /// The whole call, retries included.
    pub operation: Duration,
}

impl Default for AwsTimeouts {
    /// The `serve` defaults (docs/configuration.md, "Limits and timeouts").
    fn default() -> AwsTimeouts {
        AwsTimeouts {
            connect: Duration::from_secs(3),
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(30),
        }
    }
}

/// The AWS SDK settings from the environment (region, credentials, endpoint), with
/// `timeouts` on every call of every client built from them.
pub async fn aws_sdk_config(timeouts: &AwsTimeouts) -> aws_config::SdkConfig {
    let timeout_config = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .operation_attempt_timeout(timeouts.attempt)
        .operation_timeout(timeouts.operation)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeout_config)
        .load()
        .await
}
