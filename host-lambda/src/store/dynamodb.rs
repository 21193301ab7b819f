//! `MetadataStore` on DynamoDB: the seeds' single-table design.
//!
//! Image items: `PK = IMAGE#{id}`, `SK = METADATA`; GSI1 (a user's images):
//! `GSI1PK = USER#{userId}`, `GSI1SK = UPLOADED#{uploadedAt}#{id}`; GSI2 (an album's images,
//! only when set): `GSI2PK = ALBUM#{albumId}`, same sort key. The id after the timestamp makes
//! the order total (two uploads in one millisecond) and keeps `begins_with(UPLOADED#…)`
//! working. A deleted record's item becomes its tombstone (same key, `isTombstone = true`,
//! `id`, `version` = the deleting version, `deletedAt`; no index keys, so never listed), which
//! the version conditions of every later write see. Idempotency items: `PK = IDEMPOTENCY#{userId}#{key}`, `SK = IDEMPOTENCY`, with
//! `expiresAt` as the table's TTL attribute.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use super::{ListPosition, ListQuery, MetadataStore, Reservation, StoreError, Tombstone};
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

/// The attribute that marks an image item as a tombstone.
const TOMBSTONE: &str = "isTombstone";

/// A scan's `LastEvaluatedKey` as the opaque start of the next page: the whole key (PK and
/// SK), whatever item it names — a page may end on an item the filter dropped, such as an
/// idempotency entry.
fn encode_start(key: &Item) -> Option<String> {
    let mut parts = std::collections::BTreeMap::new();
    for (name, value) in key {
        match value {
            AttributeValue::S(text) => parts.insert(name.clone(), text.clone()),
            _ => return None,
        };
    }
    serde_json::to_string(&parts).ok()
}

/// The key `encode_start` wrote; `None` for anything else (a start from another store).
fn decode_start(start: &str) -> Option<Item> {
    let parts: std::collections::BTreeMap<String, String> = serde_json::from_str(start).ok()?;
    if parts.len() != 2 || !parts.contains_key("PK") || !parts.contains_key("SK") {
        return None;
    }
    Some(parts.into_iter().map(|(k, v)| (k, s(v))).collect())
}

fn is_tombstone(item: &Item) -> bool {
    matches!(item.get(TOMBSTONE), Some(AttributeValue::Bool(true)))
}

fn number(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

fn text(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    }
}

fn tombstone_of(item: &Item) -> Option<Tombstone> {
    Some(Tombstone {
        id: text(item, "id")?,
        version: number(item, "version")?,
        deleted_at: text(item, "deletedAt").unwrap_or_default(),
    })
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
            .map_err(|e| unavailable(super::describe(&e)))?;
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
            .map_err(|e| unavailable(super::describe(&e)))?;
        Ok(())
    }

    /// Create the table (as `create_table`) with TTL on `expiresAt` (idempotency items
    /// expire), unless it exists. True when created. For `imgsvc aws init`.
    pub async fn ensure_table(&self) -> Result<bool, StoreError> {
        let exists = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map(|_| true)
            .or_else(|e| {
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                {
                    Ok(false)
                } else {
                    Err(unavailable(super::describe(&e)))
                }
            })?;
        if exists {
            return Ok(false);
        }
        self.create_table().await?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                    .attribute_name("expiresAt")
                    .enabled(true)
                    .build()
                    .map_err(unavailable)?,
            )
            .send()
            .await
            .map_err(|e| unavailable(super::describe(&e)))?;
        Ok(true)
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

    fn tombstone_item(tombstone: &Tombstone) -> Result<Item, StoreError> {
        let mut item = Self::key(image_pk(&tombstone.id), "METADATA");
        item.insert(TOMBSTONE.into(), AttributeValue::Bool(true));
        item.insert("id".into(), s(&tombstone.id));
        item.insert(
            "version".into(),
            n(i64::try_from(tombstone.version).map_err(unavailable)?),
        );
        item.insert("deletedAt".into(), s(&tombstone.deleted_at));
        Ok(item)
    }

    /// Put `item` if `condition` holds (`:v` bound to `value`, when given): true when
    /// written, false when the condition failed.
    async fn put_item_if(
        &self,
        item: Item,
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
            .set_item(Some(item))
            .condition_expression(condition);
        if let Some(value) = value {
            request = request.expression_attribute_values(":v", value);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error) => {
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    Ok(false)
                } else {
                    Err(unavailable(super::describe(&error)))
                }
            }
        }
    }

    /// One page of image items (records or tombstones, as `tombstones` says).
    async fn scan_images(
        &self,
        start: Option<String>,
        limit: usize,
        tombstones: bool,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let start_key = match start {
            None => None,
            Some(start) => Some(
                decode_start(&start)
                    .ok_or_else(|| StoreError::Unavailable(format!("bad scan start {start:?}")))?,
            ),
        };
        let filter = if tombstones {
            "SK = :sk AND attribute_exists(isTombstone)"
        } else {
            "SK = :sk AND attribute_not_exists(isTombstone)"
        };
        let output = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(filter)
            .expression_attribute_values(":sk", s("METADATA"))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| unavailable(super::describe(&e)))?;
        // The next page starts after the last item *evaluated* (it may have been filtered).
        let next = output.last_evaluated_key.as_ref().and_then(encode_start);
        Ok((output.items.unwrap_or_default(), next))
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
            .map_err(|e| unavailable(super::describe(&e)))?;
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
        self.put_item_if(Self::item(record)?, condition, value)
            .await
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
            .filter(|item| !is_tombstone(item))
            .map(Self::record)
            .transpose()
    }

    async fn update(&self, record: &ImageRecord, expected_version: u64) -> Result<(), StoreError> {
        // The whole item is replaced so the index attributes follow the record (album moves).
        let written = self
            .put_record_if(
                record,
                "attribute_exists(PK) AND attribute_not_exists(isTombstone) AND version = :v",
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
        let (items, next) = self.scan_images(start, limit, false).await?;
        let records = items
            .into_iter()
            .map(Self::record)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, next))
    }

    async fn scan_tombstones(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Tombstone>, Option<String>), StoreError> {
        let (items, next) = self.scan_images(start, limit, true).await?;
        Ok((items.iter().filter_map(tombstone_of).collect(), next))
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
        // Replace the record with its tombstone, on the condition that the record is still
        // the version read (a concurrent edit makes this read again).
        for _ in 0..8 {
            let Some(item) = self.get_item(Self::key(image_pk(id), "METADATA")).await? else {
                return Ok(());
            };
            if is_tombstone(&item) {
                return Ok(());
            }
            let version = number(&item, "version").unwrap_or(0);
            let tombstone = Tombstone {
                id: id.to_owned(),
                version: version.saturating_add(1),
                deleted_at: crate::record::now(),
            };
            if self
                .put_item_if(
                    Self::tombstone_item(&tombstone)?,
                    "attribute_not_exists(isTombstone) AND version = :v",
                    Some(version),
                )
                .await?
            {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "{id} kept changing while it was being deleted"
        )))
    }

    async fn put_tombstone_if_newer(&self, tombstone: &Tombstone) -> Result<bool, StoreError> {
        self.put_item_if(
            Self::tombstone_item(tombstone)?,
            "attribute_not_exists(PK) OR version < :v",
            Some(tombstone.version),
        )
        .await
    }

    async fn tombstone(&self, id: &str) -> Result<Option<Tombstone>, StoreError> {
        Ok(self
            .get_item(Self::key(image_pk(id), "METADATA"))
            .await?
            .filter(is_tombstone)
            .as_ref()
            .and_then(tombstone_of))
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
                .map_err(|e| unavailable(super::describe(&e)))?;
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
            .map_err(|e| unavailable(super::describe(&e)))?;
        Ok(())
    }

    async fn reserve_idempotency(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        now: i64,
        expires_at: i64,
        lease_until: i64,
    ) -> Result<Reservation, StoreError> {
        let mut item = Self::key(idempotency_pk(user_id, key), "IDEMPOTENCY");
        item.insert("fingerprint".into(), s(fingerprint));
        item.insert("expiresAt".into(), n(expires_at));
        item.insert("leaseUntil".into(), n(lease_until));
        // New, expired, or abandoned (in progress past its lease; items from before leases
        // have none, and count as abandoned).
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(PK) OR expiresAt <= :now OR \
                 (attribute_not_exists(#response) AND \
                  (attribute_not_exists(leaseUntil) OR leaseUntil <= :now))",
            )
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Reservation::Reserved),
            Err(error) => {
                if !error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    return Err(unavailable(super::describe(&error)));
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
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(value)) => value.parse::<i64>().unwrap_or(0),
            _ => 0,
        };
        let abandoned = text("response").is_none() && number("leaseUntil") <= now;
        if number("expiresAt") <= now || abandoned {
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
            .map_err(|e| unavailable(super::describe(&e)))?;
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
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    Ok(())
                } else {
                    Err(unavailable(super::describe(&error)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_resumes_from_any_evaluated_key_even_an_idempotency_entry() {
        for key in [
            DynamoMetadataStore::key(image_pk("01J0"), "METADATA"),
            DynamoMetadataStore::key(idempotency_pk("alice", "k#1"), "IDEMPOTENCY"),
        ] {
            let start = encode_start(&key).unwrap();
            assert_eq!(decode_start(&start), Some(key));
        }
        assert_eq!(decode_start("01J0"), None);
        assert_eq!(decode_start(r#"{"PK":"IMAGE#a"}"#), None);
    }
}
