//! JSON bodies the service parses: `PATCH /images/{id}` (`api::parse_patch` and
//! `api::expected_version` with `If-Match`) and `POST /uploads/{id}/complete`
//! (`api::parse_completion_fields`).
//!
//! Input: a mode byte, then the body, then (after a 0xFF, which UTF-8 never contains) the
//! `If-Match` value. Asserts, for `Ok`: the body was a JSON object with only the allowed
//! members, each parsed value is exactly what the member said (title and tags as the
//! validators normalise them, `null` clears, `version` the number given), everything kept
//! passes the validators, the expected version comes from the body or `If-Match` and they
//! agree, and applying the edit changes only the edited fields and bumps the version. For
//! `Err`: 400 `invalid_body`/`invalid_field`/`invalid_version`, or 428 exactly when no
//! version was given anywhere.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use imgsvc_lambda::record::{self, Editable, ImageRecord};
use serde_json::Value;

use crate::input::Input;

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let body = input.field();
    let if_match = input.rest();
    if mode.is_multiple_of(2) {
        patch(body, if_match);
    } else {
        complete(body);
    }
}

fn assert_bad_request(error: &imgsvc_lambda::api::error::ApiError) {
    assert_eq!(error.status, StatusCode::BAD_REQUEST, "{error:?}");
    assert!(
        ["invalid_body", "invalid_field"].contains(&error.code),
        "{error:?}"
    );
}

fn patch(body: &[u8], if_match: &[u8]) {
    let (edit, body_version) = match imgsvc_lambda::api::parse_patch(body) {
        Ok(parsed) => parsed,
        Err(error) => return assert_bad_request(&error),
    };
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        other => panic!("accepted a body that is no JSON object: {other:?}"),
    };
    for key in object.keys() {
        assert!(
            ["title", "tags", "albumId", "version"].contains(&key.as_str()),
            "accepted member {key:?}"
        );
    }
    let expected_title = object.get("title").map(|v| match v {
        Value::Null => None,
        Value::String(s) => record::validate_title(s).unwrap_or_else(|e| panic!("{e}")),
        other => panic!("accepted title {other}"),
    });
    assert_eq!(edit.title, expected_title);
    if let Some(Some(title)) = &edit.title {
        assert!(crate::valid_title(title), "title {title:?}");
    }
    let expected_album = object.get("albumId").map(|v| match v {
        Value::Null => None,
        Value::String(s) => {
            assert!(crate::valid_id(s), "albumId {s:?}");
            Some(s.clone())
        }
        other => panic!("accepted albumId {other}"),
    });
    assert_eq!(edit.album_id, expected_album);
    match (object.get("tags"), &edit.tags) {
        (None, None) => {}
        (Some(Value::Array(items)), Some(tags)) => {
            assert!(crate::valid_tags(tags), "tags {tags:?}");
            let raw: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            assert_eq!(raw.len(), items.len(), "accepted non-string tags");
            for tag in tags {
                assert!(raw.iter().any(|r| r.trim() == tag), "invented tag {tag:?}");
            }
            for r in raw.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
                assert!(tags.iter().any(|t| t == r), "dropped tag {r:?}");
            }
        }
        (raw, parsed) => panic!("tags {raw:?} parsed as {parsed:?}"),
    }
    assert_eq!(
        body_version,
        object
            .get("version")
            .map(|v| v.as_u64().unwrap_or_else(|| panic!("accepted version {v}")))
    );

    let mut headers = HeaderMap::new();
    let if_match = (!if_match.is_empty())
        .then(|| HeaderValue::from_bytes(if_match).ok())
        .flatten();
    if let Some(value) = &if_match {
        headers.insert(header::IF_MATCH, value.clone());
    }
    let expected = imgsvc_lambda::api::expected_version(body_version, &headers);
    let header_version = if_match.as_ref().and_then(|v| {
        v.to_str()
            .ok()
            .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|s| s.parse::<u64>().ok())
    });
    match expected {
        Ok(version) => {
            assert!(body_version.is_some() || header_version.is_some());
            if let Some(v) = body_version {
                assert_eq!(version, v);
            }
            if let Some(v) = header_version {
                assert_eq!(version, v);
            }
            if if_match.is_some() {
                assert!(header_version.is_some(), "accepted If-Match {if_match:?}");
            }
            check_edit(&edit, version);
        }
        Err(error) if error.status == StatusCode::PRECONDITION_REQUIRED => {
            assert!(body_version.is_none() && if_match.is_none(), "{error:?}");
        }
        Err(error) => {
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{error:?}");
            assert_eq!(error.code, "invalid_version");
            assert!(
                if_match.is_some() && (header_version.is_none() || header_version != body_version),
                "{error:?}"
            );
        }
    }
}

/// Applying an accepted edit to a record changes the edited fields only.
fn check_edit(edit: &Editable, version: u64) {
    let before = ImageRecord {
        id: "01J0000000000000000000000".into(),
        user_id: "alice".into(),
        album_id: Some("album".into()),
        title: Some("title".into()),
        tags: vec!["tag".into()],
        original_filename: None,
        mime_type: "image/jpeg".into(),
        size_bytes: 1,
        width: 1,
        height: 1,
        thumbnail_width: Some(400),
        thumbnail_height: Some(400),
        s3_bucket: "local".into(),
        s3_key: "k".into(),
        thumbnail_key: "t".into(),
        image_url: "u".into(),
        thumbnail_url: "u".into(),
        image_etag: None,
        thumbnail_etag: None,
        thumbhash: None,
        processing_status: "completed".into(),
        format: "webp".into(),
        quality: 85,
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
        uploaded_at: "2026-01-01T00:00:00.000Z".into(),
        version: version.min(u64::MAX - 1),
    };
    let after = before.edited(edit, "2026-01-02T00:00:00.000Z");
    assert_eq!(after.version, before.version + 1);
    assert_eq!(
        after.title,
        edit.title.clone().unwrap_or(before.title.clone())
    );
    assert_eq!(
        after.album_id,
        edit.album_id.clone().unwrap_or(before.album_id.clone())
    );
    assert_eq!(after.tags, edit.tags.clone().unwrap_or(before.tags.clone()));
    let unchanged = ImageRecord {
        title: before.title.clone(),
        album_id: before.album_id.clone(),
        tags: before.tags.clone(),
        version: before.version,
        updated_at: before.updated_at.clone(),
        ..after
    };
    assert_eq!(unchanged, before);
}

fn complete(body: &[u8]) {
    let fields = match imgsvc_lambda::api::parse_completion_fields(body) {
        Ok(fields) => fields,
        Err(error) => return assert_bad_request(&error),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        assert!(fields.title.is_none() && fields.album_id.is_none() && fields.tags.is_empty());
        return;
    }
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        other => panic!("accepted a body that is no JSON object: {other:?}"),
    };
    for key in object.keys() {
        assert!(
            ["title", "tags", "albumId"].contains(&key.as_str()),
            "accepted member {key:?}"
        );
    }
    if let Some(title) = &fields.title {
        assert!(crate::valid_title(title), "title {title:?}");
    }
    assert!(crate::valid_tags(&fields.tags), "tags {:?}", fields.tags);
    if let Some(album) = &fields.album_id {
        assert!(crate::valid_id(album), "albumId {album:?}");
    }
    assert_eq!(fields.original_filename, None);
}
