//! Mapping deltas (`Heimdall::mapping_delta`, `MappingDelta::apply`): after any sequence of mapping changes, a
//! follower that applies the deltas it hears of — and misses others at random, catching up with the next one —
//! holds exactly the mappings of a fresh export. Random sequences, on both databases.

use heimdall_core::authorizer::{MappingDelta, MappingExport};
use heimdall_core::mapping::Snapshot;
use heimdall_core::model::MappingInput;
use heimdall_core::test_utils::TestDatabase;

use crate::support::{heimdall, root};

/// A small deterministic generator (xorshift64*), so that a failing sequence can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

fn input(rng: &mut Rng) -> MappingInput {
    const METHODS: [&str; 4] = ["GET", "POST", "DELETE", "ANY"];
    const PATHS: [&str; 8] = [
        "/courses/:id",
        "/courses/:id/lessons",
        "/courses",
        "/admin/:section",
        "/users/:name",
        "/v1/**",
        "~/reports/[0-9]+",
        "/files/:name",
    ];
    MappingInput {
        method: METHODS[rng.below(METHODS.len())].to_owned(),
        path_pattern: PATHS[rng.below(PATHS.len())].to_owned(),
        action: format!("act:{}", rng.below(5)),
        owner_group: None,
        priority: i32::try_from(rng.below(3)).unwrap(),
        description: None,
    }
}

fn same(a: &Snapshot, b: &Snapshot) -> bool {
    let (a, b) = (MappingExport::of(a), MappingExport::of(b));
    a.version == b.version && a.mappings == b.mappings
}

#[tokio::test]
async fn a_follower_applying_deltas_with_events_dropped_at_random_holds_a_fresh_export() {
    for db in TestDatabase::all().await {
        let b = db.backend;
        let h = heimdall(&db).await;
        let root = root(&h).await;
        let seeds: u64 = if b == "sqlite" { 12 } else { 4 };
        for seed in 1..=seeds {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            // The follower starts from a whole export, as it does at start.
            let mut follower = h.refresh_mappings().await.unwrap();
            let mut applied = 0;
            for step in 0..30 {
                let existing: Vec<i64> = h
                    .refresh_mappings()
                    .await
                    .unwrap()
                    .rules()
                    .iter()
                    .map(|r| r.id)
                    .collect();
                // A change; one the facade refuses (a conflict) changes nothing, and is a change of no kind.
                let _ = match rng.below(4) {
                    0 | 1 => h.create_mapping(&root, &input(&mut rng)).await.map(|_| ()),
                    2 if !existing.is_empty() => {
                        let id = existing[rng.below(existing.len())];
                        h.update_mapping(&root, id, &input(&mut rng)).await.map(|_| ())
                    }
                    _ if !existing.is_empty() => h.delete_mapping(&root, existing[rng.below(existing.len())]).await,
                    _ => Ok(()),
                };
                // The feed's event reaches the follower, or is lost (then the next delta spans both changes).
                if rng.below(2) == 0 || step == 29 {
                    let delta = h.mapping_delta(follower.version()).await.unwrap().unwrap();
                    let fresh = h.refresh_mappings().await.unwrap();
                    let next = delta
                        .apply(&follower)
                        .unwrap_or_else(|e| panic!("{b} seed {seed} step {step}: {e}"));
                    assert!(
                        same(&next, &fresh),
                        "{b} seed {seed} step {step}: the follower differs from the export"
                    );
                    follower = std::sync::Arc::new(next);
                    applied += 1;
                }
            }
            assert!(applied > 5, "{b} seed {seed}");
        }
        // Nothing leads from a version the database never had: the follower loads the whole export.
        let current = h.refresh_mappings().await.unwrap().version();
        assert!(h.mapping_delta(current + 1).await.unwrap().is_none(), "{b}");
        assert!(h.mapping_delta(-1).await.unwrap().is_none(), "{b}");
        let none = h.mapping_delta(current).await.unwrap().unwrap();
        assert!(
            none.upserts.is_empty() && none.removed.is_empty(),
            "{b}: nothing since the current version"
        );
    }
}

#[tokio::test]
async fn a_delta_that_does_not_fit_is_refused() {
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    let root = root(&h).await;
    let start = h.refresh_mappings().await.unwrap();
    let mut rng = Rng(7);
    h.create_mapping(&root, &input(&mut rng)).await.unwrap();
    let delta: MappingDelta = h.mapping_delta(start.version()).await.unwrap().unwrap();
    assert_eq!(delta.upserts.len(), 1);
    // Applied to another version than it starts from.
    let later = h.refresh_mappings().await.unwrap();
    assert!(delta.clone().apply(&later).is_err());
    // A checksum that is not the server's: the follower would load the export instead.
    let tampered = MappingDelta {
        checksum: "0000000000000000".to_owned(),
        ..delta.clone()
    };
    assert!(tampered.apply(&start).is_err());
    // As sent, it applies.
    assert!(same(&delta.apply(&start).unwrap(), &later));
}
