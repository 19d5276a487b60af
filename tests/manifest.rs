//! The manifest's promises (issue 9, item 10): the benchmark harness is criterion's current
//! line, the library has no libtest benches, and the minimum supported Rust version is the same
//! in `Cargo.toml`, the README and the crate docs.

const MANIFEST: &str = include_str!("../Cargo.toml");
const README: &str = include_str!("../README.md");
const LIB: &str = include_str!("../src/lib.rs");

/// The value of `key = "..."` or `key = ...` in `section` of the manifest.
fn value(section: &str, key: &str) -> Option<String> {
    let mut current = "";
    for line in MANIFEST.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line;
        } else if current == section {
            if let Some(rest) = line.strip_prefix(key) {
                if let Some(v) = rest.trim_start().strip_prefix('=') {
                    return Some(v.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    None
}

#[test]
fn item10_the_library_has_no_libtest_benches() {
    assert_eq!(value("[lib]", "bench").as_deref(), Some("false"));
}

#[test]
fn item10_criterion_is_on_its_current_line() {
    let criterion =
        value("[dev-dependencies]", "criterion").expect("criterion is a dev-dependency");
    assert!(
        criterion.contains("version = \"0.8\""),
        "criterion is {criterion}"
    );
}

#[test]
fn item10_the_minimum_supported_rust_version_is_stated_once_everywhere() {
    let msrv = value("[package]", "rust-version").expect("rust-version is set");
    // criterion 0.8 needs 1.86.
    assert_eq!(msrv, "1.86");
    let stated = format!("Rust {msrv} (edition 2024)");
    assert!(README.contains(&stated), "the README says {stated}");
    assert!(LIB.contains(&stated), "the crate docs say {stated}");
}

/// Issue 12: the reports are opt-in. Every dependency beyond the three the core needs is
/// optional, and no feature is on by default, so the default build pulls in none of them
/// (`.ci/run` also checks `cargo tree`).
#[test]
fn issue12_the_default_build_has_only_the_core_dependencies() {
    let mut section = "";
    let mut required = Vec::new();
    for line in MANIFEST.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[features]" {
            assert!(!line.starts_with("default"), "a default feature: {line}");
        }
        if section != "[dependencies]" || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split([' ', '=']).next().unwrap_or(line);
        if !line.contains("optional = true") {
            required.push(name);
        }
    }
    assert_eq!(required, ["tokio", "tokio-util", "pin-project-lite"]);
    for feature in ["tracing", "metrics"] {
        assert_eq!(
            value("[features]", feature).as_deref(),
            Some(format!("[\"dep:{feature}\"]").as_str()),
            "the `{feature}` feature enables its crate and nothing else"
        );
    }
}
