//! Bearer JWTs, verified here. The user is the `sub` claim. HS256 with the service's own
//! secret (local tokens, service tokens) and, when configured, the public keys of an
//! identity provider's JWKS (RS256/PS256/ES256/EdDSA…), chosen by the token's `kid`.

use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::record::validate_id;

/// HMAC-SHA256 keyed with `key`, shared by everything the server signs (list cursors,
/// upload URLs).
pub fn keyed_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Scope that lets a token act for any user (the migration tooling needs it).
pub const SERVICE_SCOPE: &str = "images:service";

/// The header a service token names the user it acts for with.
pub const ON_BEHALF_OF: &str = "x-on-behalf-of";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
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

impl Caller {
    /// The same caller acting for `user_id` (`X-On-Behalf-Of`): only service callers may.
    pub fn on_behalf_of(&self, user_id: &str) -> Result<Caller, AuthError> {
        if !self.is_service {
            return Err(AuthError::NotDelegable);
        }
        let user_id = validate_id(ON_BEHALF_OF, user_id)
            .map_err(|e| AuthError::BadDelegate(e.to_string()))?;
        Ok(Caller {
            user_id,
            is_service: true,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing Authorization: Bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("only service tokens (scope {SERVICE_SCOPE}) may act on behalf of another user")]
    NotDelegable,
    #[error("{0}")]
    BadDelegate(String),
    #[error("unusable key set: {0}")]
    KeySet(String),
}

/// One public key from a JWKS.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_keys: Vec<PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    /// Whether the identity provider may grant the service scope (its JWKS-signed tokens and
    /// the trusted authorizer's claims); otherwise only the service's own tokens can.
    idp_service_scope: bool,
}

impl Authenticator {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Authenticator {
        Authenticator {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            public_keys: Vec::new(),
            issuer: None,
            audience: None,
            idp_service_scope: false,
        }
    }

    /// Let the identity provider grant the `images:service` scope
    /// (`IMGSVC_JWKS_SERVICE_SCOPE`): off by default, because whoever administers the
    /// provider (or a misconfigured client there) would otherwise hold every user's images.
    #[must_use]
    pub fn trusting_jwks_service_scope(mut self, trust: bool) -> Authenticator {
        self.idp_service_scope = trust;
        self
    }

    /// Whether the identity provider's service scope counts (see
    /// `trusting_jwks_service_scope`).
    pub fn trusts_jwks_service_scope(&self) -> bool {
        self.idp_service_scope
    }

    /// Also accept tokens signed by the keys of `jwks` (an identity provider's key set),
    /// whose `iss`/`aud` must match `issuer`/`audience` when given. Keys are matched by
    /// `kid` and by algorithm: an RSA key never verifies an HMAC token (no algorithm
    /// confusion). Symmetric (`oct`) keys are refused: a JWKS is for public keys.
    pub fn with_jwks(
        mut self,
        jwks: &JwkSet,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Authenticator, AuthError> {
        for jwk in &jwks.keys {
            let algorithm = match (jwk.common.key_algorithm, &jwk.algorithm) {
                (_, AlgorithmParameters::OctetKey(_)) => {
                    return Err(AuthError::KeySet("symmetric keys are not allowed".into()));
                }
                (Some(declared), _) => declared
                    .to_string()
                    .parse::<Algorithm>()
                    .map_err(|e| AuthError::KeySet(format!("{declared}: {e}")))?,
                (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    ref other => {
                        return Err(AuthError::KeySet(format!("curve {other:?}")));
                    }
                },
                (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
            };
            if matches!(
                algorithm,
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
            ) {
                return Err(AuthError::KeySet("symmetric keys are not allowed".into()));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::KeySet(e.to_string()))?;
            self.public_keys.push(PublicKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        self.issuer = issuer;
        self.audience = audience;
        Ok(self)
    }

    fn validation(algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation
    }

    /// Verify an `Authorization` header value: `Bearer`, in any case (RFC 9110 11.1), then
    /// one or more spaces and the token.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        let token = token.trim();
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let own_token = header.alg == Algorithm::HS256;
        let claims = if own_token {
            jsonwebtoken::decode::<Claims>(
                token,
                &self.decoding,
                &Self::validation(Algorithm::HS256),
            )
            .map_err(invalid)?
            .claims
        } else {
            self.verify_public(token, &header)?
        };
        let user_id =
            validate_id("sub", &claims.sub).map_err(|e| AuthError::Invalid(format!("sub: {e}")))?;
        let has_service_scope = claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|scope| scope == SERVICE_SCOPE));
        Ok(Caller {
            user_id,
            is_service: has_service_scope && (own_token || self.idp_service_scope),
        })
    }

    /// A token signed by one of the JWKS keys: the key with its `kid` (or, without a
    /// `kid`, any key of its algorithm).
    fn verify_public(&self, token: &str, header: &Header) -> Result<Claims, AuthError> {
        let mut validation = Self::validation(header.alg);
        // A configured issuer or audience must be present, not just match when present.
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            validation.validate_aud = true;
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let mut last = AuthError::Invalid(format!("no configured key for {:?}", header.alg));
        let candidates = self.public_keys.iter().filter(|key| {
            key.algorithm == header.alg
                && (header.kid.is_none() || key.kid.as_deref() == header.kid.as_deref())
        });
        for candidate in candidates {
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = AuthError::Invalid(e.to_string()),
            }
        }
        Err(last)
    }

    /// Issue an HS256 token for `user_id`, valid for `ttl_seconds` from `now` (Unix
    /// seconds).
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

    const JWKS: &str = include_str!("../tests/fixtures/test-jwks.json");
    const PRIVATE_PEM: &[u8] = include_bytes!("../tests/fixtures/test-rsa-private.pem");

    fn rs256(kid: Option<&str>, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_rsa_pem(PRIVATE_PEM).unwrap();
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, claims, &key).unwrap()
        )
    }

    #[test]
    fn jwks_keys_verify_rs256_tokens_with_issuer_and_audience() {
        let jwks: JwkSet = serde_json::from_str(JWKS).unwrap();
        let auth = Authenticator::hs256(b"secret-one")
            .with_jwks(
                &jwks,
                Some("https://idp.example".into()),
                Some("imgsvc".into()),
            )
            .unwrap();
        let exp = now() + 600;
        let good = serde_json::json!({"sub": "carol", "exp": exp, "iss": "https://idp.example", "aud": "imgsvc"});
        let caller = auth
            .verify(Some(&rs256(Some("test-key-1"), &good)))
            .unwrap();
        assert_eq!(caller.user_id, "carol");
        assert!(!caller.is_service);
        // Without a kid, any key of the algorithm is tried.
        assert!(auth.verify(Some(&rs256(None, &good))).is_ok());
        // An unknown kid, another issuer or audience, an expired token: refused.
        assert!(auth.verify(Some(&rs256(Some("other"), &good))).is_err());
        for (field, value) in [
            ("iss", serde_json::json!("https://evil.example")),
            ("aud", serde_json::json!("someone-else")),
            ("exp", serde_json::json!(now() - 3600)),
        ] {
            let mut claims = good.clone();
            claims[field] = value;
            assert!(
                auth.verify(Some(&rs256(Some("test-key-1"), &claims)))
                    .is_err(),
                "{field}"
            );
        }
        // A configured issuer or audience is required, not only checked when present.
        for field in ["iss", "aud"] {
            let mut claims = good.clone();
            if let Some(object) = claims.as_object_mut() {
                object.remove(field);
            }
            assert!(
                auth.verify(Some(&rs256(Some("test-key-1"), &claims)))
                    .is_err(),
                "token without {field} accepted"
            );
        }
        // The service's own HS256 tokens still verify beside the JWKS.
        let local = auth.issue("alice", false, now(), 60).unwrap();
        assert!(auth.verify(Some(&format!("Bearer {local}"))).is_ok());
        // Algorithm confusion: an HS256 token keyed with the RSA public key's bytes is not
        // verified against that key.
        let public_n = jwks.keys[0].clone();
        let AlgorithmParameters::RSA(rsa) = &public_n.algorithm else {
            panic!("fixture is RSA")
        };
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good,
            &EncodingKey::from_secret(rsa.n.as_bytes()),
        )
        .unwrap();
        assert!(auth.verify(Some(&format!("Bearer {forged}"))).is_err());
        // Without a JWKS, RS256 tokens are refused.
        let plain = Authenticator::hs256(b"secret-one");
        assert!(
            plain
                .verify(Some(&rs256(Some("test-key-1"), &good)))
                .is_err()
        );
    }

    fn idp() -> Authenticator {
        let jwks: JwkSet = serde_json::from_str(JWKS).unwrap();
        Authenticator::hs256(b"secret-one")
            .with_jwks(&jwks, Some("https://idp.example".into()), None)
            .unwrap()
    }

    /// Issue 17 item 10: `nbf` was not enforced (RFC 7519 4.1.5).
    #[test]
    fn tokens_not_yet_valid_are_refused() {
        let auth = idp();
        let claims = |nbf: u64| serde_json::json!({"sub": "carol", "exp": now() + 7200, "nbf": nbf, "iss": "https://idp.example"});
        let early = auth.verify(Some(&rs256(Some("test-key-1"), &claims(now() + 3600))));
        assert!(matches!(early, Err(AuthError::Invalid(_))), "{early:?}");
        // Within the 30 s leeway, and in the past: fine.
        for nbf in [now() + 5, now() - 60] {
            assert!(
                auth.verify(Some(&rs256(Some("test-key-1"), &claims(nbf))))
                    .is_ok()
            );
        }
        // The service's own tokens too.
        let local = Authenticator::hs256(b"secret-one");
        let early = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "alice", "exp": now() + 7200, "nbf": now() + 3600}),
            &EncodingKey::from_secret(b"secret-one"),
        )
        .unwrap();
        assert!(local.verify(Some(&format!("Bearer {early}"))).is_err());
    }

    /// Issue 17 item 10: the scheme is case-insensitive (RFC 9110 11.1), and separated from
    /// the token by one or more spaces.
    #[test]
    fn the_scheme_is_case_insensitive() {
        let auth = Authenticator::hs256(b"secret-one");
        let token = auth.issue("alice", false, now(), 60).unwrap();
        for header in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("BEARER {token}"),
            format!("bEaReR   {token} "),
        ] {
            assert_eq!(
                auth.verify(Some(&header)).unwrap().user_id,
                "alice",
                "{header}"
            );
        }
        for header in [
            format!("Basic {token}"),
            format!("Bearer{token}"),
            "Bearer".into(),
        ] {
            assert!(auth.verify(Some(&header)).is_err(), "{header}");
        }
    }

    /// Issue 17 item 12: an identity provider's token with the service scope became a
    /// service caller. That scope is only honoured on the service's own tokens, unless the
    /// deployment says the provider may grant it.
    #[test]
    fn the_service_scope_from_a_jwks_token_needs_configuration() {
        let claims = serde_json::json!({
            "sub": "carol", "exp": now() + 600, "iss": "https://idp.example",
            "scope": "openid images:service"
        });
        let token = rs256(Some("test-key-1"), &claims);
        let caller = idp().verify(Some(&token)).unwrap();
        assert_eq!(caller.user_id, "carol");
        assert!(!caller.is_service);
        let trusting = idp().trusting_jwks_service_scope(true);
        assert!(trusting.verify(Some(&token)).unwrap().is_service);
        // The service's own service tokens are services either way.
        let own = idp().issue("migrator", true, now(), 60).unwrap();
        assert!(
            idp()
                .verify(Some(&format!("Bearer {own}")))
                .unwrap()
                .is_service
        );
    }

    #[test]
    fn jwks_with_symmetric_keys_is_refused() {
        let jwks: JwkSet = serde_json::from_str(
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"k"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            Authenticator::hs256(b"x").with_jwks(&jwks, None, None),
            Err(AuthError::KeySet(_))
        ));
    }

    #[test]
    fn only_services_act_on_behalf_of_others() {
        let service = Caller {
            user_id: "migrator".into(),
            is_service: true,
        };
        let acting = service.on_behalf_of("alice").unwrap();
        assert_eq!(acting.user_id, "alice");
        assert!(service.on_behalf_of("../alice").is_err());
        let user = Caller {
            user_id: "bob".into(),
            is_service: false,
        };
        assert_eq!(user.on_behalf_of("alice"), Err(AuthError::NotDelegable));
    }
}
