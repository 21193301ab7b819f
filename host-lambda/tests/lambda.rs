//! The router driven through lambda_http's request types: an API Gateway HTTP API (v2)
//! event with JWT-authorizer claims, as Lambda would deliver it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use base64::Engine;
use http_body_util::BodyExt;
use imgsvc_lambda::api::{AppState, HttpSettings, router};
use serde_json::{Value, json};
use tower::ServiceExt;

fn event(
    method: &str,
    path: &str,
    query: &str,
    sub: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> lambda_http::Request {
    let authorizer = sub.map(|sub| json!({ "jwt": { "claims": { "sub": sub }, "scopes": null } }));
    let (content_type, encoded) = match body {
        Some((content_type, bytes)) => (
            Some(content_type.to_owned()),
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
        None => (None, None),
    };
    let mut headers = json!({ "host": "abc.execute-api.eu-west-1.amazonaws.com" });
    if let Some(content_type) = content_type {
        headers["content-type"] = json!(content_type);
    }
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "authorizer": authorizer,
            "domainName": "abc.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test" },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_000_000_000u64
        },
        "body": encoded,
        "isBase64Encoded": body.is_some()
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

async fn call(app: &axum::Router, request: lambda_http::Request) -> (u16, Value) {
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, Body::from(body.to_vec()));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn multipart(file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "XyZzY";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nFrom Lambda\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes());
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn api_gateway_v2_events_with_authorizer_claims_reach_the_router() {
    let data = tempfile::tempdir().unwrap();
    let app = imgsvc_lambda::wiring::embedded_app(data.path(), "https://cdn.example")
        .await
        .unwrap();
    let mut state = AppState::new(app, HttpSettings::default());
    let photo = imgsvc_testkit::photos::read_corpus("skimage_rocket.jpg");
    let (content_type, body) = multipart(&photo);

    // Not trusted: the authorizer's claims are ignored and no bearer token means 401.
    let untrusting = router(state.clone());
    let (status, problem) = call(
        &untrusting,
        event(
            "POST",
            "/images",
            "",
            Some("alice"),
            Some((&content_type, &body)),
        ),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("unauthorized"))
    );

    state.http.trust_authorizer = true;
    let app = router(state);
    let (status, record) = call(
        &app,
        event(
            "POST",
            "/images",
            "",
            Some("alice"),
            Some((&content_type, &body)),
        ),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["userId"], "alice");
    assert_eq!(record["title"], "From Lambda");
    assert!(
        record["imageUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://cdn.example/files/images/alice/")
    );

    let (status, page) = call(
        &app,
        event("GET", "/images", "limit=5", Some("alice"), None),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"][0]["id"], record["id"]);
    let id = record["id"].as_str().unwrap();
    let (status, problem) = call(
        &app,
        event("GET", &format!("/images/{id}"), "", Some("bob"), None),
    )
    .await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    // A claim that could escape a key prefix is not an identity.
    let (status, _) = call(&app, event("GET", "/images", "", Some("../alice"), None)).await;
    assert_eq!(status, 401);
    let (status, _) = call(&app, event("GET", "/images", "", None, None)).await;
    assert_eq!(status, 401);
}
