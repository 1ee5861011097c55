//! Test reports as CodeBuild handles them after the build phases: for each group of the
//! buildspec's `reports` section whose `files` globs (under `base-directory`, relative to
//! the source directory) match at least one file, CodeBuild — with the service role —
//! creates the report group `<project>-<name>` the first time (`CreateReportGroup`),
//! then a report (`CreateReport`), its test cases (`BatchPutTestCases`) and its final
//! state (`UpdateReport`). These are permission-only actions (no public API), so the
//! emulator records them as calls it made itself, for the IAM measurement; it parses no
//! report file.
//!
//! Invariant: a group with no matching file records nothing; a report group is created
//! once per emulator.

use super::run::RunInput;
use crate::aws::iam::wildcard_match;
use crate::aws::record::{Answerer, RecordedCall};
use crate::aws::{Shared, lock};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `pattern` (`/`-separated, `**` for any number of directories, `*`/`?` within one)
/// matches the relative `path`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let v: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    fn go(p: &[&str], v: &[&str]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some((&"**", rest)) => (0..=v.len()).any(|i| go(rest, &v[i..])),
            Some((seg, rest)) => v
                .split_first()
                .is_some_and(|(first, tail)| wildcard_match(seg, first) && go(rest, tail)),
        }
    }
    go(&p, &v)
}

fn files_under(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            files_under(&path, root, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

/// The report groups of `buildspec` that have at least one matching file under `src`.
pub fn groups_with_files(buildspec: &str, src: &Path) -> Vec<String> {
    let Ok(doc) = serde_saphyr::from_str::<Value>(buildspec) else {
        return Vec::new();
    };
    let Some(reports) = doc.get("reports").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, group) in reports {
        let base: PathBuf = match group.get("base-directory").and_then(Value::as_str) {
            Some(b) => src.join(b),
            None => src.to_path_buf(),
        };
        let patterns: Vec<&str> = group
            .get("files")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut files = Vec::new();
        files_under(&base, &base, &mut files);
        if files
            .iter()
            .any(|f| patterns.iter().any(|p| glob_match(p, f)))
        {
            out.push(name.clone());
        }
    }
    out
}

/// Record CodeBuild's report calls for the build of `input` (see the module doc).
pub(crate) fn record(shared: &Shared, input: &RunInput) {
    let src = input.dir.join(kiro_local_build::exec::SRC_DIR);
    let cfg = &shared.cfg;
    let key = shared.credentials_for(&input.service_role).access_key_id;
    for name in groups_with_files(&input.buildspec, &src) {
        let group = format!("{}-{name}", input.project);
        let arn = format!(
            "arn:aws:codebuild:{}:{}:report-group/{group}",
            cfg.region, cfg.account
        );
        let created = lock(&shared.codebuild).report_groups.insert(group);
        let mut actions = Vec::new();
        if created {
            actions.push("CreateReportGroup");
        }
        actions.extend(["CreateReport", "BatchPutTestCases", "UpdateReport"]);
        for action in actions {
            shared.record(RecordedCall {
                seq: 0,
                access_key_id: Some(key.clone()),
                role: Some(input.service_role.clone()),
                service: Some("codebuild".into()),
                region: Some(cfg.region.clone()),
                action: Some(action.into()),
                target: None,
                resources: vec![arn.clone()],
                response_arn: None,
                status: Some(200),
                answered_by: Answerer::Emulator,
                request: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_with_double_stars() {
        assert!(glob_match("**/junit*.xml", "junit.xml"));
        assert!(glob_match("**/junit*.xml", "a/b/junit-unit.xml"));
        assert!(glob_match("**/TEST-*.xml", "target/surefire/TEST-x.xml"));
        assert!(glob_match("test-results/**/*.xml", "test-results/a/b.xml"));
        assert!(glob_match("test-results/**/*.xml", "test-results/b.xml"));
        assert!(!glob_match("test-results/**/*.xml", "other/b.xml"));
        assert!(!glob_match("**/junit*.xml", "a/b/report.xml"));
    }

    #[test]
    fn only_groups_with_matching_files_count() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("workspace/sub");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("junit.xml"), "<testsuites/>").unwrap();
        let spec = "version: 0.2\nreports:\n  junit:\n    base-directory: workspace\n    files:\n      - \"**/junit*.xml\"\n  \
                    coverage:\n    files: [\"cov/*.xml\"]\n";
        assert_eq!(groups_with_files(spec, dir.path()), ["junit"]);
        assert!(groups_with_files("version: 0.2\n", dir.path()).is_empty());
    }
}
