//! API keys: `pw-<owner>.<kid>.<secret>`.
//!
//! - `owner` is the owner's user name, base64url without padding, so a directory that cannot
//!   search by attribute (Cognito) finds the owner with one direct lookup;
//! - `kid` is 8 random bytes in hex, unique per owner; `<owner>.<kid>` is the key id;
//! - `secret` is 32 random bytes (256 bits) in base64url without padding.
//!
//! Only SHA-256 of the whole key is stored. A salt or a slow hash adds nothing for a
//! full-entropy 256-bit secret; comparison is constant-time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Visible prefix of every key.
pub const PREFIX: &str = "pw-";

/// A full API key, shown to its owner exactly once. Never printed by `Debug`.
#[derive(Clone)]
pub struct SecretKey(String);

impl SecretKey {
    /// The key text, for the one response that returns it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// A key as presented by a client, split into its parts.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    /// `<owner>.<kid>`.
    pub id: &'a str,
    /// The owner's user name, decoded.
    pub owner: String,
    full: &'a str,
}

impl std::fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A newly generated key: the secret to show once, and what the directory stores.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The full key.
    pub secret: SecretKey,
    /// Key id (`<owner>.<kid>`).
    pub id: String,
    /// SHA-256 of the full key.
    pub hash: [u8; 32],
    /// Last four characters, to help people tell keys apart.
    pub last4: String,
}

/// Why a key could not be generated.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(String);

/// Generates a new key for `owner`.
pub fn generate(owner: &str) -> Result<GeneratedKey, RandomError> {
    let mut kid = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut kid).map_err(|e| RandomError(e.to_string()))?;
    getrandom::fill(&mut secret).map_err(|e| RandomError(e.to_string()))?;
    let id = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(owner.as_bytes()),
        hex::encode(kid)
    );
    let full = format!("{PREFIX}{id}.{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash(&full);
    let last4 = full[full.len() - 4..].to_string();
    Ok(GeneratedKey {
        secret: SecretKey(full),
        id,
        hash,
        last4,
    })
}

/// SHA-256 of a full key.
pub fn hash(full: &str) -> [u8; 32] {
    Sha256::digest(full.as_bytes()).into()
}

/// True when a credential says it is a Pennyworth key (its prefix), whether or not the rest is
/// well-formed.
pub fn claims_to_be_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// Splits a presented key; `None` when it is not shaped like a Pennyworth key.
pub fn parse(full: &str) -> Option<PresentedKey<'_>> {
    let rest = full.strip_prefix(PREFIX)?;
    let mut parts = rest.split('.');
    let owner_b64 = parts.next()?;
    let kid = parts.next()?;
    let secret = parts.next()?;
    if parts.next().is_some()
        || kid.len() != 16
        || !kid.bytes().all(|b| b.is_ascii_hexdigit())
        || secret.len() != 43
    {
        return None;
    }
    let owner = String::from_utf8(URL_SAFE_NO_PAD.decode(owner_b64).ok()?).ok()?;
    if owner.is_empty() {
        return None;
    }
    Some(PresentedKey {
        id: &rest[..owner_b64.len() + 1 + kid.len()],
        owner,
        full,
    })
}

/// The owner named by a key id (`<owner>.<kid>`); `None` when the id is malformed.
pub fn owner_of_id(id: &str) -> Option<String> {
    let (owner_b64, kid) = id.split_once('.')?;
    if kid.len() != 16 || !kid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let owner = String::from_utf8(URL_SAFE_NO_PAD.decode(owner_b64).ok()?).ok()?;
    (!owner.is_empty()).then_some(owner)
}

/// Constant-time check of a presented key against a stored hash.
pub fn matches(presented: &PresentedKey<'_>, stored_hash: &[u8]) -> bool {
    let h = hash(presented.full);
    stored_hash.len() == h.len() && bool::from(h.as_slice().ct_eq(stored_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let k = generate("alice@example.com").unwrap();
        let p = parse(k.secret.expose()).unwrap();
        assert_eq!(p.id, k.id);
        assert_eq!(p.owner, "alice@example.com");
        assert!(matches(&p, &k.hash));
        assert_eq!(owner_of_id(&k.id).as_deref(), Some("alice@example.com"));
        assert_eq!(owner_of_id("nope"), None);
        assert_eq!(k.secret.expose().len(), PREFIX.len() + k.id.len() + 1 + 43);
        assert!(k.secret.expose().ends_with(&k.last4));
    }

    #[test]
    fn tampered_keys_fail() {
        let k = generate("bob").unwrap();
        let mut s = k.secret.expose().to_string();
        let last = s.pop().unwrap();
        s.push(if last == 'A' { 'B' } else { 'A' });
        let p = parse(&s).unwrap();
        assert!(!matches(&p, &k.hash));
        assert!(!matches(&p, &k.hash[..31]));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "pw-",
            "sk-abc",
            "pw-Ym9i.0011223344556677",
            "pw-Ym9i.00112233445566zz.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pw-.0011223344556677.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pw-Ym9i.0011223344556677.short",
            "pw-Ym9i.0011223344556677.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.x",
            "pw-%%%.0011223344556677.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_secret() {
        let k = generate("carol").unwrap();
        let shown = format!("{:?} {:?}", k, parse(k.secret.expose()).unwrap());
        assert!(!shown.contains(&k.secret.expose()[k.secret.expose().len() - 20..]));
    }
}
