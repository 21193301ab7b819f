//! `imgsvc aws init`: the DynamoDB table and the S3 bucket, for a local emulator or a fresh
//! account (in AWS proper the SAM template in `deploy/` owns both).

use crate::settings::{AwsCommand, AwsSettings};
use crate::store::dynamodb::DynamoMetadataStore;
use crate::store::s3::S3BlobStore;

pub fn run(args: AwsSettings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match args.command {
            AwsCommand::Init {
                table,
                bucket,
                s3_force_path_style,
            } => {
                // The same deadlines as every other store call (a hung endpoint fails it).
                let aws =
                    crate::store::aws::aws_sdk_config(&crate::store::aws::AwsTimeouts::default())
                        .await;
                let table_created =
                    DynamoMetadataStore::new(aws_sdk_dynamodb::Client::new(&aws), &table)
                        .ensure_table()
                        .await?;
                let s3 = aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&aws)
                        .force_path_style(s3_force_path_style)
                        .build(),
                );
                let bucket_created = S3BlobStore::new(s3, &bucket).ensure_bucket().await?;
                println!(
                    "{}",
                    serde_json::json!({
                        "table": {"name": table, "created": table_created},
                        "bucket": {"name": bucket, "created": bucket_created},
                    })
                );
                Ok(())
            }
        }
    })
}
