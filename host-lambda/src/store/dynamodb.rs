//! `MetadataStore` on DynamoDB: the seeds' single-table design.
//!
//! Image items: `PK = IMAGE#{id}`, `SK = METADATA`; GSI1 (a user's images):
//! `GSI1PK = USER#{userId}`, `GSI1SK = UPLOADED#{uploadedAt}#{id}`; GSI2 (an album's images,
//! only when set): `GSI2PK = ALBUM#{albumId}`, same sort key. The id after the timestamp makes
//! the order total (two uploads in one millisecond) and keeps `begins_with(UPLOADED#…)`
//! working. Idempotency items: `PK = IDEMPOTENCY#{userId}#{key}`, `SK = IDEMPOTENCY`, with
//! `expiresAt` as the table's TTL attribute.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use super::{ListPosition, ListQuery, MetadataStore, Reservation, StoreError};
use crate::record::ImageRecord;

type Item = HashMap<String, AttributeValue>;

pub struct DynamoMetadataStore {
    client: Client,
    table: String,
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn image_pk(id: &str) -> String {
    format!("IMAGE#{id}")
}

fn sort_key(uploaded_at: &str, id: &str) -> String {
    format!("UPLOADED#{uploaded_at}#{id}")
}

fn idempotency_pk(user_id: &str, key: &str) -> String {
    format!("IDEMPOTENCY#{user_id}#{key}")
}

impl DynamoMetadataStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoMetadataStore {
        DynamoMetadataStore {
            client,
            table: table.into(),
        }
    }

    /// Create the table with both GSIs (on-demand) and TTL on `expiresAt`. For tests and
    /// local emulators; in AWS the infrastructure template owns the table.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(unavailable)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(unavailable)
        };
        let index = |name: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(unavailable)
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("PK")?)
            .attribute_definitions(attribute("SK")?)
            .attribute_definitions(attribute("GSI1PK")?)
            .attribute_definitions(attribute("GSI1SK")?)
            .attribute_definitions(attribute("GSI2PK")?)
            .attribute_definitions(attribute("GSI2SK")?)
            .key_schema(key("PK", KeyType::Hash)?)
            .key_schema(key("SK", KeyType::Range)?)
            .global_secondary_indexes(index("GSI1", "GSI1PK", "GSI1SK")?)
            .global_secondary_indexes(index("GSI2", "GSI2PK", "GSI2SK")?)
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        // Idempotency items expire (DynamoDB deletes them within days of `expiresAt`; reads
        // already ignore expired ones), as the deployment template's table does.
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expiresAt")
                    .build()
                    .map_err(unavailable)?,
            )
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(())
    }

    /// The stored item for a record: its attributes plus the keys of the table and indexes.
    fn item(record: &ImageRecord) -> Result<Item, StoreError> {
        let mut item: Item = serde_dynamo::to_item(record).map_err(unavailable)?;
        item.insert("PK".into(), s(image_pk(&record.id)));
        item.insert("SK".into(), s("METADATA"));
        item.insert("GSI1PK".into(), s(format!("USER#{}", record.user_id)));
        item.insert(
            "GSI1SK".into(),
            s(sort_key(&record.uploaded_at, &record.id)),
        );
        if let Some(album_id) = &record.album_id {
            item.insert("GSI2PK".into(), s(format!("ALBUM#{album_id}")));
            item.insert(
                "GSI2SK".into(),
                s(sort_key(&record.uploaded_at, &record.id)),
            );
        }
        Ok(item)
    }

    fn record(mut item: Item) -> Result<ImageRecord, StoreError> {
        for key in ["PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK"] {
            item.remove(key);
        }
        serde_dynamo::from_item(item)
            .map_err(|e| StoreError::Unavailable(format!("bad record: {e}")))
    }

    fn key(pk: String, sk: &str) -> Item {
        HashMap::from([("PK".to_owned(), s(pk)), ("SK".to_owned(), s(sk))])
    }

    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(output.item)
    }

    /// Put the record's item if `condition` holds: true when written, false when the
    /// condition failed. (`:v` in the condition is bound to `value`, when given.)
    async fn put_record_if(
        &self,
        record: &ImageRecord,
        condition: &str,
        value: Option<u64>,
    ) -> Result<bool, StoreError> {
        let value = value
            .map(|v| i64::try_from(v).map(n).map_err(unavailable))
            .transpose()?;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(record)?))
            .condition_expression(condition);
        if let Some(value) = value {
            request = request.expression_attribute_values(":v", value);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error) => {
                let error = error.into_service_error();
                if error.is_conditional_check_failed_exception() {
                    Ok(false)
                } else {
                    Err(unavailable(error))
                }
            }
        }
    }
}

#[async_trait]
impl MetadataStore for DynamoMetadataStore {
    async fn create(&self, record: &ImageRecord) -> Result<(), StoreError> {
        if self
            .put_record_if(record, "attribute_not_exists(PK)", None)
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn get(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        self.get_item(Self::key(image_pk(id), "METADATA"))
            .await?
            .map(Self::record)
            .transpose()
    }

    async fn update(&self, record: &ImageRecord, expected_version: u64) -> Result<(), StoreError> {
        // The whole item is replaced so the index attributes follow the record (album moves).
        let written = self
            .put_record_if(
                record,
                "attribute_exists(PK) AND version = :v",
                Some(expected_version),
            )
            .await?;
        if written {
            return Ok(());
        }
        match self.get(&record.id).await? {
            Some(current) => Err(StoreError::VersionConflict {
                current: current.version,
            }),
            None => Err(StoreError::NotFound),
        }
    }

    async fn scan(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ImageRecord>, Option<String>), StoreError> {
        let start_key = start.map(|id| Self::key(image_pk(&id), "METADATA"));
        let output = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("SK = :sk")
            .expression_attribute_values(":sk", s("METADATA"))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        let records = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(Self::record)
            .collect::<Result<Vec<_>, _>>()?;
        // The next page starts after the last item *evaluated* (it may have been filtered).
        let next = output
            .last_evaluated_key
            .and_then(|key| match key.get("PK") {
                Some(AttributeValue::S(pk)) => pk.strip_prefix("IMAGE#").map(str::to_owned),
                _ => None,
            });
        Ok((records, next))
    }

    async fn put_if_newer(&self, record: &ImageRecord) -> Result<bool, StoreError> {
        self.put_record_if(
            record,
            "attribute_not_exists(PK) OR version < :v",
            Some(record.version),
        )
        .await
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(image_pk(id), "METADATA")))
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(())
    }

    async fn list(&self, query: ListQuery<'_>) -> Result<Vec<ImageRecord>, StoreError> {
        let (index, pk_name, sk_name, pk) = match query.album_id {
            Some(album) => ("GSI2", "GSI2PK", "GSI2SK", format!("ALBUM#{album}")),
            None => (
                "GSI1",
                "GSI1PK",
                "GSI1SK",
                format!("USER#{}", query.user_id),
            ),
        };
        // Resume strictly after the cursor's item: the index key plus the table key.
        let mut start: Option<Item> =
            query
                .after
                .as_ref()
                .map(|ListPosition { uploaded_at, id }| {
                    HashMap::from([
                        (pk_name.to_owned(), s(pk.clone())),
                        (sk_name.to_owned(), s(sort_key(uploaded_at, id))),
                        ("PK".to_owned(), s(image_pk(id))),
                        ("SK".to_owned(), s("METADATA")),
                    ])
                });
        let mut records = Vec::new();
        // Album ids come from the client, so an album query also filters on the owner; a
        // filter applies after `Limit`, hence the loop until the page is full.
        loop {
            let remaining = query.limit.saturating_sub(records.len());
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", pk_name)
                .expression_attribute_values(":pk", s(pk.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(remaining.max(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if query.album_id.is_some() {
                request = request
                    .filter_expression("userId = :user")
                    .expression_attribute_values(":user", s(query.user_id));
            }
            let output = request
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            for item in output.items.unwrap_or_default() {
                records.push(Self::record(item)?);
            }
            match output.last_evaluated_key {
                Some(key) if records.len() < query.limit => start = Some(key),
                _ => break,
            }
        }
        records.truncate(query.limit);
        Ok(records)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(())
    }

    async fn reserve_idempotency(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Reservation, StoreError> {
        let mut item = Self::key(idempotency_pk(user_id, key), "IDEMPOTENCY");
        item.insert("fingerprint".into(), s(fingerprint));
        item.insert("expiresAt".into(), n(expires_at));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR expiresAt <= :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Reservation::Reserved),
            Err(error) => {
                let error = error.into_service_error();
                if !error.is_conditional_check_failed_exception() {
                    return Err(unavailable(error));
                }
                self.find_idempotency(user_id, key, now)
                    .await?
                    .ok_or_else(|| StoreError::Unavailable("idempotency entry vanished".into()))
            }
        }
    }

    async fn find_idempotency(
        &self,
        user_id: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<Reservation>, StoreError> {
        let Some(item) = self
            .get_item(Self::key(idempotency_pk(user_id, key), "IDEMPOTENCY"))
            .await?
        else {
            return Ok(None);
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.clone()),
            _ => None,
        };
        let expires_at = match item.get("expiresAt") {
            Some(AttributeValue::N(value)) => value.parse::<i64>().unwrap_or(0),
            _ => 0,
        };
        if expires_at <= now {
            return Ok(None);
        }
        Ok(Some(Reservation::existing(
            text("fingerprint").unwrap_or_default(),
            text("response"),
        )))
    }

    async fn complete_idempotency(
        &self,
        user_id: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(idempotency_pk(user_id, key), "IDEMPOTENCY")))
            .update_expression("SET #response = :response")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":response", s(response))
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(())
    }

    async fn release_idempotency(&self, user_id: &str, key: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(idempotency_pk(user_id, key), "IDEMPOTENCY")))
            .condition_expression("attribute_not_exists(#response)")
            .expression_attribute_names("#response", "response")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Completed meanwhile: keep it, that result must replay.
            Err(error) => {
                let error = error.into_service_error();
                if error.is_conditional_check_failed_exception() {
                    Ok(())
                } else {
                    Err(unavailable(error))
                }
            }
        }
    }
}
