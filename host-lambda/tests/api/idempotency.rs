//! `Idempotency-Key`: retries create one record, abandoned reservations are taken over, entries expire.

use crate::common::aws::{aws_sdk_config, dynamodb_client};
use crate::harness::{Backend, Server, on_both_backends, problem, small_jpeg};
use imgsvc_lambda::store::Reservation;
use imgsvc_testkit::photos::read_corpus as corpus;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

async fn idempotent_retries_create_one_record(backend: Backend) {
    let server = Server::start(backend).await;
    let send = |user: &'static str, key: &'static str, bytes: Vec<u8>| {
        let request = server
            .client
            .post(format!("{}/images", server.url))
            .bearer_auth(server.token(user))
            .header("idempotency-key", key)
            .multipart(Form::new().part("file", Part::bytes(bytes).file_name("a.jpg")));
        request.send()
    };
    let first = send("gina", "key-1", small_jpeg()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let retry = send("gina", "key-1", small_jpeg()).await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first);
    // The same key for a different upload is refused; another user's key space is separate.
    let other_photo = corpus("skimage_coffee.png");
    problem(
        send("gina", "key-1", other_photo.clone()).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(
        send("hank", "key-1", small_jpeg()).await.unwrap().status(),
        StatusCode::CREATED
    );
    // A failed request frees its key for the retry.
    problem(
        send("gina", "key-2", b"not an image".to_vec())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "not_an_image",
    )
    .await;
    assert_eq!(
        send("gina", "key-2", other_photo).await.unwrap().status(),
        StatusCode::CREATED
    );
    // Concurrent duplicates: one creates, the others replay or are told to retry.
    let racing =
        futures_util::future::join_all((0..5).map(|_| send("gina", "key-3", small_jpeg()))).await;
    let mut ids = std::collections::HashSet::new();
    for response in racing {
        let response = response.unwrap();
        match response.status() {
            StatusCode::CREATED => {
                let body: Value = response.json().await.unwrap();
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            _ => {
                problem(response, StatusCode::CONFLICT, "idempotency_in_progress").await;
            }
        }
    }
    assert_eq!(ids.len(), 1);
    let listing: Value = server
        .get("gina", "/images?limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listing["items"].as_array().unwrap().len(), 3);
    problem(
        server
            .client
            .post(format!("{}/images", server.url))
            .bearer_auth(server.token("gina"))
            .header("idempotency-key", "")
            .multipart(Form::new().part("file", Part::bytes(small_jpeg())))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
    )
    .await;
}

/// A request that held its `Idempotency-Key` and died (kill -9) mid-upload leaves the key
/// reserved and never completed; once its lease has run out, a retry takes the key over.
async fn an_abandoned_idempotency_reservation_is_taken_over(backend: Backend) {
    let server = Server::start(backend).await;
    let send = |key: &'static str| {
        server
            .client
            .post(format!("{}/images", server.url))
            .bearer_auth(server.token("ivan"))
            .header("idempotency-key", key)
            .multipart(Form::new().part("file", Part::bytes(small_jpeg()).file_name("a.jpg")))
            .send()
    };
    // The fingerprint this upload gets, read from a completed key.
    assert_eq!(send("probe").await.unwrap().status(), StatusCode::CREATED);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let Some(Reservation::Completed { fingerprint, .. }) = server
        .state
        .app
        .metadata
        .find_idempotency("ivan", "probe", now)
        .await
        .unwrap()
    else {
        panic!("the probe's key was not completed");
    };
    // What the crashed request left an hour ago: reserved for 24 h, never completed.
    let crashed_at = now - 3600;
    assert_eq!(
        server
            .state
            .app
            .metadata
            .reserve_idempotency(
                "ivan",
                "crashed",
                &fingerprint,
                crashed_at,
                crashed_at + 86_400,
                crashed_at + 300
            )
            .await
            .unwrap(),
        Reservation::Reserved
    );
    let retry = send("crashed").await.unwrap();
    assert_eq!(
        retry.status(),
        StatusCode::CREATED,
        "{:?}",
        retry.text().await
    );
    let replay = send("crashed").await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let listing: Value = server
        .get("ivan", "/images?limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listing["items"].as_array().unwrap().len(), 2);
}

/// An upload waits for a processing slot only so long (then 503 `busy`, its key freed), so
/// every upload ends well inside the idempotency lease.
#[tokio::test]
async fn an_upload_waits_for_a_processing_slot_only_so_long() {
    let server = Server::start_with(Backend::Embedded, |mut state| {
        state.app.limits.processing_queue_timeout = std::time::Duration::from_millis(300);
        state
    })
    .await;
    let all = server.state.app.processing.available_permits() as u32;
    let held = server
        .state
        .app
        .processing
        .clone()
        .acquire_many_owned(all)
        .await
        .unwrap();
    let send = || {
        server
            .client
            .post(format!("{}/images", server.url))
            .bearer_auth(server.token("quinn"))
            .header("idempotency-key", "queued")
            .timeout(std::time::Duration::from_secs(10))
            .multipart(Form::new().part("file", Part::bytes(small_jpeg()).file_name("a.jpg")))
            .send()
    };
    let refused = send()
        .await
        .expect("the upload waited for a slot with no end");
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    drop(held);
    assert_eq!(send().await.unwrap().status(), StatusCode::CREATED);
}

async fn idempotency_records_expire(backend: Backend) {
    let server = Server::start(backend).await;
    let store = &server.state.app.metadata;
    assert_eq!(
        store
            .reserve_idempotency("u", "k", "f1", 1000, 2000, 2000)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    store.complete_idempotency("u", "k", "{}").await.unwrap();
    assert_eq!(
        store
            .reserve_idempotency("u", "k", "f1", 1999, 3000, 3000)
            .await
            .unwrap(),
        Reservation::Completed {
            fingerprint: "f1".into(),
            response: "{}".into()
        }
    );
    // At expiry the key is free again, for any request.
    assert_eq!(
        store
            .reserve_idempotency("u", "k", "f2", 2000, 4000, 4000)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        store
            .reserve_idempotency("u", "k", "f2", 2001, 4000, 4000)
            .await
            .unwrap(),
        Reservation::InProgress {
            fingerprint: "f2".into()
        }
    );
}

/// Issue 17 item 14: idempotency entries were never deleted. Expired SQLite rows are
/// removed as reservations come in; DynamoDB's table has TTL on `expiresAt`.
async fn expired_idempotency_entries_are_deleted(backend: Backend) {
    let server = Server::start(backend).await;
    let store = &server.state.app.metadata;
    for key in ["a", "b", "c"] {
        store
            .reserve_idempotency("u", key, "f", 1_000, 2_000, 2_000)
            .await
            .unwrap();
    }
    store.complete_idempotency("u", "a", "{}").await.unwrap();
    // A day later, the next reservation sweeps the expired entries away.
    store
        .reserve_idempotency("u", "d", "f", 90_000, 180_000, 90_300)
        .await
        .unwrap();
    match backend {
        Backend::Embedded => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(server.data.path().join("imgsvc.sqlite"));
            let mut connection = sqlx::ConnectOptions::connect(&options).await.unwrap();
            let keys: Vec<(String,)> = sqlx::query_as("SELECT key FROM idempotency ORDER BY key")
                .fetch_all(&mut connection)
                .await
                .unwrap();
            assert_eq!(keys, [("d".to_owned(),)]);
        }
        Backend::Aws => {
            let (_, table) = server.s3.as_ref().unwrap();
            let ttl = dynamodb_client(&aws_sdk_config().await)
                .describe_time_to_live()
                .table_name(table)
                .send()
                .await
                .unwrap();
            let description = ttl.time_to_live_description().unwrap();
            assert_eq!(description.attribute_name(), Some("expiresAt"));
            assert_eq!(
                description.time_to_live_status(),
                Some(&aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled)
            );
        }
    }
}

on_both_backends!(
    idempotent_retries_create_one_record,
    an_abandoned_idempotency_reservation_is_taken_over,
    idempotency_records_expire,
    expired_idempotency_entries_are_deleted,
);
