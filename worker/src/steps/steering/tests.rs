//! Unit tests of the steering step.

use super::*;

#[test]
fn sources_parse() {
    assert_eq!(
        SteeringSource::parse("https://x-access-token:s3cret@github.com/acme/std.git#v2").unwrap(),
        SteeringSource::Git {
            url: "https://x-access-token:s3cret@github.com/acme/std.git".into(),
            reference: Some("v2".into())
        }
    );
    assert_eq!(
        SteeringSource::parse("https://x-access-token:s3cret@github.com/acme/std.git#v2")
            .unwrap()
            .display(),
        "https://github.com/acme/std.git#v2"
    );
    assert_eq!(
        SteeringSource::parse("git@github.com:acme/std.git").unwrap(),
        SteeringSource::Git {
            url: "git@github.com:acme/std.git".into(),
            reference: None
        }
    );
    assert_eq!(
        SteeringSource::parse("/srv/steering").unwrap(),
        SteeringSource::Dir("/srv/steering".into())
    );
    assert!(SteeringSource::parse(" ").is_err());
}

#[test]
fn names_are_validated() {
    for good in ["tech.md", "00-org-security.md", "API_rules.v2.md"] {
        assert!(valid_name(good), "{good}");
    }
    for bad in [
        "../x.md",
        "/etc/x.md",
        "a/b.md",
        ".hidden.md",
        "x.txt",
        ".md",
        "a b.md",
        "x..md",
        "é.md",
    ] {
        assert!(!valid_name(bad), "{bad}");
    }
}

#[test]
fn front_matter_is_read() {
    let (fm, body) = FrontMatter::split(
        "---\ninclusion: fileMatch\nfileMatchPattern: \"src/**/*.ts\"\n---\n# Rules\n",
    );
    assert_eq!(fm.inclusion.as_deref(), Some("fileMatch"));
    assert_eq!(fm.pattern.as_deref(), Some("src/**/*.ts"));
    assert!(!fm.always());
    assert_eq!(body, "# Rules\n");
    let (fm, body) = FrontMatter::split("# No front matter\n");
    assert!(fm.always());
    assert_eq!(body, "# No front matter\n");
    let (fm, _) = FrontMatter::split("---\nnot closed\n");
    assert_eq!(fm, FrontMatter::default());
}
