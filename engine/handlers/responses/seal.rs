//! Sealing reasoning for the client: a `reasoning` output item carries what Bedrock needs to
//! continue a thinking turn (the reasoning text and its signature, or redacted data) in its
//! `encrypted_content`, encrypted and authenticated with a key only the gateway holds, so
//! the client can neither read nor alter it.
//!
//! Construction (encrypt-then-MAC, HMAC-SHA256 throughout): from the master key, an
//! encryption key `HMAC(k, "enc")` and a MAC key `HMAC(k, "mac")`; a random 16-byte nonce;
//! the keystream block `i` is `HMAC(enc, nonce || i)`; the tag is `HMAC(mac, version ||
//! nonce || ciphertext)`. The sealed text is base64url of `version || nonce || ciphertext ||
//! tag`.
//!
//! The master key is `PENNYWORTH_REASONING_KEY` (any secret text of at least 32 characters,
//! hashed with SHA-256) when set, else 32 random bytes drawn once per process: then sealed
//! reasoning does not survive a restart or reach another instance, and such items are
//! dropped from the next request (the model continues without its earlier reasoning).

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

const VERSION: u8 = 1;
const NONCE: usize = 16;
const TAG: usize = 32;
const BLOCK: usize = 64;

/// The environment variable that holds a stable sealing key.
pub const KEY_ENV: &str = "PENNYWORTH_REASONING_KEY";

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

struct Keys {
    enc: [u8; 32],
    mac: [u8; 32],
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let master: [u8; 32] = match std::env::var(KEY_ENV) {
            Ok(s) if s.len() >= 32 => Sha256::digest(s.as_bytes()).into(),
            other => {
                if other.is_ok() {
                    tracing::warn!(
                        "{KEY_ENV} is shorter than 32 characters and is ignored; a random key is used"
                    );
                }
                let mut b = [0u8; 32];
                if getrandom::fill(&mut b).is_err() {
                    // No randomness: a key from the clock and address space still differs
                    // per process; sealed reasoning stays tamper-evident to anyone without it.
                    let t = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default();
                    let local = 0u8;
                    let addr = std::ptr::addr_of!(local) as usize;
                    b = Sha256::digest(format!("{t}:{addr}").as_bytes()).into();
                }
                b
            }
        };
        Keys {
            enc: hmac(&master, &[b"enc"]),
            mac: hmac(&master, &[b"mac"]),
        }
    })
}

fn xor_stream(key: &[u8], nonce: &[u8], data: &mut [u8]) {
    for (i, chunk) in data.chunks_mut(32).enumerate() {
        let block = hmac(key, &[nonce, &(i as u64).to_be_bytes()]);
        for (b, k) in chunk.iter_mut().zip(block) {
            *b ^= k;
        }
    }
}

/// Seals `plain` into opaque text.
pub fn seal(plain: &[u8]) -> String {
    let k = keys();
    let mut nonce = [0u8; NONCE];
    let _ = getrandom::fill(&mut nonce);
    let mut body = plain.to_vec();
    xor_stream(&k.enc, &nonce, &mut body);
    let tag = hmac(&k.mac, &[&[VERSION], &nonce, &body]);
    let mut out = Vec::with_capacity(1 + NONCE + body.len() + TAG);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
}

/// Opens text [`seal`] made; `None` when it was altered or sealed with another key.
pub fn open(sealed: &str) -> Option<Vec<u8>> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed.trim())
        .ok()?;
    if raw.len() < 1 + NONCE + TAG || raw[0] != VERSION {
        return None;
    }
    let (head, tag) = raw.split_at(raw.len() - TAG);
    let nonce = &head[1..1 + NONCE];
    let k = keys();
    let expected = hmac(&k.mac, &[&[VERSION], nonce, &head[1 + NONCE..]]);
    if !bool::from(expected.ct_eq(tag)) {
        return None;
    }
    let mut body = head[1 + NONCE..].to_vec();
    xor_stream(&k.enc, nonce, &mut body);
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn round_trip_and_tamper() {
        let text = "the reasoning and its signature".repeat(5);
        let s = seal(text.as_bytes());
        assert!(!s.contains("reasoning"));
        assert_eq!(open(&s).as_deref(), Some(text.as_bytes()));
        assert_ne!(seal(text.as_bytes()), s, "a fresh nonce each time");
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&s)
            .unwrap();
        raw[20] ^= 1;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(open(&forged), None);
        assert_eq!(open("not sealed"), None);
        assert_eq!(open(""), None);
    }
}
