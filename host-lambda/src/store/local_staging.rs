//! Local staging for the two-step upload: URLs to this server's own `PUT /staging/{key}`
//! (the stand-in for presigned S3 PUTs), signed with [`UrlSigner`].

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{StagedPut, StoreError, UploadStaging};
use crate::auth::keyed_mac;

/// Signs and checks the local server's upload URLs: HMAC-SHA256 over everything a
/// `StagedPut` binds (key, expiry, exact size, content type).
pub struct UrlSigner {
    key: Vec<u8>,
}

impl UrlSigner {
    pub fn new(key: &[u8]) -> UrlSigner {
        UrlSigner { key: key.to_vec() }
    }

    fn mac(&self, put: &StagedPut) -> Hmac<Sha256> {
        let mut mac = keyed_mac(&self.key);
        mac.update(
            format!(
                "PUT\n{}\n{}\n{}\n{}",
                put.key, put.expires_at, put.size_bytes, put.content_type
            )
            .as_bytes(),
        );
        mac
    }

    pub fn sign(&self, put: &StagedPut) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(put).finalize().into_bytes())
    }

    pub fn verify(&self, put: &StagedPut, signature: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(signature)
            .is_ok_and(|tag| self.mac(put).verify_slice(&tag).is_ok())
    }
}

/// Local staging: URLs to this server's `PUT /staging/{key}`, signed with `UrlSigner`.
pub struct LocalStaging {
    pub base_url: String,
    pub signer: std::sync::Arc<UrlSigner>,
}

#[async_trait]
impl UploadStaging for LocalStaging {
    async fn presign_put(&self, put: &StagedPut) -> Result<String, StoreError> {
        let signature = self.signer.sign(put);
        Ok(format!(
            "{}/staging/{}?expires={}&size={}&sig={signature}",
            self.base_url.trim_end_matches('/'),
            put.key,
            put.expires_at,
            put.size_bytes,
        ))
    }
}
