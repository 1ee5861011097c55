//! Secret redaction for text that leaves the process: logs, span attributes, board notes and pull-request reports.
//!
//! Invariant: [`redact`] replaces every value that looks like a credential — GitHub tokens
//! (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), Kiro API keys (`ksk_`) and AWS
//! access key ids (`AKIA…`, `ASIA…`) — with [`REDACTED`], and leaves all other text as it
//! was. It over-redacts rather than under-redacts: a prefix followed by enough token
//! characters is removed wherever it appears, even inside a longer word.

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// A token family: its prefix, which characters may follow, and how many at least.
struct Pattern {
    prefix: &'static str,
    allowed: fn(char) -> bool,
    min_tail: usize,
    max_tail: usize,
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn aws_key_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

const PATTERNS: &[Pattern] = &[
    // `github_pat_` first: it must win over shorter prefixes at the same position.
    Pattern {
        prefix: "github_pat_",
        allowed: token_char,
        min_tail: 8,
        max_tail: usize::MAX,
    },
    Pattern {
        prefix: "ghp_",
        allowed: token_char,
        min_tail: 8,
        max_tail: usize::MAX,
    },
    Pattern {
        prefix: "gho_",
        allowed: token_char,
        min_tail: 8,
        max_tail: usize::MAX,
    },
    Pattern {
        prefix: "ghu_",
        allowed: token_char,
        min_tail: 8,
        max_tail: usize::MAX,
    },
    Pattern {
        prefix: "ghs_",
        allowed: token_char,
        min_tail: 8,
        max_tail: usize::MAX,
    },
    Pattern {
        prefix: "ghr_",
        allowed: token_char,
        min_tail: 8,
        max_tail: usize::MAX,
    },
    Pattern {
        prefix: "ksk_",
        allowed: token_char,
        min_tail: 8,
        max_tail: usize::MAX,
    },
    Pattern {
        prefix: "AKIA",
        allowed: aws_key_char,
        min_tail: 16,
        max_tail: 16,
    },
    Pattern {
        prefix: "ASIA",
        allowed: aws_key_char,
        min_tail: 16,
        max_tail: 16,
    },
];

/// `text` with every token-looking value replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while let Some(c) = rest.chars().next() {
        for p in PATTERNS {
            let Some(after) = rest.strip_prefix(p.prefix) else {
                continue;
            };
            let tail: usize = after
                .chars()
                .take_while(|c| (p.allowed)(*c))
                .take(p.max_tail)
                .map(char::len_utf8)
                .sum();
            if after[..tail].chars().count() >= p.min_tail {
                out.push_str(REDACTED);
                rest = &after[tail..];
                continue 'scan;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_of_every_family_are_removed() {
        let cases = [
            (
                "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 end",
                "token [REDACTED] end",
            ),
            (
                "GH_TOKEN=github_pat_11ABCDEFG0_abcdefXYZ",
                "GH_TOKEN=[REDACTED]",
            ),
            ("x ghs_0123456789abcdef.", "x [REDACTED]."),
            (
                "KIRO_API_KEY=ksk_live-abc123DEF456",
                "KIRO_API_KEY=[REDACTED]",
            ),
            ("key AKIAIOSFODNN7EXAMPLE!", "key [REDACTED]!"),
            ("(gho_aaaaaaaaaa)", "([REDACTED])"),
        ];
        for (input, want) in cases {
            let got = redact(input);
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_untouched() {
        for text in [
            "Coverage 78% is below the threshold of 80%",
            "the ghp_ prefix alone is not a token",
            "AKIA is four letters; AKIAshort too",
            "ksk_ab",
            "émoji ✓ and ünïcode stay",
            "",
        ] {
            assert_eq!(redact(text), text);
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
}
