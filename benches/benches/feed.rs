//! `feed_delta`: what a follower downloads for one mapping change with 100,000 mappings — the change feed's
//! `versions` event and the mapping delta (`GET /api/v1/mappings/changes`) — beside what it downloaded before
//! deltas (the whole export, `GET /api/v1/mappings/export`). The bodies are serialised exactly as heimdall-http
//! serialises them (serde_json over core's `MappingDelta`/`MappingExport` and the server's `Versions`; HTTP
//! headers, about 200 bytes either way, are not counted). Also the time a follower takes to apply the delta
//! (it rebuilds its snapshot) and to compile the whole export, for comparison.
//!
//! Prints one line: `feed_delta: mappings=100000 bytes_per_change=N full_export_bytes=N`.

use std::time::Instant;

use heimdall_benches::{routes, rules};
use heimdall_core::authorizer::{MappingDelta, MappingExport};
use heimdall_core::mapping::Snapshot;
use heimdall_http::server::Versions;

const MAPPINGS: usize = 100_000;
const TARGET_BYTES: usize = 2048;

fn main() {
    let routes = routes(MAPPINGS);
    let mut all = rules(&routes);
    let before = Snapshot::build(all.clone(), 1_000).expect("no conflicts");
    // One change: a mapping's action, as an admin's PUT makes it (the follower holds version 1,000).
    let changed = all[MAPPINGS / 2].id;
    all[MAPPINGS / 2].action = heimdall_core::model::ActionName::parse("orders:audit").expect("valid");
    let after = Snapshot::build(all, 1_001).expect("no conflicts");

    let export = serde_json::to_vec(&MappingExport::of(&after)).expect("serialisable");
    let delta = MappingDelta::between(before.version(), &after, [changed]);
    let delta_body = serde_json::to_vec(&delta).expect("serialisable");
    let versions = Versions {
        change_version: 5_001,
        mapping_version: after.version(),
        pushed_version: 5_001,
    };
    let event = format!(
        "event: versions\ndata: {}\n\n",
        serde_json::to_string(&versions).expect("serialisable")
    );
    let per_change = delta_body.len() + event.len();

    // The follower's side: the delta applied gives the server's mappings.
    let started = Instant::now();
    let applied = delta.apply(&before).expect("the delta applies");
    let apply_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(applied.checksum(), after.checksum());
    assert_eq!(MappingExport::of(&applied).mappings, MappingExport::of(&after).mappings);
    let started = Instant::now();
    let compiled = MappingExport::from_json(&export)
        .and_then(MappingExport::into_snapshot)
        .expect("readable");
    let full_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(compiled.checksum(), after.checksum());

    eprintln!(
        "feed_delta detail: delta body {} bytes + versions event {} bytes; applying it {apply_ms:.0} ms (a snapshot rebuild); reading and compiling the whole export {full_ms:.0} ms",
        delta_body.len(),
        event.len()
    );
    let verdict = if per_change <= TARGET_BYTES { "met" } else { "MISSED" };
    println!(
        "feed_delta: mappings={MAPPINGS} bytes_per_change={per_change} full_export_bytes={} target=<={TARGET_BYTES} {verdict}",
        export.len()
    );
}
