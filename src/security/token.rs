//! Tokens of the Iceberg REST catalog's OAuth2 endpoint (`POST /iceberg/v1/oauth/tokens`): a
//! reader configured the usual way (`credential=id:secret`) trades a SCRAM user's name and
//! password for a bearer token, which the HTTP door then takes as that user until it expires.
//!
//! `zombi1.<user, base64url>.<expiry, unix seconds>.<HMAC-SHA256, base64url>`, signed with a
//! random key kept in the dynamic configs (`http/token-key`), so that it survives restarts and
//! every broker of a cluster checks the tokens the others issued.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

const PREFIX: &str = "zombi1";

/// The dynamic configs scope and key of the signing key.
pub const KEY_SCOPE: &str = "http/token-key";
pub const KEY_NAME: &str = "hmac-sha256";

/// A new signing key, base64 (as stored).
pub fn new_key() -> Result<String, ring::error::Unspecified> {
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)?;
    Ok(URL_SAFE_NO_PAD.encode(key))
}

fn signing_key(key: &str) -> Option<hmac::Key> {
    Some(hmac::Key::new(hmac::HMAC_SHA256, &URL_SAFE_NO_PAD.decode(key).ok()?))
}

/// A token for `user` valid until `expires_s` (unix seconds).
pub fn issue(key: &str, user: &str, expires_s: i64) -> Option<String> {
    let payload = format!("{PREFIX}.{}.{expires_s}", URL_SAFE_NO_PAD.encode(user));
    let signature = hmac::sign(&signing_key(key)?, payload.as_bytes());
    Some(format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
}

/// Whether `token` looks like one of ours (so that a JWT is not checked here).
pub fn is_ours(token: &str) -> bool {
    token.starts_with(PREFIX) && token[PREFIX.len()..].starts_with('.')
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
}

/// The user of a valid, unexpired `token` signed with `key`.
pub fn verify(key: &str, token: &str, now_s: i64) -> Result<String, TokenError> {
    let (payload, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
    let key = signing_key(key).ok_or(TokenError::Signature)?;
    hmac::verify(&key, payload.as_bytes(), &signature).map_err(|_| TokenError::Signature)?;
    let mut parts = payload.split('.');
    let (Some(PREFIX), Some(user), Some(expires), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expires: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    if expires <= now_s {
        return Err(TokenError::Expired);
    }
    let user = URL_SAFE_NO_PAD.decode(user).map_err(|_| TokenError::Malformed)?;
    String::from_utf8(user).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_user_until_they_expire_and_only_with_their_key() {
        let key = new_key().unwrap();
        let token = issue(&key, "alice.o'hara", 1_000).unwrap();
        assert!(is_ours(&token) && !is_ours("eyJhbGciOiJFUzI1NiJ9.e30.sig"));
        assert_eq!(verify(&key, &token, 999), Ok("alice.o'hara".to_string()));
        assert_eq!(verify(&key, &token, 1_000), Err(TokenError::Expired));
        assert_eq!(verify(&new_key().unwrap(), &token, 999), Err(TokenError::Signature));
        // Another user or a later expiry under the same signature.
        let (payload, signature) = token.rsplit_once('.').unwrap();
        let forged = payload.replace(&URL_SAFE_NO_PAD.encode("alice.o'hara"), &URL_SAFE_NO_PAD.encode("admin"));
        assert_eq!(verify(&key, &format!("{forged}.{signature}"), 999), Err(TokenError::Signature));
        let later = payload.replace(".1000", ".9999");
        assert_eq!(verify(&key, &format!("{later}.{signature}"), 999), Err(TokenError::Signature));
        assert_eq!(verify(&key, "zombi1.x", 0), Err(TokenError::Malformed));
    }
}
