use super::*;
use proptest::prelude::*;

#[test]
fn good_values_parse() {
    assert!(ProjectKey::parse("calc").is_ok());
    assert_eq!(RepoName::parse("acme/calc-app").unwrap().owner(), "acme");
    assert_eq!(RepoName::parse("acme/calc-app").unwrap().name(), "calc-app");
    assert!(BranchName::parse("feature/add-subtract").is_ok());
    assert!(BranchName::parse("release/1.2.3+build").is_ok());
    assert_eq!(
        SpecPath::parse(".kiro/specs/subtract/").unwrap().as_str(),
        ".kiro/specs/subtract"
    );
    assert_eq!(SpecPath::parse("subtract").unwrap().feature(), "subtract");
    assert_eq!(PrNumber::parse("#12").unwrap(), PrNumber(12));
    assert!(ItemId::parse("PVTI_lADOBx9Q").is_ok());
    for bad in [".", "..", "-x", "_x", ":x"] {
        assert_eq!(ItemId::parse(bad).expect_err(bad).field, "item id");
    }
}

#[test]
fn hostile_branches_are_rejected_with_the_field_named() {
    for bad in [
        "feature/$(rm -rf /)",
        "a;b",
        "a b",
        "../etc",
        "a..b",
        "-rf",
        "a/",
        "/a",
        "a//b",
        "a.lock",
        "a/.hidden",
        "a.",
        "a~1",
        "a^",
        "a:b",
        "a@{1}",
        "a\nb",
        "a`id`",
        "HEAD",
        "",
    ] {
        let err = BranchName::parse(bad).expect_err(bad);
        assert_eq!(err.field, "branch");
        assert!(err.to_string().starts_with("invalid branch "), "{err}");
    }
    assert!(BranchName::parse(&"a".repeat(201)).is_err());
}

#[test]
fn spec_paths_cannot_leave_the_specs_folder() {
    for bad in [
        "/etc/passwd",
        "../x",
        ".kiro/specs/../../x",
        ".kiro/specs/a/b",
        ".kiro/steering/x",
        ".kiro/specs/",
        "a\\b",
        "Feature",
        ".kiro/specs/.hidden",
        "x;rm",
    ] {
        let err = SpecPath::parse(bad).expect_err(bad);
        assert_eq!(err.field, "spec", "{bad}");
    }
}

#[test]
fn repos_must_be_owner_slash_name() {
    for bad in [
        "calc", "acme/", "/calc", "a/b/c", "-a/b", "a--b/c", "acme/..", "acme/c d", "acme/$x",
    ] {
        assert_eq!(RepoName::parse(bad).expect_err(bad).field, "repo");
    }
}

#[test]
fn logins_follow_githubs_rules() {
    for good in ["Copilot", "octo-cat", "a1", "a", &"x".repeat(39)] {
        assert_eq!(Login::parse(good).expect(good).as_str(), good);
    }
    for bad in [
        "-x",
        "x-",
        "a b",
        "@x",
        "x\n",
        "",
        "a_b",
        "a.b",
        "ü",
        &"x".repeat(40),
    ] {
        let err = Login::parse(bad).expect_err(bad);
        assert_eq!(err.field, "login", "{bad}");
        assert!(err.to_string().starts_with("invalid login "), "{err}");
    }
    let l = Login::parse("octo-cat").unwrap();
    assert_eq!(l.to_string(), "octo-cat");
    assert_eq!(
        serde_json::to_value(&l).unwrap(),
        serde_json::json!("octo-cat")
    );
    let decoded: Result<Login, _> = serde_json::from_str("\"@octo\"");
    assert!(decoded.unwrap_err().to_string().contains("invalid login"));
}

#[test]
fn error_values_are_escaped_and_truncated() {
    let e = BranchName::parse("evil\u{1b}[31m\nline").unwrap_err();
    let shown = e.to_string();
    assert!(
        !shown.contains('\n') && !shown.contains('\u{1b}'),
        "{shown}"
    );
    let long = ItemId::parse(&"x".repeat(500)).unwrap_err();
    assert!(long.value.chars().count() < 70);
}

#[test]
fn deserialize_validates() {
    let r: Result<BranchName, _> = serde_json::from_str("\"a..b\"");
    assert!(r.is_err());
    let ok: SpecPath = serde_json::from_str("\"calc\"").unwrap();
    assert_eq!(ok.as_str(), ".kiro/specs/calc");
}

const SHELL_META: &[char] = &[
    '$', '`', ';', '|', '&', '>', '<', '(', ')', '{', '}', '\'', '"', '\\', '*', '?', '!', '#',
    '~', ' ', '\n', '\t', '\0',
];

proptest! {
    #[test]
    fn parsed_values_never_hold_shell_metacharacters(s in "\\PC{0,80}") {
        if let Ok(b) = BranchName::parse(&s) {
            prop_assert!(!b.as_str().contains(SHELL_META));
        }
        if let Ok(p) = SpecPath::parse(&s) {
            prop_assert!(p.as_str().starts_with(".kiro/specs/"));
            prop_assert!(!p.as_str().contains(".."));
            prop_assert!(!p.as_str().contains(SHELL_META));
        }
        if let Ok(r) = RepoName::parse(&s) {
            prop_assert!(!r.as_str().contains(SHELL_META));
        }
        if let Ok(k) = ProjectKey::parse(&s) {
            prop_assert!(!k.as_str().contains(SHELL_META));
        }
        if let Ok(l) = Login::parse(&s) {
            prop_assert!(!l.as_str().contains(SHELL_META) && !l.as_str().contains('@'));
        }
    }

    /// Decoding (from the queue, a job record, …) never accepts what `parse` rejects,
    /// and accepts what it accepts.
    #[test]
    fn decode_accepts_exactly_what_parse_accepts(s in "\\PC{0,80}|[0-9#]{0,16}") {
        let json = serde_json::Value::String(s.clone());
        prop_assert_eq!(serde_json::from_value::<ItemId>(json.clone()).is_ok(), ItemId::parse(&s).is_ok());
        prop_assert_eq!(serde_json::from_value::<ProjectKey>(json.clone()).is_ok(), ProjectKey::parse(&s).is_ok());
        prop_assert_eq!(serde_json::from_value::<RepoName>(json.clone()).is_ok(), RepoName::parse(&s).is_ok());
        prop_assert_eq!(serde_json::from_value::<BranchName>(json.clone()).is_ok(), BranchName::parse(&s).is_ok());
        prop_assert_eq!(serde_json::from_value::<SpecPath>(json.clone()).is_ok(), SpecPath::parse(&s).is_ok());
        prop_assert_eq!(serde_json::from_value::<Login>(json.clone()).is_ok(), Login::parse(&s).is_ok());
        prop_assert_eq!(serde_json::from_value::<PrNumber>(json).is_ok(), PrNumber::parse(&s).is_ok());
    }

    #[test]
    fn a_decoded_pr_number_is_one_parse_accepts(n in any::<u64>()) {
        let decoded = serde_json::from_value::<PrNumber>(serde_json::json!(n));
        prop_assert_eq!(decoded.is_ok(), PrNumber::parse(&n.to_string()).is_ok());
        prop_assert_eq!(decoded.is_ok(), (1..=PrNumber::MAX).contains(&n));
    }

    #[test]
    fn valid_branches_round_trip(s in "[a-z][a-z0-9]{0,10}(/[a-z0-9][a-z0-9-]{0,10}){0,3}") {
        let b = BranchName::parse(&s).unwrap();
        prop_assert_eq!(b.as_str(), s.as_str());
    }
}
