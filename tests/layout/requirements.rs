// Verifies (every test in this file): R-VAL-3
//! Traceability (docs/requirements.md): every requirement is verified by a test or a
//! `protokd validate` check, every tag names a listed requirement, and every test of the
//! workspace carries a tag. The rules are `protokd::audit::validate::traceability::problems`,
//! the same that validate's check TM-1 applies; the second test shows they catch each breach.

use protokd::audit::validate::traceability::{problems, requirements, scan, tests_of};
use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn every_requirement_is_traced_and_every_test_is_tagged() {
    let reqs = requirements();
    assert!(
        reqs.len() >= 30,
        "docs/requirements.md lists {} requirements",
        reqs.len()
    );
    let ids: BTreeSet<&str> = reqs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), reqs.len(), "a requirement id appears twice");
    for r in &reqs {
        let parts: Vec<&str> = r.id.split('-').collect();
        assert!(
            parts.len() == 3 && parts[2].parse::<u32>().is_ok() && !r.text.is_empty(),
            "malformed requirement row {}",
            r.id
        );
    }
    let tests = scan(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert!(tests.len() > 300, "found only {} tests", tests.len());
    let p = problems(&reqs, &tests);
    assert!(
        p.is_empty(),
        "{} traceability problems:\n{}",
        p.len(),
        p.join("\n")
    );
}

#[test]
fn the_rules_catch_an_untagged_test_an_unknown_id_and_an_untraced_requirement() {
    let test = format!("#[{}]", "test");
    let text = [
        "// Verifies: R-NUM-4".to_string(),
        test.clone(),
        "fn tagged() {}".to_string(),
        test.clone(),
        "fn untagged() {}".to_string(),
        "/// A doc line.".to_string(),
        "// Verifies: R-NOPE-1".to_string(),
        test.clone(),
        "#[ignore]".to_string(),
        "fn unknown() {}".to_string(),
    ]
    .join("\n");
    let tests = tests_of("x.rs", &text);
    let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["tagged", "untagged", "unknown"]);
    assert_eq!(tests[0].ids, ["R-NUM-4"]);
    assert!(tests[1].ids.is_empty());
    let reqs = requirements();
    let p = problems(&reqs, &tests).join("\n");
    assert!(p.contains("x.rs:4: test untagged has no"), "{p}");
    assert!(p.contains("x.rs:8: test unknown names R-NOPE-1"), "{p}");
    // R-NUM-7 is verified by tests alone: no validate check names it.
    assert!(
        p.contains("R-NUM-7 has no test and no validate check"),
        "{p}"
    );
    assert!(!p.contains("R-NUM-4 has no test"), "{p}");

    let whole =
        format!("// Verifies (every test in this file): R-NUM-7, R-NUM-4\n{test}\nfn a() {{}}");
    let t = tests_of("y.rs", &whole);
    assert_eq!(t[0].ids, ["R-NUM-7", "R-NUM-4"]);
}
