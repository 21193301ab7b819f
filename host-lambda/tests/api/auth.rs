//! Who may act: service tokens on behalf of a user, the bearer scheme.

use crate::harness::{Backend, Server, problem, small_jpeg};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

#[tokio::test]
async fn service_tokens_act_on_behalf_of_a_user_and_nobody_else_can() {
    let server = Server::start(Backend::Embedded).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let service = server
        .state
        .app
        .auth
        .issue("migrator", true, now, 600)
        .unwrap();
    let form = Form::new().part("file", Part::bytes(small_jpeg()).file_name("a.jpg"));
    let created = server
        .client
        .post(format!("{}/images", server.url))
        .bearer_auth(&service)
        .header("x-on-behalf-of", "alice")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let record: Value = created.json().await.unwrap();
    assert_eq!(record["userId"], "alice");
    assert!(
        record["s3Key"]
            .as_str()
            .unwrap()
            .starts_with("images/alice/")
    );
    // It is alice's: she lists it; the service sees her listing when acting for her.
    let listed: Value = server.get("alice", "/images").await.json().await.unwrap();
    assert_eq!(listed["items"][0]["id"], record["id"]);
    let as_alice: Value = server
        .client
        .get(format!("{}/images", server.url))
        .bearer_auth(&service)
        .header("x-on-behalf-of", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(as_alice["items"][0]["id"], record["id"]);
    // A user token may not act for anyone else, and the header must name a valid user.
    let forbidden = server
        .client
        .get(format!("{}/images", server.url))
        .bearer_auth(server.token("bob"))
        .header("x-on-behalf-of", "alice")
        .send()
        .await
        .unwrap();
    problem(forbidden, StatusCode::FORBIDDEN, "forbidden").await;
    let invalid = server
        .client
        .get(format!("{}/images", server.url))
        .bearer_auth(&service)
        .header("x-on-behalf-of", "../alice")
        .send()
        .await
        .unwrap();
    problem(invalid, StatusCode::BAD_REQUEST, "invalid_field").await;
}

/// Issue 17 item 10: the authentication scheme is case-insensitive (RFC 9110 11.1).
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let server = Server::start(Backend::Embedded).await;
    let token = server.token("pia");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = server
            .client
            .get(format!("{}/images", server.url))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}
