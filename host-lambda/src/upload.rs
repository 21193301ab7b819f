//! The upload use case: process with the core, store both objects, then the record — and
//! leave nothing behind when any step fails.

use base64::Engine;
use bytes::Bytes;
use imgsvc_core::{Processed, Stage};

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::record::{self, DISPLAY_QUALITY, ImageRecord};

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
pub async fn process(state: &AppState, bytes: Bytes) -> Result<Processed, ApiError> {
    let policy = state.policy;
    // Bounded: an upload that can't get a slot in time is refused (and can be retried)
    // rather than outliving its idempotency lease.
    let permit = tokio::time::timeout(
        state.limits.processing_queue_timeout,
        state.processing.clone().acquire_owned(),
    )
    .await
    .map_err(|_| ApiError::busy("every processing slot stayed busy; retry shortly"))?
    .map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        )
    })?;
    let observe = state.observe.clone();
    let processor = state.processor.clone();
    observe.upload_bytes.inc_by(bytes.len() as u64);
    // The request's span (request id, user id) follows the work onto the blocking pool.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _span = span.enter();
        let started = std::time::Instant::now();
        let (result, stages) = processor.process(&bytes, &policy);
        let total = started.elapsed();
        observe.record_processing(total, &stages);
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
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "image processing failed",
        )
    })?
    .map_err(ApiError::from)
}

/// Process, store and record one upload for `user_id` (what `POST /images` does once the
/// form is read): a new id, the clock, then `process`, `new_record` and `store`.
pub async fn create(
    state: &AppState,
    user_id: &str,
    bytes: Bytes,
    fields: UploadFields,
) -> Result<ImageRecord, ApiError> {
    let (record, processed) = prepare(state, user_id, bytes, fields).await?;
    store(state, &record, processed).await?;
    tracing::info!(image_id = %record.id, user_id = %record.user_id, "Image uploaded successfully");
    Ok(record)
}

/// Process an upload and make its record (a new id, the clock): what every upload path
/// does before it stores anything (`create`, and `POST /gallery/images` into PostgreSQL).
pub async fn prepare(
    state: &AppState,
    user_id: &str,
    bytes: Bytes,
    fields: UploadFields,
) -> Result<(ImageRecord, Processed), ApiError> {
    let processed = process(state, bytes).await?;
    let record = new_record(
        state,
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
    state: &AppState,
    image_id: &str,
    user_id: &str,
    fields: UploadFields,
    processed: &Processed,
    now: &str,
) -> ImageRecord {
    let s3_key = record::display_key(user_id, image_id);
    let thumbnail_key = record::thumbnail_key(user_id, image_id);
    let base = state.public_base_url.trim_end_matches('/');
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
        s3_bucket: state.bucket_label.clone(),
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
    state: &AppState,
    record: &ImageRecord,
    processed: Processed,
) -> Result<(), ApiError> {
    put_objects(state, record, processed).await?;
    if let Err(error) = state.metadata.create(record).await {
        let left = remove_objects(state, record).await;
        log_failed_upload(record, &error, &left);
        return Err(error.into());
    }
    Ok(())
}

/// Write both objects in parallel; if either fails, remove both.
pub async fn put_objects(
    state: &AppState,
    record: &ImageRecord,
    processed: Processed,
) -> Result<(), ApiError> {
    let display = Bytes::from(processed.display.data);
    let thumbnail = Bytes::from(processed.thumbnail.data);
    let (display_put, thumbnail_put) = tokio::join!(
        state
            .blobs
            .put(&record.s3_key, display, OUTPUT_CONTENT_TYPE, CACHE_CONTROL),
        state.blobs.put(
            &record.thumbnail_key,
            thumbnail,
            OUTPUT_CONTENT_TYPE,
            CACHE_CONTROL
        ),
    );
    if let Err(error) = display_put.and(thumbnail_put) {
        let left = remove_objects(state, record).await;
        log_failed_upload(record, &error, &left);
        return Err(error.into());
    }
    Ok(())
}

/// One line for a failed upload that says whether its objects were cleaned up.
fn log_failed_upload(record: &ImageRecord, error: &crate::store::StoreError, left: &[String]) {
    if left.is_empty() {
        tracing::error!(image_id = %record.id, error = %error, "upload failed; objects removed");
    } else {
        tracing::error!(image_id = %record.id, error = %error, left = ?left, "upload failed; objects could not all be removed");
    }
}

/// Remove both objects of a record, logging (not failing on) what can't be removed.
/// Returns the keys left behind.
pub async fn remove_objects(state: &AppState, record: &ImageRecord) -> Vec<String> {
    let (a, b) = tokio::join!(
        state.blobs.delete(&record.s3_key),
        state.blobs.delete(&record.thumbnail_key)
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
/// or (when configured) the legacy gallery, whose uploads share the keys. `delete: false`
/// only reports. The keys removed (or that would be).
pub async fn sweep_orphans(
    state: &AppState,
    now: i64,
    grace: i64,
    delete: bool,
) -> Result<Vec<String>, crate::store::StoreError> {
    let mut orphans = Vec::new();
    // An image has two objects: look its record up once.
    let mut recorded: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for object in state.blobs.list("images/").await? {
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
                let known = state.metadata.get(image_id).await?.is_some()
                    || match &state.gallery {
                        Some(gallery) => gallery.legacy.get(image_id).await?.is_some(),
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
            state.blobs.delete(&object.key).await?;
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
