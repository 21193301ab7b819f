//! Bearer tokens and `X-On-Behalf-Of`: `imgsvc_lambda::api::header_caller` (what the
//! `Caller` extractor runs) over `Authenticator::verify` (HS256, and a JWKS with RS256).
//!
//! The first byte picks the mode:
//! - 0: raw `Authorization` and `X-On-Behalf-Of` header values from the input. A forged
//!   token must never pass: `Ok` is a failure (nothing in the input is signed by our keys).
//! - 1: an HS256 token the harness signs from fuzzed claims, with fuzzed defects (expired,
//!   wrong key, `alg: none`, changed signature, `exp` as a string, lower-case scheme…).
//! - 2: the same with RS256 and the JWKS authenticator: fuzzed `kid`, `iss`, `aud`, and an
//!   HS256 token keyed with the RSA public key (algorithm confusion).
//! - 3: `Caller::on_behalf_of` alone.
//!
//! Modes 1–3 compute the expected verdict independently (from the claims and defects the
//! harness chose) and assert the service agrees, with the right caller and status
//! (401 bad token, 403 not a service, 400 bad delegate id).

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use imgsvc_lambda::api::error::ApiError;
use imgsvc_lambda::auth::{Authenticator, Caller, ON_BEHALF_OF, SERVICE_SCOPE};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::input::Input;

const SECRET: &[u8] = b"fuzz secret, at least thirty-two bytes long";
const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "imgsvc";
const KID: &str = "test-key-1";
const JWKS: &str = include_str!("../../host-lambda/tests/fixtures/test-jwks.json");
const PRIVATE_PEM: &[u8] = include_bytes!("../../host-lambda/tests/fixtures/test-rsa-private.pem");

struct Keys {
    hs256: Authenticator,
    jwks: Authenticator,
    rsa: EncodingKey,
    /// The RSA modulus as the JWKS publishes it, for the algorithm-confusion forgery.
    rsa_n: String,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let set: JwkSet = serde_json::from_str(JWKS).unwrap_or_else(|e| panic!("JWKS fixture: {e}"));
    let jwks = Authenticator::hs256(SECRET)
        .with_jwks(&set, Some(ISSUER.into()), Some(AUDIENCE.into()))
        .unwrap_or_else(|e| panic!("JWKS fixture: {e}"));
    let raw: Value = serde_json::from_str(JWKS).unwrap_or_else(|e| panic!("JWKS fixture: {e}"));
    Keys {
        hs256: Authenticator::hs256(SECRET),
        jwks,
        rsa: EncodingKey::from_rsa_pem(PRIVATE_PEM).unwrap_or_else(|e| panic!("PEM: {e}")),
        rsa_n: raw["keys"][0]["n"].as_str().unwrap_or_default().to_owned(),
    }
});

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 4 {
        0 => raw_headers(&mut input),
        1 => signed(&mut input, false),
        2 => signed(&mut input, true),
        _ => delegation(&mut input),
    }
}

fn headers(authorization: &[u8], on_behalf_of: Option<&[u8]>) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_bytes(authorization).ok()?,
    );
    if let Some(value) = on_behalf_of {
        headers.insert(ON_BEHALF_OF, HeaderValue::from_bytes(value).ok()?);
    }
    Some(headers)
}

fn raw_headers(input: &mut Input<'_>) {
    let authorization = input.field();
    let on_behalf_of = input.rest();
    let on_behalf_of = (!on_behalf_of.is_empty()).then_some(on_behalf_of);
    let Some(headers) = headers(authorization, on_behalf_of) else {
        return;
    };
    for auth in [&KEYS.hs256, &KEYS.jwks] {
        match imgsvc_lambda::api::header_caller(auth, &headers, None) {
            Ok(caller) => panic!("a token we did not sign was accepted: {caller:?}"),
            Err(error) => assert_auth_refusal(&error),
        }
    }
}

fn assert_auth_refusal(error: &ApiError) {
    let expected = match error.status {
        StatusCode::UNAUTHORIZED => error.code == "unauthorized",
        StatusCode::FORBIDDEN => error.code == "forbidden",
        StatusCode::BAD_REQUEST => error.code == "invalid_field",
        _ => false,
    };
    assert!(expected, "unexpected refusal: {error:?}");
}

/// A token signed by the harness, defects chosen by the input; the verdict predicted.
fn signed(input: &mut Input<'_>, rs256: bool) {
    let defects = input.u16();
    let exp_minutes = i64::from(input.byte() as i8);
    let sub = input.text();
    let scope = input.text();
    let on_behalf_of = input.field().to_vec();
    let has = |bit: u16| defects & (1 << bit) != 0;

    // Never within two minutes of now: the service allows 30 s of leeway.
    let exp = now() + exp_minutes * 60 + if exp_minutes >= 0 { 120 } else { -120 };
    let mut claims = json!({ "sub": sub, "iat": now() });
    if !has(0) {
        claims["exp"] = if has(1) {
            json!(exp.to_string())
        } else {
            json!(exp)
        };
    }
    if !has(2) {
        claims["scope"] = json!(scope);
    }
    let (iss, aud) = (!has(3), !has(4));
    let wrong_iss_aud = has(5);
    if iss {
        claims["iss"] = json!(if wrong_iss_aud {
            "https://evil.example"
        } else {
            ISSUER
        });
    }
    if aud {
        claims["aud"] = json!(if wrong_iss_aud {
            "someone-else"
        } else {
            AUDIENCE
        });
    }
    let kid = match (defects >> 6) & 3 {
        0 => Some(KID),
        1 => None,
        2 => Some("unknown-key"),
        _ => Some(""),
    };
    let wrong_key = has(8);
    let alg_none = has(9);
    let tamper_signature = has(10);
    let confusion = rs256 && has(11);
    let lowercase_scheme = has(12);
    let padded = has(13);
    let delegate = has(14);

    let token = if rs256 && !confusion {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let key = if wrong_key {
            &EncodingKey::from_secret(SECRET)
        } else {
            &KEYS.rsa
        };
        match jsonwebtoken::encode(&header, &claims, key) {
            Ok(token) => token,
            // An RS256 header with an HMAC key: jsonwebtoken refuses to sign; nothing to test.
            Err(_) => return,
        }
    } else {
        let secret = if confusion {
            KEYS.rsa_n.as_bytes()
        } else if wrong_key {
            b"some other secret, also long enough".as_slice()
        } else {
            SECRET
        };
        match jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        ) {
            Ok(token) => token,
            Err(error) => panic!("signing: {error}"),
        }
    };
    let token = if alg_none {
        with_alg_none(&token)
    } else {
        token
    };
    let token = if tamper_signature {
        change_signature(&token)
    } else {
        token
    };
    let scheme = if lowercase_scheme { "bearer" } else { "Bearer" };
    let authorization = if padded {
        format!("{scheme}  {token} ")
    } else {
        format!("{scheme} {token}")
    };
    let Some(headers) = headers(
        authorization.as_bytes(),
        delegate.then_some(on_behalf_of.as_slice()),
    ) else {
        return;
    };

    let exp_ok = !has(0) && !has(1) && exp_minutes >= 0;
    let signature_ok = !wrong_key && !alg_none && !tamper_signature && !confusion;
    let claims_ok = if rs256 {
        iss && aud && !wrong_iss_aud && matches!(kid, Some(KID) | None)
    } else {
        true
    };
    let token_ok = exp_ok && signature_ok && claims_ok && crate::valid_id(&sub);
    // The identity provider's tokens never carry the service scope here: the harness's
    // JWKS authenticator does not trust it (`IMGSVC_JWKS_SERVICE_SCOPE` off).
    let is_service = !rs256 && !has(2) && scope.split(' ').any(|s| s == SERVICE_SCOPE);
    // What the extractor reads: the header as visible ASCII, else a 400 before any check.
    let delegate_id = headers.get(ON_BEHALF_OF).and_then(|v| v.to_str().ok());

    let auth = if rs256 { &KEYS.jwks } else { &KEYS.hs256 };
    let outcome = imgsvc_lambda::api::header_caller(auth, &headers, None);
    let context = format!("{claims} kid={kid:?} defects={defects:#06x} token={token}");
    if !token_ok {
        match outcome {
            Ok(caller) => panic!("accepted a bad token as {caller:?}: {context}"),
            Err(error) => assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{context}"),
        }
        return;
    }
    match (delegate, outcome) {
        (false, Ok(caller)) => assert_eq!(
            caller,
            Caller {
                user_id: sub.clone(),
                is_service
            },
            "{context}"
        ),
        (true, Ok(caller)) => {
            assert!(is_service, "a non-service token delegated: {context}");
            assert_eq!(Some(caller.user_id.as_str()), delegate_id, "{context}");
            assert!(caller.is_service);
        }
        (false, Err(error)) => panic!("refused a good token: {error:?}: {context}"),
        (true, Err(error)) => {
            let expected = if delegate_id.is_none() {
                StatusCode::BAD_REQUEST
            } else if !is_service {
                StatusCode::FORBIDDEN
            } else {
                assert!(
                    !delegate_id.is_some_and(crate::valid_id),
                    "refused a valid delegate: {error:?}: {context}"
                );
                StatusCode::BAD_REQUEST
            };
            assert_eq!(error.status, expected, "{error:?}: {context}");
        }
    }
}

/// The token with its header replaced by `{"alg":"none"}` (signature kept).
fn with_alg_none(token: &str) -> String {
    let rest = token.split_once('.').map_or("", |(_, rest)| rest);
    format!(
        "{}.{rest}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
    )
}

/// The token with the first character of its signature changed (a full 6-bit change, so
/// the decoded signature differs whatever the base64 engine does with trailing bits).
fn change_signature(token: &str) -> String {
    match token.rsplit_once('.') {
        Some((signed, signature)) if !signature.is_empty() => {
            let first = if signature.starts_with('A') { 'B' } else { 'A' };
            format!("{signed}.{first}{}", &signature[1..])
        }
        _ => format!("{token}A"),
    }
}

fn delegation(input: &mut Input<'_>) {
    let is_service = input.byte() % 2 == 1;
    let value = input.rest();
    let caller = Caller {
        user_id: "migrator".into(),
        is_service,
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    match caller.on_behalf_of(value) {
        Ok(acting) => {
            assert!(is_service, "a user delegated");
            assert!(crate::valid_id(value), "delegated to {value:?}");
            assert_eq!(
                acting,
                Caller {
                    user_id: value.to_owned(),
                    is_service: true
                }
            );
        }
        Err(_) => assert!(!is_service || !crate::valid_id(value), "refused {value:?}"),
    }
}
