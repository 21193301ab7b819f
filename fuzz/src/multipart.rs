//! The upload form of `POST /images` and `POST /gallery/images`
//! (`imgsvc_lambda::api::read_upload_fields`), driven through axum's `Multipart` extractor
//! from a request whose body is the fuzz input (boundary [`BOUNDARY`]), on a current-thread
//! runtime.
//!
//! Asserts, for `Ok`: the file is at most [`FILE_LIMIT`] bytes and is a slice of the body;
//! title, tags and albumId are what the record validators allow (tags never contain the
//! comma they are split on); the file name is at most 255 characters. For `Err`: 400 with
//! `invalid_multipart`/`invalid_field`/`missing_file`, or 413 `too_large` only when the body
//! is over the limit.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use axum::http::{Request, StatusCode, header};
use imgsvc_lambda::api::error::ApiError;

/// The multipart boundary of every fuzzed request (the dictionary and seeds use it).
pub const BOUNDARY: &str = "fuzzboundary";

/// File size limit for the fuzzed form (the service's is the policy's 10 MiB).
pub const FILE_LIMIT: usize = 16 * 1024;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
}

/// The form parsed from `body` as `POST /images` does.
pub fn parse(body: &[u8]) -> Result<(bytes::Bytes, imgsvc_lambda::upload::UploadFields), ApiError> {
    let request = Request::builder()
        .method("POST")
        .uri("/images")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body.to_vec()))
        .unwrap_or_else(|e| panic!("request: {e}"));
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let multipart = Multipart::from_request(request, &())
                .await
                .unwrap_or_else(|e| panic!("a multipart request was rejected: {e:?}"));
            imgsvc_lambda::api::read_upload_fields(
                multipart,
                FILE_LIMIT,
                &imgsvc_lambda::api::FormLimits::default(),
            )
            .await
        })
    })
}

pub fn check(data: &[u8]) {
    match parse(data) {
        Ok((file, fields)) => {
            assert!(file.len() <= FILE_LIMIT);
            assert!(
                file.is_empty() || data.windows(file.len()).any(|w| w == &file[..]),
                "the file is not a slice of the body"
            );
            if let Some(title) = &fields.title {
                assert!(crate::valid_title(title), "title {title:?}");
            }
            assert!(crate::valid_tags(&fields.tags), "tags {:?}", fields.tags);
            assert!(fields.tags.iter().all(|t| !t.contains(',')));
            if let Some(album) = &fields.album_id {
                assert!(crate::valid_id(album), "albumId {album:?}");
            }
            if let Some(name) = &fields.original_filename {
                assert!(name.chars().count() <= 255);
            }
        }
        Err(error) => {
            let expected = match error.status {
                StatusCode::BAD_REQUEST => {
                    ["invalid_multipart", "invalid_field", "missing_file"].contains(&error.code)
                }
                StatusCode::PAYLOAD_TOO_LARGE => {
                    error.code == "too_large" && data.len() > FILE_LIMIT
                }
                _ => false,
            };
            assert!(expected, "unexpected refusal: {error:?}");
        }
    }
}
