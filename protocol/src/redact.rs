//! Secret redaction for text that leaves the process: logs, span attributes, board notes,
//! pull-request reports and every file the worker writes.
//!
//! Invariant: [`redact`] replaces every value that looks like a credential with
//! [`REDACTED`] (for a URL's user-info: `***`), in one linear pass of one regular
//! expression, and leaves all other text as it was. The families ([`FAMILIES`] names
//! them, each tested with a positive and a near-miss case):
//! - GitHub: classic (`ghp_`, `gho_` OAuth, `ghu_`, `ghs_` App installation, `ghr_`),
//!   fine-grained (`github_pat_`), legacy App installation tokens (`v1.` + 40 hex);
//! - AWS: access key ids (`AKIA…`, `ASIA…`), secret keys and session tokens after
//!   `aws_secret_access_key` / `AWS_SECRET_ACCESS_KEY` / `aws_session_token` (`=` or `:`)
//!   and as JSON `"SecretAccessKey"` / `"SessionToken"` / `"Token"` values;
//! - Kiro API keys (`ksk_`), GitLab (`glpat-`), Slack (`xoxa-`, `xoxb-`, `xoxp-`,
//!   `xoxr-`, `xoxs-`);
//! - `Bearer <token>`, `Authorization: <value>` headers, PEM private key blocks;
//! - the user-info of any URL (`https://user:pass@host` → `https://***@host`);
//! - the value of an assignment whose name ends in `token`, `secret`, `password`,
//!   `passwd`, `api_key`/`apikey`, `access_key`, `private_key` (keys of unknown prefixes).
//!
//! It over-redacts rather than under-redacts: a token prefix followed by enough token
//! characters is removed wherever it appears, even inside a longer word.
//! [`LineRedactor`] does the same for text that arrives line by line, and also removes
//! the inner lines of a PEM block split over several lines.

use std::sync::LazyLock;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The token families [`redact`] knows, by name (for documentation and tests).
pub const FAMILIES: &[&str] = &[
    "pem-private-key",
    "url-userinfo",
    "authorization-header",
    "bearer",
    "aws-secret-assignment",
    "aws-secret-json",
    "github-fine-grained",
    "github-classic",
    "github-app-v1",
    "aws-key-id",
    "kiro",
    "gitlab",
    "slack",
    "secret-assignment",
];

/// One alternation, most specific first (the leftmost match wins; at one position, the
/// first alternative that matches). Groups named `keep…` are written back as they were.
const PATTERN: &str = concat!(
    // PEM private key blocks (to the end of the text when the END line is missing).
    r"(?P<pem>-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z))",
    // The user-info of any URL: `scheme://user[:password]@`.
    r"|(?P<keepscheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#@\[\]]+)@",
    // `Authorization: <scheme> <value>` (header or assignment).
    r#"|(?P<keepauth>(?i:\bauthorization)["']?\s*[:=]\s*["']?)(?:(?i:bearer|basic|token|bot|digest)\s+)?[^\s"',;]+"#,
    r"|(?P<keepbearer>(?i:\bbearer)\s+)[A-Za-z0-9\-._~+/]{16,}=*",
    // AWS secrets after their names, and as JSON values.
    r#"|(?P<keepawsk>(?i:\baws_secret_access_key|\baws_session_token)["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{16,}"#,
    r#"|(?P<keepawsj>"(?:SecretAccessKey|SessionToken|Token)"\s*:\s*")[A-Za-z0-9/+=]{16,}"#,
    // Token prefixes.
    r"|github_pat_[A-Za-z0-9_\-]{8,}",
    r"|gh[pousr]_[A-Za-z0-9_\-]{8,}",
    r"|\bv1\.[0-9a-f]{40}\b",
    r"|A[KS]IA[A-Z0-9]{16}",
    r"|ksk_[A-Za-z0-9_\-]{8,}",
    r"|glpat-[A-Za-z0-9_\-]{16,}",
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}",
    // Keys of unknown prefixes: the value of `…token=`, `…secret: `, `…password=` ….
    // The name starts a word that is not part of a path (`/etc/passwd: …` is not a secret).
    r#"|(?P<keepassign>(?m:^|[^/A-Za-z0-9_.\-])[A-Za-z0-9_.\-]*(?i:token|secret|password|passwd|api_?key|access_?key|private_?key)["']?\s*[:=]\s*["']?)[^\s"',;]{8,}"#,
);

static RE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(PATTERN).expect("the redaction pattern compiles"));

static PEM_BEGIN: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----").expect("compiles")
});

static PEM_END: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"-----END [A-Z0-9 ]*PRIVATE KEY-----").expect("compiles"));

/// `text` with every credential-looking value replaced by [`REDACTED`] (`***` for a
/// URL's user-info).
pub fn redact(text: &str) -> String {
    RE.replace_all(text, |c: &regex::Captures<'_>| {
        if let Some(scheme) = c.name("keepscheme") {
            return format!("{}***@", scheme.as_str());
        }
        let kept = [
            "keepauth",
            "keepbearer",
            "keepawsk",
            "keepawsj",
            "keepassign",
        ]
        .iter()
        .find_map(|k| c.name(k))
        .map_or("", |m| m.as_str());
        format!("{kept}{REDACTED}")
    })
    .into_owned()
}

/// [`redact`] for text that arrives line by line: the lines inside a PEM private key
/// block (between its BEGIN and END lines) are replaced whole.
#[derive(Debug, Default, Clone)]
pub struct LineRedactor {
    in_pem: bool,
}

impl LineRedactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// One line (without its newline), redacted.
    pub fn line(&mut self, line: &str) -> String {
        if self.in_pem {
            if let Some(end) = PEM_END.find(line) {
                self.in_pem = false;
                return format!("{REDACTED}{}", redact(&line[end.end()..]));
            }
            return REDACTED.to_owned();
        }
        let out = redact(line);
        // A BEGIN without its END on this line opens a block (the redacted line then
        // ends in REDACTED: `redact` took the rest of the line).
        if let Some(begin) = PEM_BEGIN.find_iter(line).last() {
            self.in_pem = !PEM_END.is_match(&line[begin.end()..]);
        }
        out
    }
}

#[cfg(test)]
mod tests;
