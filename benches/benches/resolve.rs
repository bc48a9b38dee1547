//! Mapping resolution: Heimdall's compiled snapshot against a linear scan of regexes (the spec's design)
//! and against the matchit router, on a generated route set shaped like a large public REST API.
//!
//! Benchmark ids: `resolve/compiled/<N>`, `resolve/compiled_by_kind/{route_hit,regex_hit,miss}/<N>` (the
//! same requests split by outcome), `resolve/naive_linear/<N>` (N ≤ 10,000), `resolve/matchit/<N>`,
//! `build/compiled/<N>` (from parsed rules) and `build/parse_and_compile/<N>` (from pattern text), and
//! `resolve/worst_case`: the most expensive request the limits allow (a path of `MAX_PATH_LEN` bytes
//! against the most and largest regular expressions a snapshot may hold, all tried and all failing), and
//! `resolve/worst_case/<K>`: the same with only K (larger) expressions per method (K = 1, the most
//! expensive shape found: the one automaton is as large, and a walk over it meets more distinct states).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use heimdall_benches::{MatchitRouters, REQUESTS, Route, requests, routes, rules, worst_case};
use heimdall_core::mapping::{Method, Resolution, Snapshot};
use regex::Regex;

/// Route-set sizes for resolving.
const SIZES: [usize; 4] = [100, 1_000, 10_000, 100_000];
/// Largest size the linear scan is run at.
const NAIVE_MAX: usize = 10_000;
/// Expressions per method in the second worst-case benchmark.
const WORST_CASE_FEWEST: usize = 1;
/// Route-set sizes for building.
const BUILD_SIZES: [usize; 2] = [10_000, 100_000];

fn compiled_id(r: Resolution<'_>) -> i64 {
    match r {
        Resolution::Matched(m) => m.id(),
        Resolution::NoMatch => 0,
        Resolution::Rejected(_) => -1,
    }
}

/// The spec's design: every mapping compiled to an anchored regex, scanned in order.
struct NaiveLinear {
    rules: Vec<(Method, Regex, i64)>,
}

impl NaiveLinear {
    fn new(routes: &[Route]) -> Self {
        let rules = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let source = match r.pattern.strip_prefix('~') {
                    Some(re) => format!("^(?:{re})$"),
                    None => {
                        let mut re = String::from("^");
                        for seg in r.pattern[1..].split('/') {
                            match seg {
                                "**" => re.push_str("(/.*)?"),
                                s if s.starts_with(':') || s == "*" => re.push_str("/[^/]+"),
                                s => {
                                    re.push('/');
                                    re.push_str(&regex::escape(s));
                                }
                            }
                        }
                        re.push('$');
                        re
                    }
                };
                (
                    Method::parse(r.method).expect("method"),
                    Regex::new(&source).expect("regex"),
                    i as i64 + 1,
                )
            })
            .collect();
        NaiveLinear { rules }
    }

    fn resolve(&self, method: &str, raw: &str) -> i64 {
        let path = raw.split('?').next().unwrap_or(raw);
        self.rules
            .iter()
            .find(|(m, re, _)| (*m == Method::Any || m.as_str() == method) && re.is_match(path))
            .map_or(0, |(_, _, id)| *id)
    }
}

fn resolve_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    for n in SIZES {
        let routes = routes(n);
        let reqs = requests(&routes);
        let snapshot = Snapshot::build(rules(&routes), 1).expect("no conflicts");
        let hits = reqs
            .iter()
            .filter(|(m, p)| matches!(snapshot.resolve(m, p), Resolution::Matched(_)))
            .count();
        eprintln!("resolve/{n}: {} requests, {hits} resolve to a mapping", reqs.len());

        group.bench_with_input(BenchmarkId::new("compiled", n), &reqs, |b, reqs| {
            let mut i = 0;
            b.iter(|| {
                let (m, p) = &reqs[i % REQUESTS];
                i += 1;
                compiled_id(snapshot.resolve(black_box(m), black_box(p)))
            })
        });

        // The same requests split by what they resolve to, to see where the time goes.
        let kind = |(m, p): &(&'static str, String)| match snapshot.resolve(m, p) {
            Resolution::Matched(r) if r.pattern().is_regex() => "regex_hit",
            Resolution::Matched(_) => "route_hit",
            _ => "miss",
        };
        for k in ["route_hit", "regex_hit", "miss"] {
            let subset: Vec<(&'static str, String)> = reqs.iter().filter(|r| kind(r) == k).cloned().collect();
            group.bench_with_input(
                BenchmarkId::new(format!("compiled_by_kind/{k}"), n),
                &subset,
                |b, subset| {
                    let mut i = 0;
                    b.iter(|| {
                        let (m, p) = &subset[i % subset.len()];
                        i += 1;
                        compiled_id(snapshot.resolve(black_box(m), black_box(p)))
                    })
                },
            );
        }

        if n <= NAIVE_MAX {
            let naive = NaiveLinear::new(&routes);
            group.bench_with_input(BenchmarkId::new("naive_linear", n), &reqs, |b, reqs| {
                let mut i = 0;
                b.iter(|| {
                    let (m, p) = &reqs[i % REQUESTS];
                    i += 1;
                    naive.resolve(black_box(m), black_box(p))
                })
            });
        }

        let (matchit, skipped) = MatchitRouters::new(&routes);
        eprintln!("resolve/matchit/{n}: {skipped} of {n} routes not expressible");
        group.bench_with_input(BenchmarkId::new("matchit", n), &reqs, |b, reqs| {
            let mut i = 0;
            b.iter(|| {
                let (m, p) = &reqs[i % REQUESTS];
                i += 1;
                matchit.resolve(black_box(m), black_box(p))
            })
        });
    }

    for per_method in [usize::MAX, WORST_CASE_FEWEST] {
        let (worst_rules, worst_paths) = worst_case(per_method);
        let regexes = worst_rules.len();
        let example = worst_rules.first().map(|r| r.pattern.to_string()).unwrap_or_default();
        let snapshot = Snapshot::build(worst_rules, 1).expect("within the limits");
        for p in &worst_paths {
            assert!(matches!(snapshot.resolve("HEAD", p), Resolution::NoMatch));
        }
        eprintln!(
            "resolve/worst_case: {regexes} regular expressions like {example:.60}, {} paths of {} bytes",
            worst_paths.len(),
            worst_paths[0].len()
        );
        let mut bench = |b: &mut criterion::Bencher<'_>| {
            let mut i = 0;
            b.iter(|| {
                let p = &worst_paths[i % worst_paths.len()];
                i += 1;
                compiled_id(snapshot.resolve(black_box("HEAD"), black_box(p)))
            })
        };
        if per_method == usize::MAX {
            group.bench_function("worst_case", bench);
        } else {
            group.bench_function(BenchmarkId::new("worst_case", per_method), &mut bench);
        }
    }
    group.finish();
}

fn build_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for n in BUILD_SIZES {
        let routes = routes(n);
        let parsed = rules(&routes);
        group.bench_with_input(BenchmarkId::new("compiled", n), &parsed, |b, parsed| {
            b.iter_batched(
                || parsed.clone(),
                |rules| Snapshot::build(rules, 1).expect("no conflicts"),
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("parse_and_compile", n), &routes, |b, routes| {
            b.iter(|| Snapshot::build(rules(routes), 1).expect("no conflicts"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = resolve_benches, build_benches
}
criterion_main!(benches);
