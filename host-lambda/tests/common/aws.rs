//! The S3 + DynamoDB emulator (moto) that `scripts/test` starts.

/// Its endpoint: `IMGSVC_TEST_AWS_ENDPOINT`, or where `scripts/test` starts it.
pub fn aws_endpoint() -> String {
    std::env::var("IMGSVC_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".to_owned())
}

/// SDK settings for an emulator at `endpoint`: fixed region and dummy credentials.
pub async fn sdk_config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

/// SDK settings for the emulator.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    sdk_config_for(&aws_endpoint()).await
}
