//! Opening tokens: HKDF-derived AES-256-GCM / AES-256-SIV subkeys per data key (keys/_aead.py),
//! audited RustCrypto implementations only, plus a bounded cache of tokens that opened.
//!
//! Only keys allowed to decrypt (ACTIVE / DECRYPT_ONLY) are ever given to us, so "unknown kid"
//! and "retired key" both fail here exactly like `Keyring.open_fast`. Every failure is one
//! opaque `None`: callers learn nothing about why.
//!
//! The cache (like keys/_opened_cache.py) maps token text → what it opened to. A token is
//! authenticated ciphertext, so the same text always opens to the same value under the same
//! keys; the cache says what a token contains, never who may read it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use aes_siv::siv::Aes256Siv;
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::token::{self, Mode, B64URL};

pub const GCM_INFO: &[u8] = b"phi-proxy token v1 aes-256-gcm";
pub const SIV_INFO: &[u8] = b"phi-proxy token v1 aes-256-siv";
const NONCE_BYTES: usize = 12;
pub const CACHE_ENTRIES: usize = 16_384;
pub const CACHE_BYTES: usize = 8 << 20;
const ENTRY_OVERHEAD: usize = 200;

/// What a token opened to. (Its class is the one in the token's own header, which the AEAD
/// authenticates: callers read it from the token.)
#[derive(Debug)]
pub struct Opened {
    pub practice: Arc<str>,
    pub plaintext: String,
    /// The plaintext needs no escaping inside a JSON string (the common case): the splice
    /// writes it between quotes as is.
    pub json_plain: bool,
    /// The plaintext itself carries the token prefix (a nested token).
    pub nested: bool,
}

struct Cipher {
    practice: Arc<str>,
    gcm: Aes256Gcm,
    /// SIV needs `&mut self` to decrypt (its CMAC state); one lock per key.
    siv: Mutex<Aes256Siv>,
}

#[derive(Default)]
struct Cache {
    /// Token text (shared with `order`: one allocation per entry) → what it opened to.
    map: ahash::AHashMap<Arc<str>, Arc<Opened>>,
    order: VecDeque<Arc<str>>,
    bytes: usize,
}

/// The decrypting keys of one keyring snapshot.
pub struct Keys {
    by_kid: ahash::AHashMap<Box<str>, Cipher>,
    cache: Mutex<Cache>,
    max_entries: usize,
    max_bytes: usize,
}

/// An error building `Keys` (message names the kid, never material).
#[derive(Debug)]
pub struct KeyError(pub String);

fn hkdf(dek: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), KeyError> {
    Hkdf::<Sha256>::new(None, dek)
        .expand(info, out)
        .map_err(|_| KeyError("key derivation failed".into()))
}

impl Keys {
    pub fn new(entries: Vec<(String, String, Vec<u8>)>) -> Result<Self, KeyError> {
        Self::with_limits(entries, CACHE_ENTRIES, CACHE_BYTES)
    }

    pub fn with_limits(
        entries: Vec<(String, String, Vec<u8>)>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Self, KeyError> {
        let mut by_kid = ahash::AHashMap::new();
        for (kid, practice, dek) in entries {
            if !token::is_kid(kid.as_bytes()) {
                return Err(KeyError(
                    "a key id must be 16 lowercase hex characters".into(),
                ));
            }
            if dek.len() != 32 {
                return Err(KeyError(format!(
                    "key {kid}: a data key must be exactly 32 bytes"
                )));
            }
            let mut gcm_key = [0u8; 32];
            let mut siv_key = [0u8; 64];
            hkdf(&dek, GCM_INFO, &mut gcm_key)?;
            hkdf(&dek, SIV_INFO, &mut siv_key)?;
            let gcm = Aes256Gcm::new_from_slice(&gcm_key)
                .map_err(|_| KeyError(format!("key {kid}: bad GCM key")))?;
            let siv = Aes256Siv::new_from_slice(&siv_key)
                .map_err(|_| KeyError(format!("key {kid}: bad SIV key")))?;
            gcm_key.fill(0);
            siv_key.fill(0);
            let cipher = Cipher {
                practice: practice.into(),
                gcm,
                siv: Mutex::new(siv),
            };
            if by_kid
                .insert(kid.clone().into_boxed_str(), cipher)
                .is_some()
            {
                return Err(KeyError(format!("key id {kid} appears twice")));
            }
        }
        Ok(Keys {
            by_kid,
            cache: Mutex::new(Cache::default()),
            max_entries,
            max_bytes,
        })
    }

    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.map.len()).unwrap_or(0)
    }

    /// `Keyring.open_fast`: the opened token, or None exactly when it raises InvalidToken.
    pub fn open(&self, token: &str) -> Option<Arc<Opened>> {
        if let Some(hit) = self.cache.lock().ok()?.map.get(token) {
            return Some(hit.clone());
        }
        let parsed = token::parse_header(token)?;
        let opened = Arc::new(self.open_parsed(&parsed)?);
        self.remember(token, &opened);
        Some(opened)
    }

    fn open_parsed(&self, p: &token::Parsed<'_>) -> Option<Opened> {
        let cipher = self.by_kid.get(p.kid)?;
        // Strict: no padding, URL-safe alphabet only, canonical trailing bits (as Python).
        let payload = B64URL.decode(p.payload).ok()?;
        if payload.len() < p.min_payload() {
            return None;
        }
        // Decrypt in place in the decoded buffer: one allocation from base64 to plaintext.
        let mut data = payload;
        match p.mode {
            Mode::Random => {
                if data.len() < NONCE_BYTES + 16 {
                    return None;
                }
                let nonce = Nonce::try_from(&data[..NONCE_BYTES]).ok()?;
                data.drain(..NONCE_BYTES);
                cipher.gcm.decrypt_in_place(&nonce, p.aad, &mut data).ok()?;
            }
            Mode::Deterministic => {
                if data.len() < 16 {
                    return None;
                }
                let mut siv = cipher.siv.lock().ok()?;
                siv.decrypt_in_place([p.aad], &mut data).ok()?;
            }
        }
        let plaintext = String::from_utf8(data).ok()?;
        let nested = memchr::memmem::find(plaintext.as_bytes(), token::PREFIX).is_some();
        let json_plain = plaintext
            .bytes()
            .all(|c| c >= 0x20 && c != b'"' && c != b'\\');
        Some(Opened {
            practice: cipher.practice.clone(),
            plaintext,
            json_plain,
            nested,
        })
    }

    /// Remember one opened token; FIFO eviction of the oldest eighth when full.
    fn remember(&self, token: &str, opened: &Arc<Opened>) {
        let cost = token.len() + 2 * opened.plaintext.len() + ENTRY_OVERHEAD;
        if cost > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.map.len() >= self.max_entries || cache.bytes + cost > self.max_bytes {
            let batch = (self.max_entries / 8).max(1);
            loop {
                for _ in 0..batch {
                    let Some(old) = cache.order.pop_front() else {
                        break;
                    };
                    if let Some(o) = cache.map.remove(&old) {
                        cache.bytes -= old.len() + 2 * o.plaintext.len() + ENTRY_OVERHEAD;
                    }
                }
                if cache.order.is_empty()
                    || (cache.map.len() < self.max_entries && cache.bytes + cost <= self.max_bytes)
                {
                    break;
                }
            }
        }
        let key: Arc<str> = token.into();
        // One hash: a token opened twice before either was remembered is kept once.
        if let std::collections::hash_map::Entry::Vacant(slot) = cache.map.entry(key.clone()) {
            slot.insert(opened.clone());
            cache.order.push_back(key);
            cache.bytes += cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::{Aead, Payload};

    const KID: &str = "00112233445566aa";

    fn seal_random(dek: &[u8], class: &str, text: &str, nonce: [u8; 12]) -> String {
        let mut k = [0u8; 32];
        hkdf(dek, GCM_INFO, &mut k).unwrap();
        let gcm = Aes256Gcm::new_from_slice(&k).unwrap();
        let header = format!("phi1.r.{KID}.{class}.");
        let ct = gcm
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: text.as_bytes(),
                    aad: header.as_bytes(),
                },
            )
            .unwrap();
        let mut payload = nonce.to_vec();
        payload.extend(ct);
        header + &B64URL.encode(payload)
    }

    fn seal_siv(dek: &[u8], class: &str, text: &str) -> String {
        let mut k = [0u8; 64];
        hkdf(dek, SIV_INFO, &mut k).unwrap();
        let mut siv = Aes256Siv::new_from_slice(&k).unwrap();
        let header = format!("phi1.d.{KID}.{class}.");
        let ct = siv.encrypt([header.as_bytes()], text.as_bytes()).unwrap();
        header + &B64URL.encode(ct)
    }

    #[test]
    fn opens_and_rejects() {
        let dek = [7u8; 32];
        let keys = Keys::new(vec![(KID.into(), "A".into(), dek.to_vec())]).unwrap();
        let t = seal_random(&dek, "ssn", "123-45-6789", [1; 12]);
        let o = keys.open(&t).unwrap();
        assert_eq!((&*o.practice, &*o.plaintext), ("A", "123-45-6789"));
        assert!(o.json_plain);
        assert_eq!(keys.cached(), 1);
        let d = seal_siv(&dek, "ssn", "x");
        assert_eq!(&*keys.open(&d).unwrap().plaintext, "x");
        // Tampered class (AAD) and payload.
        assert!(keys.open(&t.replacen(".ssn.", ".sso.", 1)).is_none());
        let mut bad = t.clone().into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(keys.open(std::str::from_utf8(&bad).unwrap()).is_none());
        assert!(keys.open("phi1.r.x").is_none());
        let other = Keys::new(vec![("ffffffffffffffff".into(), "A".into(), dek.to_vec())]).unwrap();
        assert!(other.open(&t).is_none());
    }

    #[test]
    fn cache_is_bounded() {
        let dek = [9u8; 32];
        let keys =
            Keys::with_limits(vec![(KID.into(), "A".into(), dek.to_vec())], 16, 1 << 20).unwrap();
        for n in 0..100u8 {
            let t = seal_random(&dek, "ssn", "v", [n; 12]);
            assert!(keys.open(&t).is_some());
            assert!(keys.cached() <= 16);
        }
    }
}
