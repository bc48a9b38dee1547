//! Resolves the resolver benchmark's request mix in a loop, for a profiler (callgrind counts instructions,
//! which stay stable on a noisy machine where criterion's medians move):
//!
//! ```sh
//! cargo build --release -p heimdall-benches --example resolve_profile
//! valgrind --tool=callgrind target/release/examples/resolve_profile 100 200000 compiled
//! ```
//!
//! Arguments: the table size (100), the number of requests (200,000), and which resolver: `compiled`
//! (Heimdall's snapshot) or `matchit` (the comparison router of `--bench resolve`, built the same way).

use std::hint::black_box;

use heimdall_benches::{MatchitRouters, REQUESTS, requests, routes, rules};
use heimdall_core::mapping::{Resolution, Snapshot};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let which = args.next().unwrap_or_else(|| "compiled".to_owned());
    let routes = routes(n);
    let reqs = requests(&routes);
    let mut found = 0usize;
    match which.as_str() {
        "compiled" => {
            let snapshot = Snapshot::build(rules(&routes), 1).expect("no conflicts");
            for i in 0..count {
                let (m, p) = &reqs[i % REQUESTS];
                found += usize::from(matches!(
                    snapshot.resolve(black_box(m), black_box(p)),
                    Resolution::Matched(_)
                ));
            }
        }
        "matchit" => {
            let (router, _) = MatchitRouters::new(&routes);
            for i in 0..count {
                let (m, p) = &reqs[i % REQUESTS];
                found += usize::from(router.resolve(black_box(m), black_box(p)) != 0);
            }
        }
        other => panic!("unknown resolver {other}: compiled or matchit"),
    }
    println!("{which}/{n}: {count} requests, {found} matched");
}
