//! Rough timings of the scan and the walk without Python (run:
//! `cargo test --release --test timing -- --ignored --nocapture`).

use std::time::Instant;

use phi_proxy_core::keys::Keys;
use phi_proxy_core::masks::Mask;
use phi_proxy_core::policy::{Policy, PolicySpec};
use phi_proxy_core::walk::Host;
use phi_proxy_core::{scan, transform, Stop};

struct NoHost;

impl Host for NoHost {
    fn normalize(&mut self, name: &str) -> Result<String, Stop> {
        Ok(name.to_lowercase())
    }
    fn facts(&mut self, _: &str) -> Result<Option<(String, bool)>, Stop> {
        Ok(None)
    }
    fn allows(&mut self, _: &str, _: &str) -> Result<bool, Stop> {
        Ok(false)
    }
}

fn body() -> Vec<u8> {
    let mut s = String::from("{\"items\":[");
    for i in 0..310 {
        if i > 0 {
            s.push(',');
        }
        s += &format!(
            "{{\"name\":\"item {i}\",\"price\":{}.25,\"tags\":[\"a\",\"b\",\"c\"],\"active\":true,\
             \"description\":\"{}\",\"id\":{i}}}",
            i,
            "plain text without anything secret ".repeat(2)
        );
    }
    s += "]}";
    s.into_bytes()
}

#[test]
#[ignore]
fn timing_no_phi() {
    let body = body();
    let policy = Policy::new(PolicySpec {
        key_classes: vec![("ssn".into(), "ssn".into())],
        practice_names: vec!["practiceid".into()],
        id_names: vec!["id".into()],
        paths: vec![],
        root_filters: vec![],
        masks: vec![],
        default_mask: Mask::fixed("[redacted]"),
        max_depth: 64,
        fold_separators: true,
    })
    .unwrap();
    let keys = Keys::new(vec![]).unwrap();
    let n = 2000;
    let t = Instant::now();
    let mut nodes = 0;
    for _ in 0..n {
        nodes = scan::scan(&body, 64).unwrap().len();
    }
    let scan_us = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    let t = Instant::now();
    for _ in 0..n {
        let r = transform(&body, &policy, &keys, None, &mut NoHost)
            .ok()
            .unwrap();
        assert!(r.out.is_none());
    }
    let all_us = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    println!(
        "{} bytes, {nodes} nodes: scan {scan_us:.1} us, scan+walk {all_us:.1} us",
        body.len()
    );
}

#[test]
#[ignore]
fn timing_open() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};
    use base64::Engine;
    use phi_proxy_core::token::B64URL;
    let dek = [7u8; 32];
    let mut k = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(None, &dek)
        .expand(phi_proxy_core::keys::GCM_INFO, &mut k)
        .unwrap();
    let gcm = Aes256Gcm::new_from_slice(&k).unwrap();
    let kid = "00112233445566aa";
    let text = "hypertension ".repeat(15);
    let tokens: Vec<String> = (0..20000u32)
        .map(|n| {
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&n.to_le_bytes());
            let header = format!("phi1.r.{kid}.history.");
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
        })
        .collect();
    let keys = Keys::new(vec![(kid.into(), "A".into(), dek.to_vec())]).unwrap();
    let t = Instant::now();
    for tok in &tokens {
        assert!(keys.open(tok).is_some());
    }
    let cold = t.elapsed().as_secs_f64() / tokens.len() as f64 * 1e6;
    let keys = Keys::new(vec![(kid.into(), "A".into(), dek.to_vec())]).unwrap();
    let t = Instant::now();
    for tok in &tokens[..5000] {
        assert!(keys.open(tok).is_some());
    }
    let fresh = t.elapsed().as_secs_f64() / 5000.0 * 1e6;
    let t = Instant::now();
    for tok in &tokens[..5000] {
        assert!(keys.open(tok).is_some());
    }
    let warm = t.elapsed().as_secs_f64() / 5000.0 * 1e6;
    let t = Instant::now();
    for tok in &tokens {
        let p = phi_proxy_core::token::parse(tok).unwrap();
        let payload = B64URL.decode(p.payload).unwrap();
        let nonce = Nonce::try_from(&payload[..12]).unwrap();
        gcm.decrypt(
            &nonce,
            Payload {
                msg: &payload[12..],
                aad: p.aad,
            },
        )
        .unwrap();
    }
    let raw = t.elapsed().as_secs_f64() / tokens.len() as f64 * 1e6;
    println!(
        "open GCM {} B: cold {cold:.2} us (with evictions), {fresh:.2} us (without), warm {warm:.2} us, \
         parse+b64+decrypt alone {raw:.2} us",
        text.len()
    );
}

/// The audit segment check over a real trail file: `PHI_AUDIT_TRAIL=path cargo test --release
/// --test timing audit -- --ignored --nocapture`.
#[test]
#[ignore]
fn audit_segment_timing() {
    use phi_proxy_core::audit::{check_segment, Options};
    let Ok(path) = std::env::var("PHI_AUDIT_TRAIL") else {
        return;
    };
    let mut data = std::fs::read(path).unwrap();
    data.truncate(25_000_000);
    let end = data.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    data.truncate(end);
    let lines = data.iter().filter(|b| **b == b'\n').count();
    for key in [Some(&b"k"[..]), None] {
        let options = Options {
            key,
            check_signatures: false,
            at_file_start: true,
            readable: &[1, 2],
            sink: None,
        };
        let begun = Instant::now();
        let got = check_segment(&data, &options);
        let spent = begun.elapsed();
        println!(
            "key {}: {} lines, accepted {}, {:.2} us/line",
            key.is_some(),
            lines,
            got.is_some(),
            spent.as_secs_f64() * 1e6 / lines as f64
        );
    }
}
