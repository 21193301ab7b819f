//! `imgsvc aws init`: the DynamoDB table and the S3 bucket, for a local emulator or a fresh
//! account (in AWS proper the SAM template in `deploy/` owns both).

use clap::{Args, Subcommand};

use crate::store::dynamodb::DynamoMetadataStore;
use crate::store::s3::S3BlobStore;

#[derive(Debug, Args)]
pub struct AwsArgs {
    #[command(subcommand)]
    pub command: AwsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create the table (PK/SK, GSI1 and GSI2 as the template has them, TTL on
    /// `expiresAt`) and the bucket, unless they exist. Endpoint, region and credentials
    /// come from the usual AWS_* settings.
    Init {
        #[arg(long, env = "IMGSVC_DYNAMODB_TABLE")]
        table: String,
        #[arg(long, env = "IMGSVC_S3_BUCKET")]
        bucket: String,
        /// Path-style S3 addressing (local emulators need it).
        #[arg(long, env = "IMGSVC_S3_FORCE_PATH_STYLE", default_value_t = false)]
        s3_force_path_style: bool,
    },
}

pub fn run(args: AwsArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match args.command {
            AwsCommand::Init {
                table,
                bucket,
                s3_force_path_style,
            } => {
                // The same deadlines as every other store call (a hung endpoint fails it).
                let aws = crate::local::aws_sdk_config(&crate::local::AwsTimeouts::default()).await;
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
