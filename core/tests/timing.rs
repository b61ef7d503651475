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
