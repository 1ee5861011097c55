use super::parse::{LIST_MARKER, MAP_MARKER};
use super::*;
use kiro_protocol::{FailureClass, ItemStatus, PortError};

fn p(text: &str) -> Result<BoardFile, BoardFileError> {
    parse(Path::new("board.yaml"), text)
}

#[test]
fn the_documented_format_parses_with_numbers_as_text() {
    let f = p(r#"
# comments allowed
items:
  - id: CALC-1
    project: calc
    title: Add a subtract function
    status: For Implementation     # any status name
    repo: acme/calc
    branch: feature/subtract
    spec: .kiro/specs/subtract
    pr: 1
    updated_at: "2026-11-01T10:00:00Z"
    assignees: [octo-cat, Copilot]
  - id: 42
    project: 7
    status: in progress
    pr: 3.5
    updated_at: 2026-11-01T10:00:00Z
pull_requests:
  - repo: acme/calc
    number: 1
    head: feature/subtract
    title: Subtract
"#)
    .unwrap();
    assert_eq!(f.items.len(), 2);
    let a = &f.items[0];
    assert_eq!(a.item.pr, "1");
    assert_eq!(a.item.spec, ".kiro/specs/subtract");
    assert_eq!(a.item.updated_at, "2026-11-01T10:00:00Z");
    assert_eq!(a.file_status(), Some(ItemStatus::Ready));
    assert_eq!(a.line, 4);
    assert_eq!(a.item.assignees, ["octo-cat", "Copilot"]);
    let logins = a.item.validate().unwrap().assignees;
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[1].as_str(), "Copilot");
    let b = &f.items[1];
    assert_eq!(b.item.id, "42");
    assert_eq!(b.item.project, "7");
    assert_eq!(b.item.pr, "3.5");
    assert_eq!(b.item.updated_at, "2026-11-01T10:00:00Z");
    assert_eq!(b.file_status(), Some(ItemStatus::InProgress));
    assert!(b.item.assignees.is_empty(), "the field is optional");
    assert_eq!(f.pull_requests.len(), 1);
    assert_eq!(f.pull_requests[0].number, "1");
    assert!(f.pull_requests[0].open);
}

#[test]
fn missing_null_and_structured_fields_do_not_fail_the_file() {
    let f = p(r#"
items:
  - id: A-1
    project: calc
    branch: ~
    spec: [a, b]
    repo: {owner: acme}
    surprise: ignored
  - id: A-2
"#)
    .unwrap();
    let a = &f.items[0].item;
    assert_eq!(a.branch, "");
    assert_eq!(a.title, "");
    assert_eq!(a.spec, LIST_MARKER);
    assert_eq!(a.repo, MAP_MARKER);
    let err = a.validate().unwrap_err();
    assert_eq!(err.error.field, "repo");
    assert_eq!(f.items[1].item.project, "");
    assert_eq!(f.items[1].file_status(), None);
    assert!(f.items[1].item.validate().is_err());
}

#[test]
fn assignees_are_read_leniently_and_validation_names_the_field() {
    let f = p(r#"
items:
  - {id: A-1, assignees: octo-cat}
  - {id: A-2, assignees: ~}
  - {id: A-3, assignees: ["@octo", 7]}
  - {id: A-4, assignees: {login: octo}}
  - {id: A-5, assignees: [[a]]}
  - {id: A-6, assignees: []}
"#)
    .unwrap();
    let got: Vec<&[String]> = f.items.iter().map(|i| &i.item.assignees[..]).collect();
    assert_eq!(got[0], ["octo-cat"], "a single login is a list of one");
    assert!(got[1].is_empty());
    assert_eq!(got[2], ["@octo", "7"]);
    assert_eq!(got[3], [MAP_MARKER]);
    assert_eq!(got[4], [LIST_MARKER]);
    assert!(got[5].is_empty());
    for i in [2, 3, 4] {
        let mut item = f.items[i].item.clone();
        item.project = "calc".into();
        item.repo = "acme/calc".into();
        item.branch = "feature/x".into();
        item.spec = "x".into();
        item.pr = "1".into();
        let err = item.validate().unwrap_err();
        assert_eq!(err.error.field, "assignees", "{err}");
        assert!(
            err.to_string().contains(&format!("item \"A-{}\"", i + 1)),
            "{err}"
        );
    }
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let err = p("items:\n  - id: A-1\n    title: [unclosed\n  - id: A-2\n").unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("board file board.yaml, line "), "{shown}");
    assert!(
        matches!(err, BoardFileError::Syntax { line, .. } if line > 0),
        "{shown}"
    );
    assert!(!shown.contains('\n'), "{shown}");
}

#[test]
fn unknown_top_level_keys_are_errors() {
    let err = p("itemz:\n  - id: A-1\n").unwrap_err();
    assert!(matches!(err, BoardFileError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("itemz"), "{err}");
}

#[test]
fn duplicate_ids_reject_those_items_by_name_and_the_rest_goes() {
    let f = p("items:\n  - id: A-1\n  - id: B-1\n  - id: A-1\n").unwrap();
    assert_eq!(f.items.len(), 3);
    let conflicts: Vec<_> = f.items.iter().map(|i| i.item.conflict.clone()).collect();
    let dup = "used by 2 items of board file board.yaml (lines 2, 4); ids must be unique";
    assert_eq!(
        conflicts,
        [Some(dup.to_owned()), None, Some(dup.to_owned())]
    );
    let err = f.items[0].item.validate().unwrap_err();
    assert_eq!(err.error.field, "id");
    assert_eq!(err.item, "\"A-1\"");
    assert!(f.items[1].item.conflict.is_none());

    let f = p("pull_requests:\n  - {repo: a/b, number: 1}\n  - {repo: a/b, number: '#1'}\n  - {repo: a/b, number: 2}\n")
            .unwrap();
    let err = f.pull_requests[0]
        .unambiguous(Path::new("board.yaml"))
        .unwrap_err();
    assert_eq!(err.class, FailureClass::PermanentInput);
    assert!(
        err.message.contains("listed 2 times (lines 2, 3)"),
        "{}",
        err.message
    );
    assert!(
        f.pull_requests[2]
            .unambiguous(Path::new("board.yaml"))
            .is_ok()
    );
}

/// What is not a regular UTF-8 file is refused at once, permanently, by name (a FIFO
/// would otherwise block the reader forever).
#[test]
fn only_regular_utf8_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success(), "mkfifo");
    let bad_utf8 = dir.path().join("latin1.yaml");
    std::fs::write(&bad_utf8, b"items:\n  - id: A-1\n    title: caf\xe9\n").unwrap();
    let big = dir.path().join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_BOARD_FILE + 1).unwrap();
    let cases: [(&Path, &str); 4] = [
        (&fifo, "is a FIFO, not a regular file"),
        (dir.path(), "is a directory, not a regular file"),
        (&bad_utf8, "line 3: not UTF-8 text"),
        (&big, "is larger than 16777216 bytes"),
    ];
    for (path, want) in cases {
        let err = load_now(path).unwrap_err();
        assert!(err.to_string().contains(want), "{}: {err}", path.display());
        assert!(err.to_string().contains(&path.display().to_string()));
        let port: PortError = err.into();
        assert_eq!(
            port.class,
            FailureClass::PermanentInput,
            "{}",
            path.display()
        );
    }
}

#[test]
fn empty_and_comment_only_files_are_empty_boards() {
    assert_eq!(p("").unwrap(), BoardFile::default());
    assert_eq!(p("# nothing yet\n\n").unwrap(), BoardFile::default());
    assert_eq!(p("items:\n").unwrap(), BoardFile::default());
}

#[test]
fn status_names_are_case_and_spacing_insensitive() {
    assert_eq!(parse_status("FOR IMPLEMENTATION"), Some(ItemStatus::Ready));
    assert_eq!(parse_status("for-implementation"), Some(ItemStatus::Ready));
    assert_eq!(parse_status("In Progress"), Some(ItemStatus::InProgress));
    assert_eq!(parse_status("in_progress"), Some(ItemStatus::InProgress));
    assert_eq!(parse_status(" done "), Some(ItemStatus::Done));
    assert_eq!(parse_status("Failed"), Some(ItemStatus::Failed));
    assert_eq!(parse_status("Queued"), Some(ItemStatus::Queued));
    assert_eq!(parse_status("Backlog"), None);
    assert_eq!(parse_status(""), None);
    for s in ItemStatus::ALL {
        assert_eq!(parse_status(s.default_name()), Some(s));
    }
}
