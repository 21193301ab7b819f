//! Bearer JWTs: HS256, verified here. The user is the `sub` claim.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::record::validate_id;

/// Scope that lets a token act for any user (the migration tooling needs it).
pub const SERVICE_SCOPE: &str = "images:service";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub is_service: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing Authorization: Bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Authenticator {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Authenticator {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Verify an `Authorization` header value.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let user_id = validate_id("sub", &data.claims.sub)
            .map_err(|e| AuthError::Invalid(format!("sub: {e}")))?;
        let is_service = data
            .claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|scope| scope == SERVICE_SCOPE));
        Ok(Caller {
            user_id,
            is_service,
        })
    }

    /// Issue a token for `user_id`, valid for `ttl_seconds` from `now` (Unix seconds).
    pub fn issue(
        &self,
        user_id: &str,
        service: bool,
        now: u64,
        ttl_seconds: u64,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            sub: user_id.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl_seconds),
            scope: service.then(|| SERVICE_SCOPE.to_owned()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let auth = Authenticator::hs256(b"secret-one");
        let token = auth.issue("alice", false, now(), 60).unwrap();
        let caller = auth.verify(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(caller.user_id, "alice");
        assert!(!caller.is_service);

        let other = Authenticator::hs256(b"secret-two");
        assert!(matches!(
            other.verify(Some(&format!("Bearer {token}"))),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(auth.verify(None), Err(AuthError::Missing));
        assert_eq!(auth.verify(Some(&token)), Err(AuthError::Missing));
        let expired = auth.issue("alice", false, now() - 3600, 60).unwrap();
        assert!(auth.verify(Some(&format!("Bearer {expired}"))).is_err());
        let escaping = auth.issue("../bob", false, now(), 60).unwrap();
        assert!(auth.verify(Some(&format!("Bearer {escaping}"))).is_err());
        let service = auth.issue("migrator", true, now(), 60).unwrap();
        assert!(
            auth.verify(Some(&format!("Bearer {service}")))
                .unwrap()
                .is_service
        );
    }
}
