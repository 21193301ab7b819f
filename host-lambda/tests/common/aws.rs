//! The S3 + DynamoDB emulator (moto) that `scripts/test` starts, and the SDK clients every
//! AWS-backed test talks to it with.

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

/// An S3 client for `sdk`, path-style (the emulator needs it).
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// A DynamoDB client for `sdk`.
pub fn dynamodb_client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

/// A fresh bucket and table, both called `name`, on the emulator `sdk` reaches (a test of
/// its own each, so tests run in parallel); the S3 client to inspect the bucket with.
pub async fn fresh_bucket_and_table(sdk: &aws_config::SdkConfig, name: &str) -> aws_sdk_s3::Client {
    let s3 = s3_client(sdk);
    s3.create_bucket().bucket(name).send().await.expect(
        "S3 emulator not reachable: scripts/test starts it (or set IMGSVC_TEST_AWS_ENDPOINT)",
    );
    imgsvc_lambda::store::dynamodb::DynamoMetadataStore::new(dynamodb_client(sdk), name)
        .create_table()
        .await
        .unwrap();
    s3
}
