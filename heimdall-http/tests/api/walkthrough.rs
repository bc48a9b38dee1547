//! The README's adapter walk-through, run as written: `heimdall demo`, the shell block of the README's
//! heimdall-adapter section (API key, role, group, mapping), the example service (`examples/adapter.rs`) and
//! the two calls whose expected statuses the README states in comments.
//!
//! Only what differs on a test machine is substituted: the demo's port (the README says 8080, the test asks for
//! a free one), the example's address (`EXAMPLE_ADDR` instead of 3000), the JWKS URL the demo printed, and the
//! prebuilt example binary for `cargo run -p heimdall-examples --example adapter` (`cargo test --workspace`
//! builds it into `target/<profile>/examples/`).

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Process, secret};

/// The fenced `sh` block that follows "Try it against the demo" in the README.
fn readme_block() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let from = readme
        .find("Try it against the demo")
        .expect("the README's adapter walk-through");
    let rest = &readme[from..];
    let start = rest.find("```sh\n").expect("its shell block") + "```sh\n".len();
    let end = start + rest[start..].find("```").expect("the end of the block");
    rest[start..end].lines().map(str::to_owned).collect()
}

/// The example's binary, built beside this test's binary by `cargo test --workspace`.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = profile.join("examples").join("adapter");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p heimdall-examples --example adapter` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn the_readme_adapter_walkthrough_runs_as_written() {
    let mut demo = Process::spawn(&["demo", "--port", "0"], &[], Some("Stop with Ctrl-C"));
    let printed = |prefix: &str| {
        demo.stdout
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("the demo printed no {prefix:?} line"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let (admin, alice, jwks) = (
        secret(&printed("export ADMIN_TOKEN=")),
        secret(&printed("export ALICE_TOKEN=")),
        printed("JWKS:"),
    );
    let example_addr = free_addr();
    let example = example_binary();

    let mut script = vec![
        "set -eu".to_owned(),
        "trap 'if [ -n \"${EXAMPLE:-}\" ]; then kill $EXAMPLE; fi' EXIT".to_owned(),
    ];
    let mut checked = 0;
    for line in readme_block() {
        let mut line = line
            .replace("http://127.0.0.1:8080", &demo.base)
            .replace("127.0.0.1:3000", &example_addr)
            .replace("<the demo's JWKS URL>", &jwks);
        if line.contains("cargo run -p heimdall-examples --example adapter") {
            assert!(
                line.trim_end().ends_with('&'),
                "the README starts the example in the background: {line}"
            );
            line = line.replace(
                "cargo run -p heimdall-examples --example adapter",
                &format!(
                    "HEIMDALL_URL={} EXAMPLE_ADDR={example_addr} {}",
                    demo.base,
                    example.display()
                ),
            );
            script.push(line);
            script.push("EXAMPLE=$!".to_owned());
            // Not in the README (a person waits by reading): until the example has its first snapshot it
            // answers 503, closed; wait for that to pass.
            script.push(format!(
                "for _ in $(seq 200); do s=$(curl -s -o /dev/null -w '%{{http_code}}' http://{example_addr}/courses/1 \
                 -H \"Authorization: Bearer $ALICE_TOKEN\" || true); case $s in 000|503) sleep 0.1;; *) break;; esac; done"
            ));
            continue;
        }
        // A call whose answer the README states (`# 200: …`) must answer exactly that.
        if let Some((call, comment)) = line.split_once("# ")
            && let Some(status) = comment
                .split(':')
                .next()
                .filter(|s| s.len() == 3 && s.parse::<u16>().is_ok())
        {
            let call = call
                .trim()
                .replacen("curl -i", "curl -s -o /dev/null -w '%{http_code}'", 1);
            script.push(format!(
                "got=$({call}); if [ \"$got\" != {status} ]; then echo \"expected {status}, got $got: {}\"; exit 1; fi; \
                 echo \"ok {status}\"",
                call.replace('"', "'")
            ));
            checked += 1;
            continue;
        }
        script.push(line);
    }
    assert_eq!(checked, 2, "the README's walk-through states two answers");

    let out = Command::new("bash")
        .arg("-c")
        .arg(script.join("\n"))
        .env("ADMIN_TOKEN", &admin)
        .env("ALICE_TOKEN", &alice)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the walk-through failed\nstdout:\n{stdout}\nstderr:\n{stderr}\ndemo log:\n{}",
        demo.log()
    );
    assert_eq!(stdout.matches("ok 200").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("ok 403").count(), 1, "{stdout}");
    assert!(demo.stop().success());
}
