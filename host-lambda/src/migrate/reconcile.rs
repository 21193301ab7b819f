//! `reconcile`: make PostgreSQL and the Image Service agree, image by image, without ever
//! losing the newer write. Each side holds a row/record, a tombstone (deleted, with the
//! version that deleted it) or nothing. The newest version wins, in either direction (a
//! tombstone too, over an older row); a side that holds nothing never deleted anything, so
//! it gets the other side's row. Only the same version with different content — two
//! edits, or an edit and a delete — has no winner: a conflict, which refuses the run unless
//! the operator names the side that wins (`--from`), which then also wins where it is older. A write
//! that makes an older side win goes out at a version above both, on both sides, so no
//! version (nor ETag) ever goes backwards.
//!
//! `plan` is pure; `apply` writes with the stores' version conditions, so a live write that
//! lands meanwhile is never overwritten (it is counted as changed meanwhile).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::legacy::{LegacyRow, LegacyStore};
use super::mapping::{FieldMismatch, compare, record_of, row_of};
use crate::record::ImageRecord;
use crate::store::{MetadataStore, StoreError, Tombstone};

/// What one side holds for an image.
#[derive(Debug, Clone, PartialEq)]
pub enum Held<T> {
    Nothing,
    Present(T),
    Deleted(Tombstone),
}

/// The side that wins every difference, when the operator says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Postgres,
    ImageService,
}

/// What a change writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Row(Box<LegacyRow>),
    Record(Box<ImageRecord>),
    Deleted,
}

/// One planned write.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: String,
    pub from: Direction,
    pub content: Content,
    /// The version written: the winner's own, or one above both sides when an older side
    /// wins by `--from` (then both sides are written).
    pub version: u64,
    pub postgres: Option<u64>,
    pub image_service: Option<u64>,
    /// The Image Service's record, whose fields PostgreSQL doesn't hold (ThumbHash,
    /// thumbnail size, ETags) are kept when a row is copied over it.
    pub existing_record: Option<ImageRecord>,
}

impl Change {
    /// Written on both sides (an older side won by `--from`).
    pub fn forced(&self) -> bool {
        match &self.content {
            Content::Row(row) => u64::try_from(row.version).unwrap_or(0) != self.version,
            Content::Record(record) => record.version != self.version,
            Content::Deleted => {
                self.version
                    > self
                        .postgres
                        .unwrap_or(0)
                        .max(self.image_service.unwrap_or(0))
            }
        }
    }

    /// `copy_to_image_service`, `copy_to_postgres`, `delete_in_image_service`, …
    pub fn action(&self) -> &'static str {
        match (&self.content, self.from, self.forced()) {
            (Content::Deleted, _, true) => "delete_on_both_sides",
            (_, _, true) => "copy_to_both_sides",
            (Content::Deleted, Direction::Postgres, false) => "delete_in_image_service",
            (Content::Deleted, Direction::ImageService, false) => "delete_in_postgres",
            (_, Direction::Postgres, false) => "copy_to_image_service",
            (_, Direction::ImageService, false) => "copy_to_postgres",
        }
    }

    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "action": self.action(),
            "from": self.from,
            "postgresVersion": self.postgres,
            "imageServiceVersion": self.image_service,
            "writtenVersion": self.version,
        })
    }
}

/// The same version, different content: no version says which side is right.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub id: String,
    pub version: u64,
    pub fields: Vec<FieldMismatch>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    InSync,
    Change(Box<Change>),
    Conflict(Conflict),
}

fn version<T>(held: &Held<T>, of: impl Fn(&T) -> u64) -> Option<u64> {
    match held {
        Held::Nothing => None,
        Held::Present(value) => Some(of(value)),
        Held::Deleted(tombstone) => Some(tombstone.version),
    }
}

fn row_version(row: &LegacyRow) -> u64 {
    u64::try_from(row.version).unwrap_or(0)
}

/// What to do about one image.
pub fn decide(
    id: &str,
    legacy: &Held<LegacyRow>,
    image: &Held<ImageRecord>,
    from: Option<Direction>,
) -> Decision {
    let postgres = version(legacy, row_version);
    let image_service = version(image, |r| r.version);
    let existing_record = match image {
        Held::Present(record) => Some(record.clone()),
        _ => None,
    };
    let change = |winner: Direction, forced: bool| {
        let content = match winner {
            Direction::Postgres => match legacy {
                Held::Present(row) => Content::Row(Box::new(row.clone())),
                _ => Content::Deleted,
            },
            Direction::ImageService => match image {
                Held::Present(record) => Content::Record(Box::new(record.clone())),
                _ => Content::Deleted,
            },
        };
        let own = match winner {
            Direction::Postgres => postgres,
            Direction::ImageService => image_service,
        }
        .unwrap_or(0);
        let version = if forced {
            postgres.unwrap_or(0).max(image_service.unwrap_or(0)) + 1
        } else {
            own
        };
        Decision::Change(Box::new(Change {
            id: id.to_owned(),
            from: winner,
            content,
            version,
            postgres,
            image_service,
            existing_record: existing_record.clone(),
        }))
    };
    // `--from` wins against a newer side too, but a side holding nothing deleted nothing.
    let forced_by = |natural: Direction| match from {
        Some(side) if side != natural => Some(side),
        _ => None,
    };
    match (legacy, image) {
        (Held::Nothing | Held::Deleted(_), Held::Nothing | Held::Deleted(_)) => Decision::InSync,
        (Held::Present(_), Held::Nothing) => change(Direction::Postgres, false),
        (Held::Nothing, Held::Present(_)) => change(Direction::ImageService, false),
        (Held::Present(row), Held::Present(record)) => {
            let (p, i) = (row_version(row), record.version);
            if p == i {
                let fields = compare(row, record);
                if fields.is_empty() {
                    Decision::InSync
                } else if let Some(side) = from {
                    change(side, true)
                } else {
                    Decision::Conflict(Conflict {
                        id: id.to_owned(),
                        version: p,
                        fields,
                    })
                }
            } else {
                let natural = if p > i {
                    Direction::Postgres
                } else {
                    Direction::ImageService
                };
                match forced_by(natural) {
                    Some(side) => change(side, true),
                    None => change(natural, false),
                }
            }
        }
        // A delete wins over an older row and loses to a newer one; at the same version
        // (an edit and a delete that each took the next version) neither store's condition
        // lets one overwrite the other, and neither is newer: a conflict.
        (Held::Present(row), Held::Deleted(tombstone)) => {
            let (p, i) = (row_version(row), tombstone.version);
            if p == i {
                return match from {
                    Some(side) => change(side, true),
                    None => Decision::Conflict(deleted_on_one_side(id, p, "row", "deleted")),
                };
            }
            let natural = if p < i {
                Direction::ImageService
            } else {
                Direction::Postgres
            };
            match forced_by(natural) {
                Some(side) => change(side, true),
                None => change(natural, false),
            }
        }
        (Held::Deleted(tombstone), Held::Present(record)) => {
            let (p, i) = (tombstone.version, record.version);
            if p == i {
                return match from {
                    Some(side) => change(side, true),
                    None => Decision::Conflict(deleted_on_one_side(id, p, "deleted", "record")),
                };
            }
            let natural = if p > i {
                Direction::Postgres
            } else {
                Direction::ImageService
            };
            match forced_by(natural) {
                Some(side) => change(side, true),
                None => change(natural, false),
            }
        }
    }
}

/// The conflict of a delete and an edit at the same version.
fn deleted_on_one_side(id: &str, version: u64, legacy: &str, image_service: &str) -> Conflict {
    Conflict {
        id: id.to_owned(),
        version,
        fields: vec![FieldMismatch {
            field: "deleted",
            legacy: legacy.to_owned(),
            image_service: image_service.to_owned(),
        }],
    }
}

/// Both sides of every image, read whole (ids in order).
pub async fn load(
    legacy: &Arc<dyn LegacyStore>,
    target: &Arc<dyn MetadataStore>,
    batch: usize,
) -> Result<BTreeMap<String, (Held<LegacyRow>, Held<ImageRecord>)>, StoreError> {
    let batch = batch.max(1);
    let mut sides: BTreeMap<String, (Held<LegacyRow>, Held<ImageRecord>)> = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let rows = legacy.scan(after.as_deref(), None, batch).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id.clone());
        for row in rows {
            let id = row.id.clone();
            sides.entry(id).or_insert((Held::Nothing, Held::Nothing)).0 = Held::Present(row);
        }
    }
    let mut after: Option<String> = None;
    loop {
        let tombstones = legacy.scan_tombstones(after.as_deref(), batch).await?;
        let Some(last) = tombstones.last() else { break };
        after = Some(last.id.clone());
        for tombstone in tombstones {
            let side = &mut sides
                .entry(tombstone.id.clone())
                .or_insert((Held::Nothing, Held::Nothing))
                .0;
            if matches!(side, Held::Nothing) {
                *side = Held::Deleted(tombstone);
            }
        }
    }
    let mut start = None;
    loop {
        let (records, next) = target.scan(start, batch).await?;
        for record in records {
            let id = record.id.clone();
            sides.entry(id).or_insert((Held::Nothing, Held::Nothing)).1 = Held::Present(record);
        }
        match next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    let mut start = None;
    loop {
        let (tombstones, next) = target.scan_tombstones(start, batch).await?;
        for tombstone in tombstones {
            let id = tombstone.id.clone();
            sides.entry(id).or_insert((Held::Nothing, Held::Nothing)).1 = Held::Deleted(tombstone);
        }
        match next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    Ok(sides)
}

/// Every image's decision, except those in sync.
pub fn plan(
    sides: &BTreeMap<String, (Held<LegacyRow>, Held<ImageRecord>)>,
    from: Option<Direction>,
) -> (Vec<Change>, Vec<Conflict>) {
    let (mut changes, mut conflicts) = (Vec::new(), Vec::new());
    for (id, (legacy, image)) in sides {
        match decide(id, legacy, image, from) {
            Decision::InSync => {}
            Decision::Change(change) => changes.push(*change),
            Decision::Conflict(conflict) => conflicts.push(conflict),
        }
    }
    (changes, conflicts)
}

/// Make one change. True when every write landed; false when a side changed meanwhile
/// (its newer write is kept).
pub async fn apply(
    change: &Change,
    legacy: &Arc<dyn LegacyStore>,
    target: &Arc<dyn MetadataStore>,
    public_base_url: &str,
) -> Result<bool, StoreError> {
    let forced = change.forced();
    let to_postgres = forced || change.from == Direction::ImageService;
    let to_image_service = forced || change.from == Direction::Postgres;
    let mut landed = true;
    match &change.content {
        Content::Deleted => {
            let tombstone = Tombstone {
                id: change.id.clone(),
                version: change.version,
                deleted_at: crate::record::now(),
            };
            if to_image_service {
                landed &= target.put_tombstone_if_newer(&tombstone).await?;
            }
            if to_postgres {
                landed &= legacy.put_tombstone_if_newer(&tombstone).await?;
            }
        }
        Content::Row(row) => {
            let mut row = (**row).clone();
            row.version = i64::try_from(change.version)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let record = keep_extras(record_of(&row, public_base_url), &change.existing_record);
            if to_image_service {
                landed &= target.put_if_newer(&record).await?;
            }
            if to_postgres {
                landed &= legacy.put_if_newer(&row).await?;
            }
        }
        Content::Record(record) => {
            let mut record = (**record).clone();
            record.version = change.version;
            if to_postgres {
                landed &= legacy.put_if_newer(&row_of(&record)?).await?;
            }
            if to_image_service {
                landed &= target.put_if_newer(&record).await?;
            }
        }
    }
    Ok(landed)
}

/// A record copied from a row keeps what only the Image Service holds.
fn keep_extras(mut record: ImageRecord, existing: &Option<ImageRecord>) -> ImageRecord {
    if let Some(old) = existing {
        record.thumbnail_width = old.thumbnail_width;
        record.thumbnail_height = old.thumbnail_height;
        record.image_etag.clone_from(&old.image_etag);
        record.thumbnail_etag.clone_from(&old.thumbnail_etag);
        record.thumbhash.clone_from(&old.thumbhash);
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: i64, title: &str) -> LegacyRow {
        let record = ImageRecord {
            version: u64::try_from(version).unwrap(),
            title: Some(title.to_owned()),
            ..record_fixture()
        };
        row_of(&record).unwrap()
    }

    fn record_fixture() -> ImageRecord {
        serde_json::from_value(serde_json::json!({
            "id": "A", "userId": "u", "tags": [], "mimeType": "image/jpeg", "sizeBytes": 1,
            "width": 1, "height": 1, "s3Bucket": "b", "imageUrl": "/k", "thumbnailUrl": "/t",
            "s3Key": "k", "thumbnailKey": "t", "processingStatus": "completed",
            "format": "webp", "quality": 85, "uploadedAt": "2026-01-01T00:00:00.000Z",
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
            "version": 1
        }))
        .unwrap()
    }

    fn record(version: i64, title: &str) -> ImageRecord {
        record_of(&row(version, title), "")
    }

    fn deleted(version: u64) -> Tombstone {
        Tombstone {
            id: "A".into(),
            version,
            deleted_at: "2026-01-02T00:00:00.000Z".into(),
        }
    }

    fn change(decision: Decision) -> (Direction, &'static str, u64) {
        match decision {
            Decision::Change(c) => (c.from, c.action(), c.version),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_newest_version_wins_in_either_direction() {
        let d = decide(
            "A",
            &Held::Present(row(3, "x")),
            &Held::Present(record(2, "y")),
            None,
        );
        assert_eq!(change(d), (Direction::Postgres, "copy_to_image_service", 3));
        let d = decide(
            "A",
            &Held::Present(row(2, "x")),
            &Held::Present(record(3, "y")),
            None,
        );
        assert_eq!(change(d), (Direction::ImageService, "copy_to_postgres", 3));
        let same = decide(
            "A",
            &Held::Present(row(2, "x")),
            &Held::Present(record(2, "x")),
            None,
        );
        assert_eq!(same, Decision::InSync);
    }

    #[test]
    fn a_delete_wins_over_older_rows_loses_to_newer_ones_and_ties_conflict() {
        let d = decide(
            "A",
            &Held::Present(row(1, "x")),
            &Held::Deleted(deleted(2)),
            None,
        );
        assert_eq!(
            change(d),
            (Direction::ImageService, "delete_in_postgres", 2)
        );
        let d = decide(
            "A",
            &Held::Deleted(deleted(2)),
            &Held::Present(record(1, "x")),
            None,
        );
        assert_eq!(
            change(d),
            (Direction::Postgres, "delete_in_image_service", 2)
        );
        let d = decide(
            "A",
            &Held::Deleted(deleted(2)),
            &Held::Present(record(3, "x")),
            None,
        );
        assert_eq!(change(d), (Direction::ImageService, "copy_to_postgres", 3));
        let gone = decide("A", &Held::Deleted(deleted(2)), &Held::Nothing, None);
        assert_eq!(gone, Decision::InSync);
        // An edit and a delete that both took version 2: no winner unless named.
        let (deleted2, edited2) = (Held::Deleted(deleted(2)), Held::Present(record(2, "x")));
        let tie = decide("A", &deleted2, &edited2, None);
        assert!(matches!(tie, Decision::Conflict(c) if c.fields[0].field == "deleted"));
        let d = decide("A", &deleted2, &edited2, Some(Direction::ImageService));
        assert_eq!(
            change(d),
            (Direction::ImageService, "copy_to_both_sides", 3)
        );
    }

    #[test]
    fn a_missing_side_never_deleted_anything() {
        for from in [
            None,
            Some(Direction::Postgres),
            Some(Direction::ImageService),
        ] {
            let d = decide("A", &Held::Nothing, &Held::Present(record(4, "x")), from);
            assert_eq!(change(d), (Direction::ImageService, "copy_to_postgres", 4));
            let d = decide("A", &Held::Present(row(4, "x")), &Held::Nothing, from);
            assert_eq!(change(d), (Direction::Postgres, "copy_to_image_service", 4));
        }
    }

    #[test]
    fn the_same_version_with_different_content_needs_a_direction() {
        let (p, i) = (Held::Present(row(2, "x")), Held::Present(record(2, "y")));
        assert!(matches!(decide("A", &p, &i, None), Decision::Conflict(c) if c.version == 2));
        // The named side wins, written above both versions on both sides.
        let d = decide("A", &p, &i, Some(Direction::Postgres));
        assert_eq!(change(d), (Direction::Postgres, "copy_to_both_sides", 3));
    }

    #[test]
    fn a_named_side_wins_where_it_is_older_and_versions_still_only_grow() {
        let d = decide(
            "A",
            &Held::Present(row(2, "x")),
            &Held::Present(record(5, "y")),
            Some(Direction::Postgres),
        );
        assert_eq!(change(d), (Direction::Postgres, "copy_to_both_sides", 6));
        let d = decide(
            "A",
            &Held::Present(row(7, "x")),
            &Held::Deleted(deleted(3)),
            Some(Direction::ImageService),
        );
        assert_eq!(
            change(d),
            (Direction::ImageService, "delete_on_both_sides", 8)
        );
    }
}
