//! Issue 18, point 3: a manager can't take traffic from mappings he may not edit. Within his path scope a
//! delegated manager may create or change a mapping only when no request that resolves today to a mapping
//! he may not edit (another team's, a superadmin's, one without an owner) would resolve to his afterwards.
//! A superadmin may; the audit row names what his write shadowed.

use std::sync::{Arc, Mutex};

use heimdall_core::mapping::{MappingRule, Method, PathPattern, Snapshot};
use heimdall_core::model::{Caller, MappingInput};
use heimdall_core::pdp::pack::action;
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::{Config, ErrorKind, Heimdall};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

use super::{ChangeDuringCheck, each_setup, last_audit, mapping, tag};
use crate::support::{caller, heimdall, root};

/// A mapping with no owner (only a superadmin may edit it).
fn unowned(method: &str, pattern: &str) -> MappingInput {
    MappingInput {
        owner_group: None,
        ..mapping(method, pattern, "unused", 0)
    }
}

/// The setting of the review's cases, under `/go/<t>/`: a manager `mia-<t>` of team `go:<t>:billing-ops`
/// (scope `/go/<t>/**`), another team's `ANY /go/<t>/billing/**`, a superadmin's `GET /go/<t>/ops/:id` and
/// `GET ~/go/<t>/[^/]+/admin`, and mia's own harmless `GET /go/<t>/mine`.
struct Setting {
    root: Caller,
    mia: Caller,
    team: String,
    billing: i64,
    ops: i64,
    regex: i64,
    mine: i64,
}

async fn setting(h: &Heimdall, t: &str) -> Setting {
    let root = root(h).await;
    let (admins, team, other) = (
        format!("go:{t}:billing-admins"),
        format!("go:{t}:billing-ops"),
        format!("go:{t}:billing"),
    );
    for g in [&admins, &team, &other] {
        h.create_group(&root, g, None).await.unwrap();
    }
    h.create_management_right(&root, &admins, &team, Some(&format!("/go/{t}/**")))
        .await
        .unwrap();
    let mia = format!("mia-{t}");
    h.add_member(&root, &admins, &mia).await.unwrap();
    let mia = caller(h, &mia).await;
    let create = |c: &Caller, m: MappingInput| {
        let (h, c) = (h.clone(), c.clone());
        async move { h.create_mapping(&c, &m).await.unwrap().id }
    };
    let billing = create(&root, mapping("ANY", &format!("/go/{t}/billing/**"), &other, 0)).await;
    let ops = create(&root, unowned("GET", &format!("/go/{t}/ops/:id"))).await;
    let regex = create(&root, unowned("GET", &format!("~/go/{t}/[^/]+/admin"))).await;
    let mine = create(&mia, mapping("GET", &format!("/go/{t}/mine"), &team, 0)).await;
    Setting {
        root,
        mia,
        team,
        billing,
        ops,
        regex,
        mine,
    }
}

/// The review's three writes, and the mapping each would shadow: (a) a literal under another team's `**`,
/// (b) a literal under a superadmin's `:id`, (c) `ANY /go/<t>/**` silencing a superadmin's regex.
fn review_cases(s: &Setting, t: &str) -> [(MappingInput, i64, String); 3] {
    [
        (
            mapping("GET", &format!("/go/{t}/billing/secret"), &s.team, 0),
            s.billing,
            format!("mapping {} (ANY /go/{t}/billing/**)", s.billing),
        ),
        (
            mapping("GET", &format!("/go/{t}/ops/restart"), &s.team, 0),
            s.ops,
            format!("mapping {} (GET /go/{t}/ops/:id)", s.ops),
        ),
        (
            mapping("ANY", &format!("/go/{t}/**"), &s.team, 0),
            s.regex,
            format!("mapping {} (GET ~/go/{t}/[^/]+/admin)", s.regex),
        ),
    ]
}

/// Checks a refused attempt: 403 naming the shadowed mapping, and its audit row saying so.
async fn assert_refused(
    h: &Heimdall,
    s: &Setting,
    r: heimdall_core::Result<heimdall_core::model::Mapping>,
    operation: &str,
    shadowed: i64,
    named: &str,
    ctx: &str,
) {
    let e = r.expect_err(ctx);
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{ctx}: {e}");
    assert!(e.message().contains(named), "{ctx}: {:?} lacks {named:?}", e.message());
    let row = last_audit(h, &s.root, operation, s.mia.subject().as_str()).await;
    assert!(!row.success, "{ctx}");
    assert_eq!(row.result["outcome"], "denied", "{ctx}");
    let message = row.result["message"].as_str().unwrap();
    assert!(message.contains(named), "{ctx}: audited {message:?}");
    assert!(
        row.result["shadows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == shadowed),
        "{ctx}: {}",
        row.result
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_cannot_shadow_by_creating() {
    each_setup(|h, d, backend| async move {
        let t = tag(d);
        let s = setting(&h, t).await;
        for (input, shadowed, named) in review_cases(&s, t) {
            let ctx = format!("{backend}/{d:?}: create {} {}", input.method, input.path_pattern);
            let r = h.create_mapping(&s.mia, &input).await;
            assert_refused(&h, &s, r, "create_mapping", shadowed, &named, &ctx).await;
        }
        // Nothing moved: each request still resolves to the mapping it resolved to.
        for (path, id) in [
            (format!("/go/{t}/billing/secret"), s.billing),
            (format!("/go/{t}/ops/restart"), s.ops),
            (format!("/go/{t}/x/admin"), s.regex),
        ] {
            let got = h.resolve("GET", &path).await.unwrap().expect("a mapping");
            assert_eq!(got.mapping_id, id, "{backend}/{d:?}: {path}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_cannot_shadow_by_updating_his_own_mapping() {
    each_setup(|h, d, backend| async move {
        let t = tag(d);
        let s = setting(&h, t).await;
        for (input, shadowed, named) in review_cases(&s, t) {
            let ctx = format!("{backend}/{d:?}: update to {} {}", input.method, input.path_pattern);
            let r = h.update_mapping(&s.mia, s.mine, &input).await;
            assert_refused(&h, &s, r, "update_mapping", shadowed, &named, &ctx).await;
        }
        let mine = h.get_mapping(s.mine).await.unwrap();
        assert_eq!(
            mine.path_pattern.as_str(),
            format!("/go/{t}/mine"),
            "{backend}/{d:?}: unchanged"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_may_write_what_shadows_nothing_foreign() {
    each_setup(|h, d, backend| async move {
        let t = tag(d);
        let ctx = format!("{backend}/{d:?}");
        let s = setting(&h, t).await;
        // Overlaps nothing at all (the regex wants exactly four segments).
        let edit = h
            .create_mapping(&s.mia, &mapping("GET", &format!("/go/{t}/mine/:id/edit"), &s.team, 0))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        // Takes requests from her own mapping only: allowed, and audited.
        h.create_mapping(&s.mia, &mapping("GET", &format!("/go/{t}/mine/new/edit"), &s.team, 0))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let row = last_audit(&h, &s.root, "create_mapping", s.mia.subject().as_str()).await;
        assert!(row.success, "{ctx}");
        assert_eq!(row.result["shadows"][0]["id"], edit.id, "{ctx}: {}", row.result);
        // Another method beside the superadmin's GET regex: no request reaches both.
        h.update_mapping(
            &s.mia,
            s.mine,
            &mapping("POST", &format!("/go/{t}/:x/admin"), &s.team, 0),
        )
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        // Beneath a superadmin's catch-all, inside a subtree her team owns: every request the new mapping
        // takes resolves to her team's subtree today, not to the catch-all (which it beats too).
        let catch_all = h
            .create_mapping(&s.root, &unowned("ANY", &format!("/go/{t}/:any/**")))
            .await
            .unwrap();
        h.create_mapping(&s.root, &mapping("ANY", &format!("/go/{t}/team/**"), &s.team, 0))
            .await
            .unwrap();
        h.create_mapping(&s.mia, &mapping("GET", &format!("/go/{t}/team/x/:id"), &s.team, 0))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        // Outside it, the catch-all would lose requests: refused.
        let e = h
            .create_mapping(&s.mia, &mapping("GET", &format!("/go/{t}/fresh/x"), &s.team, 0))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden, "{ctx}: {e}");
        assert!(e.message().contains(&format!("mapping {}", catch_all.id)), "{ctx}: {e}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superadmin_may_shadow_and_the_audit_names_it() {
    each_setup(|h, d, backend| async move {
        let t = tag(d);
        let ctx = format!("{backend}/{d:?}");
        let s = setting(&h, t).await;
        let [(input, shadowed, _), ..] = review_cases(&s, t);
        let created = h
            .create_mapping(&s.root, &input)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let row = last_audit(&h, &s.root, "create_mapping", "root").await;
        assert!(row.success, "{ctx}");
        assert_eq!(row.result["id"], created.id, "{ctx}");
        let shadows = row.result["shadows"].as_array().unwrap();
        assert_eq!(shadows.len(), 1, "{ctx}: {}", row.result);
        assert_eq!(shadows[0]["id"], shadowed, "{ctx}");
        assert_eq!(shadows[0]["method"], "ANY", "{ctx}");
        assert_eq!(shadows[0]["path_pattern"], format!("/go/{t}/billing/**"), "{ctx}");
        let got = h
            .resolve("GET", &format!("/go/{t}/billing/secret"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.mapping_id, created.id, "{ctx}");
    })
    .await;
}

/// The check reads every mapping; a mapping another writer commits after that read, and before the
/// write, must not slip past: the write carries the mapping version it decided on, and the transaction
/// refuses when it moved, so the write is decided again, on the new mappings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_cannot_shadow_a_mapping_written_while_deciding() {
    for db in TestDatabase::all().await {
        let other = heimdall(&db).await;
        let s = setting(&other, "r").await;
        // Her own broad mapping: her write shadows it, so the PDP is asked whether she may edit it, and
        // that is when the concurrent writer commits a superadmin's mapping her write would shadow too.
        other
            .create_mapping(&s.mia, &mapping("GET", "/go/r/race/x/**", &s.team, 0))
            .await
            .unwrap();
        let race = ChangeDuringCheck {
            action: action::MAPPING_UPDATE,
            change: Arc::new(Mutex::new(None)),
        };
        let h = Heimdall::builder(Config {
            database_url: db.url.clone(),
            ..Config::default()
        })
        .pdp(Arc::new(race.clone()))
        .build()
        .await
        .unwrap();
        let (o, r) = (other.clone(), s.root.clone());
        let slipped = Arc::new(Mutex::new(0));
        let id = slipped.clone();
        *race.change.lock().unwrap() = Some(Box::pin(async move {
            let m = o
                .create_mapping(&r, &unowned("GET", "/go/r/race/x/a/:x"))
                .await
                .unwrap();
            *id.lock().unwrap() = m.id;
        }));
        let e = h
            .create_mapping(&s.mia, &mapping("GET", "/go/r/race/x/a/b", &s.team, 0))
            .await
            .unwrap_err();
        assert!(race.change.lock().unwrap().is_none(), "the concurrent write ran");
        let foreign = *slipped.lock().unwrap();
        assert_eq!(e.kind(), ErrorKind::Forbidden, "{}: {e}", db.backend);
        assert!(
            e.message()
                .contains(&format!("mapping {foreign} (GET /go/r/race/x/a/:x)")),
            "{}: {e}",
            db.backend
        );
        let got = h.resolve("GET", "/go/r/race/x/a/b").await.unwrap().unwrap();
        assert_eq!(got.mapping_id, foreign, "{}", db.backend);
        drop((h, other));
        db.drop_database().await;
    }
}

/// A generated route pattern under `/go`: segments of `a`, `b`, `:p<i>`, `*`, optionally ending in `**`.
fn pattern() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", ":p", "*"]), 0..3),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(segs, rest, root)| {
            if root {
                return "/**".to_owned();
            }
            let mut p = String::from("/go");
            for (i, s) in segs.iter().enumerate() {
                p.push('/');
                p.push_str(s);
                if *s == ":p" {
                    p.push_str(&i.to_string());
                }
            }
            if rest {
                p.push_str("/**");
            }
            p
        })
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["GET", "POST", "ANY"])
}

/// Every request the generated patterns can tell apart: paths of up to five segments over their
/// literals and a fresh one, and the methods (one unknown to the resolver).
fn requests() -> Vec<(&'static str, String)> {
    let mut paths = vec!["/".to_owned()];
    let mut frontier = vec![String::new()];
    for _ in 0..5 {
        let mut next = Vec::new();
        for p in &frontier {
            for s in ["go", "a", "b", "z"] {
                next.push(format!("{p}/{s}"));
            }
        }
        paths.extend(next.iter().cloned());
        frontier = next;
    }
    let mut all = Vec::new();
    for m in ["GET", "HEAD", "POST", "PUT", "OTHER"] {
        for p in &paths {
            all.push((m, p.clone()));
        }
    }
    all
}

/// Owners of the generated mappings: the manager's team, another team, nobody.
const OWNERS: [Option<&str>; 3] = [Some("go:mine"), Some("go:other"), None];

/// For random mapping sets and random manager writes, no request moves from a mapping the manager may not
/// edit to one he owns: when a write is allowed, every request (enumerated) that resolves to the written
/// mapping afterwards resolved before to nothing, to the same mapping, or to one he may edit. A write that
/// is refused changes nothing, and when it is refused for a route pattern, that pattern really loses a
/// request to it (no over-refusal).
#[test]
fn manager_cannot_shadow_property() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let requests = requests();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 24,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let existing = prop::collection::vec((method(), pattern(), 0..3usize), 1..7);
    let regex = prop::option::of(prop::sample::select(vec!["~/go/a/.*", "~/go/[ab]/[^/]+", "~/.*/b"]));
    let write = (any::<bool>(), method(), pattern());
    runner
        .run(&(existing, regex, write), |(existing, regex, (update, wm, wp))| {
            rt.block_on(async {
                let db = TestDatabase::sqlite();
                let h = heimdall(&db).await;
                let root = root(&h).await;
                for g in ["go:mgr", "go:mine", "go:other"] {
                    h.create_group(&root, g, None).await.unwrap();
                }
                h.create_management_right(&root, "go:mgr", "go:mine", Some("/go/**"))
                    .await
                    .unwrap();
                h.add_member(&root, "go:mgr", "mia").await.unwrap();
                let mia = caller(&h, "mia").await;
                let mut own = Vec::new();
                for (m, p, o) in &existing {
                    let input = MappingInput {
                        owner_group: OWNERS[*o].map(str::to_owned),
                        ..mapping(m, p, "unused", 0)
                    };
                    match h.create_mapping(&root, &input).await {
                        Ok(created) if *o == 0 => own.push(created.id),
                        Ok(_) => {}
                        Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
                    }
                }
                if let Some(re) = regex {
                    h.create_mapping(&root, &unowned("GET", re)).await.unwrap();
                }
                let before: Arc<Snapshot> = h.refresh_mappings().await.unwrap();
                let input = mapping(wm, &wp, "go:mine", 0);
                let written = match own.first() {
                    Some(&id) if update => h.update_mapping(&mia, id, &input).await,
                    _ => h.create_mapping(&mia, &input).await,
                };
                let after = h.refresh_mappings().await.unwrap();
                let written = match written {
                    Ok(m) => m,
                    Err(e) => {
                        assert!(
                            matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::Conflict),
                            "{wm} {wp}: {e}"
                        );
                        assert_eq!(after.version(), before.version(), "a refused write changes nothing");
                        // No over-refusal: a route pattern named as shadowed really loses a request.
                        let named = e
                            .message()
                            .strip_prefix("would shadow mapping ")
                            .and_then(|m| m.split(' ').next())
                            .map(|id| id.parse::<i64>().unwrap());
                        let Some(named) = named else { return };
                        let shadowed = before.rules().iter().find(|r| r.id == named).unwrap();
                        if shadowed.pattern.is_regex() {
                            return;
                        }
                        let id = own.first().copied().filter(|_| update).unwrap_or(i64::MAX);
                        let new_rule = MappingRule {
                            id,
                            method: Method::parse(wm).unwrap(),
                            pattern: PathPattern::parse(&wp).unwrap(),
                            ..shadowed.clone()
                        };
                        let rules = before.rules().iter().filter(|r| r.id != id).cloned();
                        let would_be = Snapshot::build(rules.chain([new_rule]), 0).unwrap();
                        let loses = requests.iter().any(|(m, p)| {
                            before.resolve(m, p).matched().map(|r| r.id()) == Some(named)
                                && would_be.resolve(m, p).matched().map(|r| r.id()) == Some(id)
                        });
                        assert!(loses, "{wm} {wp} refused for {named}, which loses nothing: {e}");
                        return;
                    }
                };
                let editable = |id: i64| {
                    before.rules().iter().find(|r| r.id == id).is_some_and(|r| {
                        r.owner_group.as_ref().is_some_and(|g| g.as_str() == "go:mine")
                            && r.pattern.as_str().starts_with("/go/")
                    })
                };
                for (m, p) in &requests {
                    let now = after.resolve(m, p).matched().map(|r| r.id());
                    if now != Some(written.id) {
                        continue;
                    }
                    if let Some(was) = before.resolve(m, p).matched().map(|r| r.id())
                        && was != written.id
                    {
                        assert!(
                            editable(was),
                            "{m} {p} moved from mapping {was} to {} {} {} ({existing:?}, {regex:?})",
                            written.id,
                            wm,
                            wp
                        );
                    }
                }
                drop(h);
                drop(db);
            });
            Ok(())
        })
        .unwrap();
}
