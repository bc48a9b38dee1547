//! The admin console, as a browser meets it (no script runs: the pages are forms and links): sign-in through
//! the identity provider (the demo issuer's authorization code flow with PKCE), the session cookie's flags, a
//! CSRF token on every change, the security headers, a plain user's refusal, a cross-site post, sign-out.

use std::collections::BTreeMap;

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};

use crate::support::Process;

/// A browser without script: follows nothing by itself, keeps the console's cookie.
struct Browser {
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        let mut req = self.http.get(url);
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        req.send().await.unwrap()
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        req.send().await.unwrap()
    }

    /// Signs in at `base`'s console as `subject` through the identity provider; returns the session cookie's
    /// `Set-Cookie` line.
    async fn sign_in(&mut self, base: &str, subject: &str) -> String {
        let to_provider = self.get(&format!("{base}/console/signin")).await;
        assert_eq!(to_provider.status(), 303);
        let authorize = location(&to_provider);
        let url = reqwest::Url::parse(&authorize).unwrap();
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["redirect_uri"], format!("{base}/console/callback"));
        let page = self.get(&authorize).await.text().await.unwrap();
        assert!(page.contains(&format!("Sign in as {subject}")), "{page}");
        let provider = format!("{}://{}", url.scheme(), url.authority());
        let chosen = self
            .post(
                &format!("{provider}/authorize"),
                &[
                    ("subject", subject),
                    ("client_id", &query["client_id"]),
                    ("redirect_uri", &query["redirect_uri"]),
                    ("state", &query["state"]),
                    ("code_challenge", &query["code_challenge"]),
                ],
            )
            .await;
        assert_eq!(chosen.status(), 303);
        let callback = location(&chosen);
        assert!(callback.starts_with(&format!("{base}/console/callback?")), "{callback}");
        let signed_in = self.get(&callback).await;
        assert_eq!(signed_in.status(), 303);
        assert_eq!(location(&signed_in), "/console");
        let set_cookie = signed_in.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        self.cookie = Some(set_cookie.split(';').next().unwrap().to_owned());
        // The answer came back once; it can't sign anyone in again.
        let replayed = self.get(&callback).await;
        assert_eq!(replayed.status(), 400);
        set_cookie
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_console_signs_in_through_the_provider_and_guards_every_change() {
    let mut demo = Process::spawn(&["demo", "--port", "0"], &[], Some("Stop with Ctrl-C"));
    let base = demo.base.clone();
    assert!(
        demo.stdout.iter().any(|l| l.contains(&format!("{base}/console"))),
        "the demo prints the console's address: {:?}",
        demo.stdout
    );

    // Signed out: the sign-in page, with the security headers and no script.
    let mut admin = Browser::new();
    let home = admin.get(&format!("{base}/console")).await;
    assert_eq!(home.status(), 200);
    let csp = home.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    for directive in ["default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(home.headers()["cache-control"], "no-store");
    let html = home.text().await.unwrap();
    assert!(html.contains("/console/signin") && !html.contains("<script"), "{html}");
    // A page needs a session.
    let away = admin.get(&format!("{base}/console/groups")).await;
    assert_eq!((away.status().as_u16(), location(&away)), (303, "/console".to_owned()));

    let cookie = admin.sign_in(&base, "demo-admin").await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "on loopback the cookie may go over http: {cookie}"
    );
    let page = admin.get(&format!("{base}/console/groups")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Signed in as <strong>demo-admin</strong>"), "{html}");
    let csrf = csrf_of(&html);

    // A change without the session's token, or with another, changes nothing.
    let groups = format!("{base}/console/groups");
    let refused = admin.post(&groups, &[("name", "team:web")]).await;
    assert_eq!(refused.status(), 403);
    let refused = admin.post(&groups, &[("name", "team:web"), ("csrf", "forged")]).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("CSRF"));
    // A cross-site form post carries no cookie (SameSite=Strict): it is sent to sign in.
    let cross_site = Browser::new()
        .post(&groups, &[("name", "team:web"), ("csrf", &csrf)])
        .await;
    assert_eq!(
        (cross_site.status().as_u16(), location(&cross_site)),
        (303, "/console".to_owned())
    );
    let listed = admin.get(&format!("{groups}?prefix=team")).await.text().await.unwrap();
    assert!(!listed.contains("team:web"), "a refused change changed something");

    // With it: a group, a member.
    let created = admin.post(&groups, &[("name", "team:web"), ("csrf", &csrf)]).await;
    assert_eq!(
        (created.status().as_u16(), location(&created)),
        (303, "/console/groups/team:web".to_owned())
    );
    let added = admin
        .post(
            &format!("{base}/console/groups/team:web/members"),
            &[("subject", "alice"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(added.status(), 303);
    let group = admin
        .get(&format!("{base}/console/groups/team:web"))
        .await
        .text()
        .await
        .unwrap();
    assert!(group.contains(">alice</a></td>"), "{group}");
    let listed = admin.get(&format!("{groups}?prefix=team")).await.text().await.unwrap();
    assert!(listed.contains("team:web"), "{listed}");
    // Bad input: the facade's message, nothing changed.
    let bad = admin.post(&groups, &[("name", "no spaces"), ("csrf", &csrf)]).await;
    assert_eq!(bad.status(), 400);

    // Try a request: the explanation.
    let tried = admin
        .get(&format!(
            "{base}/console/try?method=GET&path=/nothing/here&subject=alice"
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        tried.contains("Decision: <span class=\"decision-no_mapping\">"),
        "{tried}"
    );

    // A plain user is refused with the reason, and nothing changes.
    let mut alice = Browser::new();
    alice.sign_in(&base, "alice").await;
    // She administers nothing: she starts at her own access, and the admin pages are refused.
    let start = alice.get(&format!("{base}/console")).await;
    assert_eq!(location(&start), "/console/me");
    let refused = alice.get(&groups).await;
    assert_eq!(refused.status(), 403);
    let refused = refused.text().await.unwrap();
    assert!(refused.contains("You administer no groups or mappings"), "{refused}");
    assert!(
        !refused.contains("href=\"/console/groups\""),
        "the menu shows her own access only: {refused}"
    );
    let own = alice.get(&format!("{base}/console/users/alice")).await;
    assert_eq!(own.status(), 200);
    assert_eq!(
        alice.get(&format!("{base}/console/users/demo-admin")).await.status(),
        403
    );
    let alice_csrf = csrf_of(&refused);
    assert_ne!(alice_csrf, csrf, "each session has its own token");
    let forbidden = alice
        .post(&groups, &[("name", "team:alice"), ("csrf", &alice_csrf)])
        .await;
    assert_eq!(forbidden.status(), 403);
    assert!(forbidden.text().await.unwrap().contains("You may not do this"));
    // Nor does the admin's token work in alice's session.
    let swapped = alice.post(&groups, &[("name", "team:alice"), ("csrf", &csrf)]).await;
    assert_eq!(swapped.status(), 403);

    // Sign-out ends the session: the old cookie opens nothing.
    let out = admin.post(&format!("{base}/console/signout"), &[("csrf", &csrf)]).await;
    assert_eq!((out.status().as_u16(), location(&out)), (303, "/console".to_owned()));
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let after = admin.get(&groups).await;
    assert_eq!(
        (after.status().as_u16(), location(&after)),
        (303, "/console".to_owned())
    );

    assert!(demo.stop().success());
}

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html.find(start).unwrap_or_else(|| panic!("{start:?} not in {html}")) + start.len();
    html[from..].split(end).next().unwrap()
}

#[tokio::test]
async fn an_admins_day_in_the_console() {
    let mut demo = Process::spawn(&["demo", "--port", "0"], &[], Some("Stop with Ctrl-C"));
    let base = demo.base.clone();
    let mut admin = Browser::new();
    admin.sign_in(&base, "demo-admin").await;
    let csrf = csrf_of(&admin.get(&format!("{base}/console/groups")).await.text().await.unwrap());
    let post = |path: &str| format!("{base}{path}");
    let see = |resp: reqwest::Response, status: u16| async move {
        assert_eq!(resp.status().as_u16(), status);
        resp
    };

    // A group with a member; a role with a permission, given to the group.
    see(
        admin
            .post(&post("/console/groups"), &[("name", "team:web"), ("csrf", &csrf)])
            .await,
        303,
    )
    .await;
    see(
        admin
            .post(
                &post("/console/groups/team:web/members"),
                &[("subject", "alice"), ("csrf", &csrf)],
            )
            .await,
        303,
    )
    .await;
    let role = see(
        admin
            .post(&post("/console/roles"), &[("name", "web:reader"), ("csrf", &csrf)])
            .await,
        303,
    )
    .await;
    assert_eq!(location(&role), "/console/roles/web:reader");
    see(
        admin
            .post(
                &post("/console/roles/web:reader/permissions"),
                &[("action", "web:read"), ("effect", "allow"), ("csrf", &csrf)],
            )
            .await,
        303,
    )
    .await;
    let role_page = admin
        .get(&post("/console/roles/web:reader"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        role_page.contains("<code>web:read</code></td><td>allow</td>"),
        "{role_page}"
    );
    see(
        admin
            .post(
                &post("/console/groups/team:web/roles"),
                &[("role", "web:reader"), ("csrf", &csrf)],
            )
            .await,
        303,
    )
    .await;
    let group = admin.get(&post("/console/groups/team:web")).await.text().await.unwrap();
    assert!(group.contains("href=\"/console/roles/web:reader\""), "{group}");

    // A mapping; the same one again is refused in its form, with the reason beside it.
    let mapping = [
        ("method", "GET"),
        ("path_pattern", "/web/:id"),
        ("action", "web:read"),
        ("owner_group", "team:web"),
        ("csrf", &csrf),
    ];
    see(admin.post(&post("/console/mappings"), &mapping).await, 303).await;
    let again = see(admin.post(&post("/console/mappings"), &mapping).await, 409).await;
    let again = again.text().await.unwrap();
    assert!(again.contains("role=\"alert\""), "{again}");
    let first = between(&again, "<tr id=\"mapping-", "\"").to_owned();
    assert!(
        again.contains(&format!(
            "<a href=\"/console/mappings/{first}\">See mapping {first}</a>"
        )),
        "the refusal links the mapping it conflicts with: {again}"
    );
    assert!(
        again.contains("value=\"/web/:id\""),
        "the form keeps what was typed: {again}"
    );
    // Invalid input: the reason stands beside the field it is about.
    let bad_owner = [
        ("method", "GET"),
        ("path_pattern", "/web/:id/x"),
        ("action", "web:read"),
        ("owner_group", "no spaces"),
        ("csrf", &csrf),
    ];
    let bad = see(admin.post(&post("/console/mappings"), &bad_owner).await, 400).await;
    let bad = bad.text().await.unwrap();
    let at = |needle: &str| bad.find(needle).unwrap_or_else(|| panic!("{needle} not in {bad}"));
    let refused = at("id=\"refused\"");
    assert!(
        at("id=\"owner_group\"") < refused && refused < at("id=\"priority\""),
        "beside the owner group: {bad}"
    );
    let listed = admin
        .get(&post("/console/mappings?owner=team:web"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(listed.matches("<code>/web/:id</code>").count(), 1, "{listed}");

    // Try a request: alice may read a web page, and why.
    let tried = admin
        .get(&post("/console/try?method=GET&path=/web/7&subject=alice"))
        .await
        .text()
        .await
        .unwrap();
    assert!(tried.contains("decision-allow"), "{tried}");
    assert!(tried.contains("web:reader (through team:web)"), "{tried}");

    // An API key: its secret shown once, then revoked.
    let created = see(
        admin
            .post(
                &post("/console/api-keys"),
                &[("name", "adapter:web"), ("scope", "mappings:read"), ("csrf", &csrf)],
            )
            .await,
        201,
    )
    .await;
    assert_eq!(created.headers()["cache-control"], "no-store");
    let created = created.text().await.unwrap();
    let secret = crate::support::secret(between(&created, "<code id=\"secret\">", "</code>"));
    assert!(secret.len() > 20, "{created}");
    let keys = admin.get(&post("/console/api-keys")).await.text().await.unwrap();
    assert!(
        keys.contains("adapter:web") && !keys.contains(&secret),
        "the secret is shown once"
    );
    let id = between(&keys, "name=\"id\" value=\"", "\"").to_owned();
    see(
        admin
            .post(&post("/console/api-keys/revoke"), &[("id", &id), ("csrf", &csrf)])
            .await,
        303,
    )
    .await;
    let keys = admin.get(&post("/console/api-keys")).await.text().await.unwrap();
    assert!(keys.contains("<td>revoked</td>"), "{keys}");

    // All of it in the audit log, filtered on the server.
    let audit = admin
        .get(&post("/console/audit?actor=demo-admin&operation=create_mapping"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        audit.matches("<td>create_mapping</td>").count(),
        3,
        "one created, one conflict, one invalid: {audit}"
    );
    assert!(
        audit.contains("<td>success</td>") && audit.contains("<td>refused or failed</td>"),
        "{audit}"
    );
    let refused_only = admin
        .get(&post("/console/audit?operation=create_mapping&outcome=failure"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        refused_only.matches("<td>create_mapping</td>").count(),
        2,
        "{refused_only}"
    );
    assert!(!refused_only.contains("<td>success</td>"), "{refused_only}");
    let later = admin
        .get(&post("/console/audit?since=2999-01-01T00:00"))
        .await
        .text()
        .await
        .unwrap();
    assert!(later.contains("Nothing recorded matches."), "{later}");
    see(admin.get(&post("/console/audit?outcome=maybe")).await, 400).await;
    see(admin.get(&post("/console/audit?until=yesterday")).await, 400).await;
    let everything = admin
        .get(&post("/console/audit?actor=demo-admin"))
        .await
        .text()
        .await
        .unwrap();
    for operation in [
        "create_group",
        "add_member",
        "create_role",
        "grant_permission",
        "assign_group_role",
        "create_api_key",
        "revoke_api_key",
    ] {
        assert!(
            everything.contains(&format!("<td>{operation}</td>")),
            "{operation} is not in the audit log"
        );
    }

    // A user's page, one's own access, and the sync status (no Cerbos in the demo: nothing to reconcile).
    let me = admin.get(&post("/console/me")).await;
    assert_eq!(
        (me.status().as_u16(), location(&me)),
        (303, "/console/users/demo-admin".to_owned())
    );
    let alice = admin.get(&post("/console/users/alice")).await.text().await.unwrap();
    assert!(alice.contains("href=\"/console/groups/team:web\""), "{alice}");
    assert!(
        alice.contains("<code>web:read</code></td><td class=\"decision-allow\">allow</td>"),
        "the actions she holds: {alice}"
    );
    let sync = admin.get(&post("/console/sync")).await.text().await.unwrap();
    assert!(
        sync.contains("Users waiting for a push") && sync.contains("not configured"),
        "{sync}"
    );
    let reconcile = admin.post(&post("/console/sync/reconcile"), &[("csrf", &csrf)]).await;
    assert_eq!(reconcile.status(), 409);

    assert!(demo.stop().success());
}

#[tokio::test]
async fn a_delegated_manager_sees_and_changes_only_what_he_manages() {
    let mut demo = Process::spawn(&["demo", "--port", "0"], &[], Some("Stop with Ctrl-C"));
    let base = demo.base.clone();
    let url = |path: &str| format!("{base}{path}");
    let mut admin = Browser::new();
    admin.sign_in(&base, "demo-admin").await;
    let csrf = csrf_of(&admin.get(&url("/console/groups")).await.text().await.unwrap());
    // Two teams' groups and mappings, and a catch-all under /go/ that nobody but superadmins may edit.
    for group in ["go:web", "rmi:web"] {
        let done = admin
            .post(&url("/console/groups"), &[("name", group), ("csrf", &csrf)])
            .await;
        assert_eq!(done.status(), 303, "{group}");
    }
    for (pattern, owner) in [("/go/web/:id", "go:web"), ("/rmi/:id", "rmi:web"), ("/go/**", "")] {
        let form = [
            ("method", "GET"),
            ("path_pattern", pattern),
            ("action", "web:read"),
            ("owner_group", owner),
            ("csrf", &csrf),
        ];
        assert_eq!(
            admin.post(&url("/console/mappings"), &form).await.status(),
            303,
            "{pattern}"
        );
    }
    let all = admin.get(&url("/console/mappings")).await.text().await.unwrap();
    let id_of = |pattern: &str| {
        let row = all
            .split("<tr id=\"mapping-")
            .find(|row| row.contains(&format!("<code>{pattern}</code>")))
            .unwrap_or_else(|| panic!("{pattern} not listed: {all}"));
        row.split('"').next().unwrap().to_owned()
    };
    let (go_web, rmi, catch_all) = (id_of("/go/web/:id"), id_of("/rmi/:id"), id_of("/go/**"));

    // bob manages the go: groups and their mappings under /go/ (the demo's leads:go right).
    let mut bob = Browser::new();
    bob.sign_in(&base, "bob").await;
    assert_eq!(location(&bob.get(&url("/console")).await), "/console/groups");
    let groups = bob.get(&url("/console/groups")).await.text().await.unwrap();
    assert!(groups.contains("The groups you manage"), "{groups}");
    assert!(
        groups.contains(">go:web</a>") && !groups.contains("rmi:web"),
        "{groups}"
    );
    for hidden in ["/console/roles", "/console/audit", "/console/api-keys", "/console/sync"] {
        assert!(
            !groups.contains(&format!("href=\"{hidden}\"")),
            "{hidden} in bob's menu: {groups}"
        );
    }
    let bob_csrf = csrf_of(&groups);
    // What he may not see is refused by the server, not only left out of the menu.
    let other = bob.get(&url("/console/groups/rmi:web")).await;
    assert_eq!(other.status(), 403);
    assert!(other.text().await.unwrap().contains("You do not manage group rmi:web"));
    for path in [
        "/console/roles",
        "/console/audit",
        "/console/sync",
        "/console/users/alice",
    ] {
        let refused = bob.get(&url(path)).await;
        assert_eq!(refused.status(), 403, "{path}");
        assert!(refused.text().await.unwrap().contains("Only superadmins see"), "{path}");
    }
    let mappings = bob.get(&url("/console/mappings")).await.text().await.unwrap();
    assert!(mappings.contains("The mappings in your scope"), "{mappings}");
    assert!(mappings.contains(&format!("id=\"mapping-{go_web}\"")), "{mappings}");
    for not_his in [&rmi, &catch_all] {
        assert!(!mappings.contains(&format!("id=\"mapping-{not_his}\"")), "{mappings}");
    }
    assert_eq!(bob.get(&url(&format!("/console/mappings/{rmi}"))).await.status(), 403);

    // In his scope he works: a member added, his group's page shows who manages it.
    let added = bob
        .post(
            &url("/console/groups/go:web/members"),
            &[("subject", "carol"), ("csrf", &bob_csrf)],
        )
        .await;
    assert_eq!(added.status(), 303);
    let group = bob.get(&url("/console/groups/go:web")).await.text().await.unwrap();
    assert!(group.contains("<td>carol</td>"), "{group}");
    assert!(
        group.contains("<td>leads:go</td>") && group.contains("<code>/go/**</code>"),
        "{group}"
    );
    let edited = bob
        .post(
            &url(&format!("/console/mappings/{go_web}")),
            &[
                ("method", "GET"),
                ("path_pattern", "/go/web/:id"),
                ("action", "web:view"),
                ("owner_group", "go:web"),
                ("csrf", &bob_csrf),
            ],
        )
        .await;
    assert_eq!(edited.status(), 303);
    let page = bob
        .get(&url(&format!("/console/mappings/{go_web}")))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("value=\"web:view\""), "{page}");

    // Beyond it he is refused with a clear message, and nothing changes: another team's group, and a
    // mapping that would take requests from one he may not edit (linked).
    let refused = bob
        .post(
            &url("/console/groups/rmi:web/members"),
            &[("subject", "carol"), ("csrf", &bob_csrf)],
        )
        .await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("You may not do this"));
    let shadowing = bob
        .post(
            &url("/console/mappings"),
            &[
                ("method", "GET"),
                ("path_pattern", "/go/web/:id/pages"),
                ("action", "web:read"),
                ("owner_group", "go:web"),
                ("csrf", &bob_csrf),
            ],
        )
        .await;
    assert_eq!(shadowing.status(), 403);
    let shadowing = shadowing.text().await.unwrap();
    assert!(shadowing.contains("would shadow"), "{shadowing}");
    assert!(
        shadowing.contains(&format!(
            "<a href=\"/console/mappings/{catch_all}\">See mapping {catch_all}</a>"
        )),
        "{shadowing}"
    );
    assert!(shadowing.contains("value=\"/go/web/:id/pages\""), "{shadowing}");
    let rmi_group = admin.get(&url("/console/groups/rmi:web")).await.text().await.unwrap();
    assert!(!rmi_group.contains("carol"), "{rmi_group}");

    assert!(demo.stop().success());
}
