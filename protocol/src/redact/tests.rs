//! One table per token family: positive cases (the value is gone, the rest stays) and
//! near misses (left exactly as they were).

use super::*;

/// (family, input, expected) — the family's values must be gone.
const POSITIVE: &[(&str, &str, &str)] = &[
    (
        "github-classic",
        "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 end",
        "token [REDACTED] end",
    ),
    ("github-classic", "(gho_aaaaaaaaaa)", "([REDACTED])"),
    ("github-classic", "u ghu_0123456789abcdef.", "u [REDACTED]."),
    ("github-classic", "x ghs_0123456789abcdef.", "x [REDACTED]."),
    ("github-classic", "r=ghr_0123456789abcdef", "r=[REDACTED]"),
    (
        "github-fine-grained",
        "GH_TOKEN=github_pat_11ABCDEFG0_abcdefXYZ",
        "GH_TOKEN=[REDACTED]",
    ),
    (
        "github-app-v1",
        "installation v1.0123456789abcdef0123456789abcdef01234567 ok",
        "installation [REDACTED] ok",
    ),
    ("aws-key-id", "key AKIAIOSFODNN7EXAMPLE!", "key [REDACTED]!"),
    ("aws-key-id", "ASIAABCDEFGHIJKLMNOP", "[REDACTED]"),
    (
        "aws-secret-assignment",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY done",
        "AWS_SECRET_ACCESS_KEY=[REDACTED] done",
    ),
    (
        "aws-secret-assignment",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = [REDACTED]",
    ),
    (
        "aws-secret-json",
        r#"{"AccessKeyId":"x","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","Token":"IQoJb3JpZ2luX2VjEXAMPLE"}"#,
        r#"{"AccessKeyId":"x","SecretAccessKey":"[REDACTED]","Token":"[REDACTED]"}"#,
    ),
    (
        "kiro",
        "KIRO_API_KEY=ksk_live-abc123DEF456",
        "KIRO_API_KEY=[REDACTED]",
    ),
    (
        "gitlab",
        "push glpat-abcdefghij0123456789 now",
        "push [REDACTED] now",
    ),
    (
        "slack",
        "hook xoxb-1234567890-abcdefghij x",
        "hook [REDACTED] x",
    ),
    ("slack", "xoxp-1234567890-abcdef", "[REDACTED]"),
    (
        "bearer",
        "sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "sent Bearer [REDACTED]",
    ),
    (
        "authorization-header",
        "Authorization: token abc123",
        "Authorization: [REDACTED]",
    ),
    (
        "authorization-header",
        "-H 'authorization: Basic dXNlcjpwYXNz' x",
        "-H 'authorization: [REDACTED]' x",
    ),
    (
        "url-userinfo",
        "clone https://u:glpat-abcdefghij0123456789@gitlab.example/a/b.git done",
        "clone https://***@gitlab.example/a/b.git done",
    ),
    (
        "url-userinfo",
        "remote https://x-access-token:s3cr3t@github.com/acme/calc.git",
        "remote https://***@github.com/acme/calc.git",
    ),
    (
        "url-userinfo",
        "proxy http://someone@proxy.internal:3128",
        "proxy http://***@proxy.internal:3128",
    ),
    (
        "pem-private-key",
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----\nafter",
        "key:\n[REDACTED]\nafter",
    ),
    (
        "pem-private-key",
        "-----BEGIN PRIVATE KEY-----\nMIIE truncated",
        "[REDACTED]",
    ),
    (
        "secret-assignment",
        "DB_PASSWORD=hunter2hunter2 next",
        "DB_PASSWORD=[REDACTED] next",
    ),
    (
        "secret-assignment",
        r#"{"npm_token": "npm_0123456789abcdef"}"#,
        r#"{"npm_token": "[REDACTED]"}"#,
    ),
    (
        "secret-assignment",
        "CUSTOM_API_KEY: zz-unknown-prefix-123456",
        "CUSTOM_API_KEY: [REDACTED]",
    ),
];

/// (family, text) — near misses that must stay exactly as they were.
const NEAR_MISS: &[(&str, &str)] = &[
    ("github-classic", "the ghp_ prefix alone is not a token"),
    ("github-classic", "ghx_abcdefghijkl is no family"),
    ("github-fine-grained", "github_pat_short"),
    ("github-app-v1", "version v1.0123 and v1.2.3"),
    ("aws-key-id", "AKIA is four letters; AKIAshort too"),
    ("aws-secret-assignment", "AWS_SECRET_ACCESS_KEY is not set"),
    ("aws-secret-json", r#"{"SecretAccessKey": ""}"#),
    ("kiro", "ksk_ab"),
    ("gitlab", "glpat-short"),
    ("slack", "xoxz-1234567890-abcdefghij and xoxb-short"),
    ("bearer", "a bearer token is sent"),
    ("authorization-header", "no authorization needed"),
    (
        "url-userinfo",
        "https://github.com/acme/calc.git and mail@example.com",
    ),
    ("url-userinfo", "see https://host/path?q=a@b"),
    (
        "pem-private-key",
        "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    ),
    ("secret-assignment", "tokens: 12 used, password: short"),
    (
        "secret-assignment",
        "item \"/etc/passwd\": invalid item id \"/etc/passwd\": character / is not allowed",
    ),
    ("plain", "Coverage 78% is below the threshold of 80%"),
    ("plain", "émoji ✓ and ünïcode stay"),
    ("plain", ""),
];

#[test]
fn every_family_has_positive_and_near_miss_cases() {
    for family in FAMILIES {
        assert!(
            POSITIVE.iter().any(|(f, _, _)| f == family),
            "{family}: no positive case"
        );
        assert!(
            NEAR_MISS.iter().any(|(f, _)| f == family),
            "{family}: no near miss"
        );
    }
}

#[test]
fn each_family_is_redacted() {
    for (family, input, want) in POSITIVE {
        assert_eq!(&redact(input), want, "{family}: {input}");
    }
}

#[test]
fn near_misses_are_untouched() {
    for (family, text) in NEAR_MISS {
        assert_eq!(&redact(text), text, "{family}");
    }
}

#[test]
fn several_tokens_in_one_text_and_multiline() {
    let t = "a ghp_1111111111111111\nb ksk_2222222222222222\nAKIAABCDEFGHIJKLMNOP";
    let r = redact(t);
    assert_eq!(r, "a [REDACTED]\nb [REDACTED]\n[REDACTED]");
    assert!(!r.contains("1111") && !r.contains("2222") && !r.contains("ABCD"));
}

#[test]
fn an_aws_key_takes_exactly_sixteen_characters() {
    assert_eq!(redact("AKIAABCDEFGHIJKLMNOPQRS"), "[REDACTED]QRS");
}

#[test]
fn redaction_is_idempotent() {
    for (_, input, _) in POSITIVE {
        let once = redact(input);
        assert_eq!(redact(&once), once, "{input}");
    }
}

#[test]
fn a_pem_block_split_over_lines_is_removed_line_by_line() {
    let mut r = LineRedactor::new();
    let lines = [
        "before ghp_abcdefghijkl",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
        "AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFake",
        "-----END OPENSSH PRIVATE KEY----- tail",
        "after",
    ];
    let out: Vec<String> = lines.iter().map(|l| r.line(l)).collect();
    assert_eq!(
        out,
        [
            "before [REDACTED]",
            "[REDACTED]",
            "[REDACTED]",
            "[REDACTED]",
            "[REDACTED] tail",
            "after"
        ]
    );
}
