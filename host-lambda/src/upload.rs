//! The upload use case: process with the core, store both objects, then the record — and
//! leave nothing behind when any step fails. Also what every upload path shares: the
//! idempotent create (`Idempotency-Key`), the two-step upload's staging rules, and the
//! sweeps of what interrupted uploads leave behind.

use base64::Engine;
use bytes::Bytes;
use imgsvc_core::{Processed, Stage};

use crate::app::App;
use crate::migrate::legacy::LegacyStore;
use crate::processor::ProcessFailure;
use crate::record::{self, DISPLAY_QUALITY, ImageRecord};
use crate::store::{BlobStore, MetadataStore, Reservation, StoreError, StoredObject};

/// Why an upload stored nothing. `api::error` gives each its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The core (or its sandbox) refused the bytes, or failed.
    #[error(transparent)]
    Process(#[from] ProcessFailure),
    /// A store failed (nothing the upload wrote is left behind).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every processing slot stayed busy for the queue timeout; a retry may succeed.
    #[error("every processing slot stayed busy; retry shortly")]
    Busy,
    /// The processing slots are closed: the server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The processing task died (a panic on the blocking pool).
    #[error("image processing failed")]
    TaskFailed,
    /// An upload under the same `Idempotency-Key` and user is still running.
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    IdempotencyInProgress,
    /// The `Idempotency-Key` was used for a different upload.
    #[error("this Idempotency-Key was used for a different upload")]
    IdempotencyKeyReused,
}

/// Objects are immutable (a new upload gets a new id), so caches may keep them for a year.
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
pub const OUTPUT_CONTENT_TYPE: &str = "image/webp";

/// The user-supplied fields of an upload, already validated.
#[derive(Debug, Default, Clone)]
pub struct UploadFields {
    pub album_id: Option<String>,
    pub title: Option<String>,
    pub tags: Vec<String>,
    pub original_filename: Option<String>,
}

/// Run the core off the async runtime, so a 10 MiB decode never stalls other requests, and
/// at most `processing` permits at once, so concurrent uploads can't add up to an OOM (each
/// may legitimately use up to the policy's allocation cap).
pub async fn process(app: &App, bytes: Bytes) -> Result<Processed, UploadError> {
    let policy = app.policy;
    // Bounded: an upload that can't get a slot in time is refused (and can be retried)
    // rather than outliving its idempotency lease.
    let permit = tokio::time::timeout(
        app.limits.processing_queue_timeout,
        app.processing.clone().acquire_owned(),
    )
    .await
    .map_err(|_| UploadError::Busy)?
    .map_err(|_| UploadError::ShuttingDown)?;
    let telemetry = app.telemetry.clone();
    let processor = app.processor.clone();
    telemetry.upload_bytes.inc_by(bytes.len() as u64);
    // The request's span (request id, user id) follows the work onto the blocking pool.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _span = span.enter();
        let started = std::time::Instant::now();
        let (result, stages) = processor.process(&bytes, &policy);
        let total = started.elapsed();
        telemetry.record_processing(total, &stages);
        let ms = |stage| stages.get(stage).as_secs_f64() * 1000.0;
        tracing::info!(
            outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok"),
            processor = processor.name(),
            total_ms = total.as_secs_f64() * 1000.0,
            decode_ms = ms(Stage::Decode),
            display_ms = ms(Stage::Display),
            thumbnail_ms = ms(Stage::Thumbnail),
            encode_display_ms = ms(Stage::EncodeDisplay),
            encode_thumbnail_ms = ms(Stage::EncodeThumbnail),
            "image processed"
        );
        result
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "image processing task failed");
        UploadError::TaskFailed
    })?
    .map_err(UploadError::from)
}

/// Process, store and record one upload for `user_id` (what `POST /images` does once the
/// form is read): a new id, the clock, then `process`, `new_record` and `store`.
pub async fn create(
    app: &App,
    user_id: &str,
    bytes: Bytes,
    fields: UploadFields,
) -> Result<ImageRecord, UploadError> {
    let (record, processed) = prepare(app, user_id, bytes, fields).await?;
    store(app, &record, processed).await?;
    tracing::info!(image_id = %record.id, user_id = %record.user_id, "Image uploaded successfully");
    Ok(record)
}

/// Process an upload and make its record (a new id, the clock): what every upload path
/// does before it stores anything (`create`, and `POST /gallery/images` into PostgreSQL).
pub async fn prepare(
    app: &App,
    user_id: &str,
    bytes: Bytes,
    fields: UploadFields,
) -> Result<(ImageRecord, Processed), UploadError> {
    let processed = process(app, bytes).await?;
    let record = new_record(
        app,
        &new_image_id(),
        user_id,
        fields,
        &processed,
        &record::now(),
    );
    Ok((record, processed))
}

/// A ULID that sorts after every id this process issued before, even within one
/// millisecond, so uploads list in exactly the order they were made.
fn new_image_id() -> String {
    static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let mut guard = GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    guard
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

/// The record for a processed upload. Pure: ids, clock and URLs come in as arguments.
pub fn new_record(
    app: &App,
    image_id: &str,
    user_id: &str,
    fields: UploadFields,
    processed: &Processed,
    now: &str,
) -> ImageRecord {
    let s3_key = record::display_key(user_id, image_id);
    let thumbnail_key = record::thumbnail_key(user_id, image_id);
    let base = app.public_base_url.trim_end_matches('/');
    ImageRecord {
        id: image_id.to_owned(),
        user_id: user_id.to_owned(),
        album_id: fields.album_id,
        title: fields.title,
        tags: fields.tags,
        original_filename: fields.original_filename,
        mime_type: format!("image/{}", processed.source.format.name()),
        size_bytes: processed.source.bytes,
        width: processed.display.width,
        height: processed.display.height,
        thumbnail_width: Some(processed.thumbnail.width),
        thumbnail_height: Some(processed.thumbnail.height),
        s3_bucket: app.bucket_label.clone(),
        image_url: format!("{base}/{s3_key}"),
        thumbnail_url: format!("{base}/{thumbnail_key}"),
        s3_key,
        thumbnail_key,
        image_etag: Some(record::etag_of(&processed.display.data)),
        thumbnail_etag: Some(record::etag_of(&processed.thumbnail.data)),
        thumbhash: Some(base64::engine::general_purpose::STANDARD.encode(&processed.thumbhash)),
        processing_status: "completed".to_owned(),
        format: "webp".to_owned(),
        quality: DISPLAY_QUALITY,
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        uploaded_at: now.to_owned(),
        version: 1,
    }
}

/// Write both objects in parallel, then the record (create-only). Any failure removes the
/// objects already written, so a failed upload leaves no orphan behind.
pub async fn store(
    app: &App,
    record: &ImageRecord,
    processed: Processed,
) -> Result<(), StoreError> {
    put_objects(app, record, processed).await?;
    if let Err(error) = app.metadata.create(record).await {
        let left = remove_objects(app, record).await;
        log_failed_upload(record, &error, &left);
        return Err(error);
    }
    Ok(())
}

/// Write both objects in parallel; if either fails, remove both.
pub async fn put_objects(
    app: &App,
    record: &ImageRecord,
    processed: Processed,
) -> Result<(), StoreError> {
    let display = Bytes::from(processed.display.data);
    let thumbnail = Bytes::from(processed.thumbnail.data);
    let (display_put, thumbnail_put) = tokio::join!(
        app.blobs
            .put(&record.s3_key, display, OUTPUT_CONTENT_TYPE, CACHE_CONTROL),
        app.blobs.put(
            &record.thumbnail_key,
            thumbnail,
            OUTPUT_CONTENT_TYPE,
            CACHE_CONTROL
        ),
    );
    if let Err(error) = display_put.and(thumbnail_put) {
        let left = remove_objects(app, record).await;
        log_failed_upload(record, &error, &left);
        return Err(error);
    }
    Ok(())
}

/// One line for a failed upload that says whether its objects were cleaned up.
fn log_failed_upload(record: &ImageRecord, error: &StoreError, left: &[String]) {
    if left.is_empty() {
        tracing::error!(image_id = %record.id, error = %error, "upload failed; objects removed");
    } else {
        tracing::error!(image_id = %record.id, error = %error, left = ?left, "upload failed; objects could not all be removed");
    }
}

/// Remove both objects of a record, logging (not failing on) what can't be removed.
/// Returns the keys left behind.
pub async fn remove_objects(app: &App, record: &ImageRecord) -> Vec<String> {
    let (a, b) = tokio::join!(
        app.blobs.delete(&record.s3_key),
        app.blobs.delete(&record.thumbnail_key)
    );
    let mut left = Vec::new();
    for (key, result) in [(&record.s3_key, a), (&record.thumbnail_key, b)] {
        if let Err(error) = result {
            tracing::error!(key = %key, error = %error, "could not remove object");
            left.push(key.clone());
        }
    }
    left
}

/// Remove the image objects no record names: what a process killed between writing an
/// upload's objects and its record leaves behind. Only objects written more than `grace`
/// seconds before `now` are considered — an upload writes its record within the store
/// timeouts after its objects, so a younger object may be one whose record is on its way —
/// and an object is kept while any record with its image id exists, in the metadata store
/// or (when configured, `legacy`) the legacy gallery, whose uploads share the keys.
/// `delete: false` only reports. The keys removed (or that would be).
pub async fn sweep_orphans(
    blobs: &dyn BlobStore,
    metadata: &dyn MetadataStore,
    legacy: Option<&dyn LegacyStore>,
    now: i64,
    grace: i64,
    delete: bool,
) -> Result<Vec<String>, StoreError> {
    let mut orphans = Vec::new();
    // An image has two objects: look its record up once.
    let mut recorded: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for object in blobs.list("images/").await? {
        if object.modified.saturating_add(grace) >= now {
            continue;
        }
        // Keys this service never writes are not its to remove.
        let Some(image_id) = image_id_of(&object.key) else {
            continue;
        };
        let known = match recorded.get(image_id) {
            Some(known) => *known,
            None => {
                let known = metadata.get(image_id).await?.is_some()
                    || match legacy {
                        Some(legacy) => legacy.get(image_id).await?.is_some(),
                        None => false,
                    };
                recorded.insert(image_id.to_owned(), known);
                known
            }
        };
        if known {
            continue;
        }
        if delete {
            blobs.delete(&object.key).await?;
        }
        orphans.push(object.key);
    }
    Ok(orphans)
}

/// The image id in a key `record::display_key` or `record::thumbnail_key` makes.
fn image_id_of(key: &str) -> Option<&str> {
    let (_user, file) = key.strip_prefix("images/")?.split_once('/')?;
    let file = file.strip_prefix("thumbnails/").unwrap_or(file);
    let id = file.strip_suffix(".webp")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// How long an `Idempotency-Key` is remembered.
const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 60 * 60;

/// A stored upload, and whether it is the replay of an earlier request's result.
#[derive(Debug)]
pub struct Created {
    pub record: ImageRecord,
    pub replayed: bool,
}

/// Create an image, once per `(user, idempotency key)` when a key is given: a repeat with
/// the same upload replays the first result; another upload under the key is refused.
pub async fn create_once(
    app: &App,
    user_id: &str,
    idempotency_key: Option<String>,
    bytes: Bytes,
    fields: UploadFields,
) -> Result<Created, UploadError> {
    let Some(key) = idempotency_key else {
        let record = create(app, user_id, bytes, fields).await?;
        return Ok(Created {
            record,
            replayed: false,
        });
    };

    let fingerprint = upload_fingerprint(&bytes, &fields);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let reservation = app
        .metadata
        .reserve_idempotency(
            user_id,
            &key,
            &fingerprint,
            now,
            now + IDEMPOTENCY_TTL_SECONDS,
            now.saturating_add(
                i64::try_from(app.limits.idempotency_lease.as_secs()).unwrap_or(i64::MAX),
            ),
        )
        .await?;
    match reservation {
        Reservation::Reserved => {}
        Reservation::Completed {
            fingerprint: first,
            response,
        } if first == fingerprint => {
            return Ok(Created {
                record: recorded_result(&response)?,
                replayed: true,
            });
        }
        Reservation::InProgress { fingerprint: first } if first == fingerprint => {
            return Err(UploadError::IdempotencyInProgress);
        }
        Reservation::Completed { .. } | Reservation::InProgress { .. } => {
            return Err(UploadError::IdempotencyKeyReused);
        }
    }
    match create(app, user_id, bytes, fields).await {
        Ok(record) => {
            let response = serde_json::to_string(&record).unwrap_or_default();
            if let Err(error) = app
                .metadata
                .complete_idempotency(user_id, &key, &response)
                .await
            {
                // The image exists; only the replay is lost. Don't fail the upload for it.
                tracing::error!(image_id = %record.id, error = %error, "could not record idempotency result");
            }
            Ok(Created {
                record,
                replayed: false,
            })
        }
        Err(error) => {
            if let Err(release) = app.metadata.release_idempotency(user_id, &key).await {
                tracing::error!(error = %release, "could not release idempotency key");
            }
            Err(error)
        }
    }
}

/// The record an idempotency entry kept as its result.
pub fn recorded_result(response: &str) -> Result<ImageRecord, StoreError> {
    serde_json::from_str(response)
        .map_err(|e| StoreError::Unavailable(format!("bad idempotency record: {e}")))
}

/// What makes two uploads "the same request": the file and every field.
fn upload_fingerprint(bytes: &[u8], fields: &UploadFields) -> String {
    let described = serde_json::json!([
        record::etag_of(bytes),
        fields.album_id,
        fields.title,
        fields.tags,
        fields.original_filename,
    ]);
    record::etag_of(described.to_string().as_bytes())
}

/// How long a two-step upload's URL stays valid.
pub const UPLOAD_URL_SECONDS: i64 = 15 * 60;

/// Where a two-step upload's original is staged.
pub fn staged_key(user_id: &str, upload_id: &str) -> String {
    format!("uploads/{user_id}/{upload_id}")
}

/// When an upload's URL expires (Unix seconds): its id is the ULID `POST /uploads` minted,
/// so it carries its creation time. `None` for an id this service never minted.
pub fn upload_url_expiry(upload_id: &str) -> Option<i64> {
    let minted = ulid::Ulid::from_string(upload_id).ok()?;
    let created = i64::try_from(minted.timestamp_ms() / 1000).ok()?;
    Some(created.saturating_add(UPLOAD_URL_SECONDS))
}

/// Whether a staged object is past its upload's expiry plus `grace` at `now`: by its
/// upload id, or (a file that is no upload id, such as a half-written one) by when it
/// was written.
pub fn staged_object_expired(object: &StoredObject, grace: i64, now: i64) -> bool {
    let name = object.key.rsplit('/').next().unwrap_or_default();
    let expiry = upload_url_expiry(name)
        .unwrap_or_else(|| object.modified.saturating_add(UPLOAD_URL_SECONDS));
    expiry.saturating_add(grace) < now
}

/// Remove the staged originals whose upload expired (plus `grace` seconds) before `now`:
/// what the server's sweep runs at start and periodically. How many it removed.
pub async fn sweep_staging(
    blobs: &dyn BlobStore,
    grace: i64,
    now: i64,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    for object in blobs.list("uploads/").await? {
        if staged_object_expired(&object, grace, now) {
            blobs.delete(&object.key).await?;
            removed += 1;
        }
    }
    Ok(removed)
}
