//! Fuzz target: one DNS message through `tcpsight_l7::dns::parse_message`, its CNAME
//! resolution, and a small `NameCache`.
//!
//! Input: the message (a UDP payload, or one TCP message without its length prefix).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpsight_core::Addr;
use tcpsight_l7::dns::{NameCache, parse_message};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = parse_message(data) else { return };
    for q in &m.questions {
        assert!(q.name.len() <= 255 * 4, "name escaped at most 4x");
    }
    let r = m.resolved();
    assert!(r.len() <= m.answers.len());
    let mut cache = NameCache::new(4);
    let client = Addr::from_v4([10, 0, 0, 1]);
    let mut m = m;
    m.response = true;
    m.rcode = 0;
    cache.insert_message(client, &m, 0);
    assert!(cache.len() <= 4);
    for x in &r {
        // Inserted (unless evicted by a later answer): a lookup never panics.
        let _ = cache.lookup(client, Addr::from(x.addr), 1);
    }
});
