//! The spec folder: check it holds Kiro's three documents, read them, and build the
//! agent's prompt.
//!
//! Invariant: the documents are read through [`crate::checkout_fs`] — resolved inside
//! the checkout (a symlinked `.kiro`, `.kiro/specs` or document pointing outside is
//! refused), regular files only, at most [`MAX_DOC_BYTES`] (tasks.md:
//! [`crate::tasks::MAX_BYTES`]) — so a repository cannot make the worker read files
//! outside the checkout into a prompt or report; a missing or refused document is a
//! `permanent-input` failure naming it and the rule.

use crate::checkout_fs;
use crate::steps::steering::{self, SteeringFile};
use crate::tasks::{Task, TaskState};
use kiro_protocol::{Failure, FailureClass, SpecPath};
use std::path::Path;

pub const REQUIREMENTS: &str = "requirements.md";
pub const DESIGN: &str = "design.md";
pub const TASKS: &str = "tasks.md";

/// The spec's documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecDocs {
    pub requirements: String,
    pub design: String,
    pub tasks: String,
}

/// The largest requirements or design document read, in bytes (tasks.md:
/// [`crate::tasks::MAX_BYTES`]).
pub const MAX_DOC_BYTES: u64 = 1024 * 1024;

/// Read one document of the spec (confined to the checkout, see [`crate::checkout_fs`]).
pub fn read_doc(checkout: &Path, spec: &SpecPath, name: &str) -> Result<String, Failure> {
    let dir = checkout.join(spec.as_str());
    let missing =
        |what: &str| Failure::new(FailureClass::PermanentInput, format!("spec {spec}: {what}"));
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(missing("is not a folder")),
        Err(_) => return Err(missing("folder not found on the branch")),
    }
    let limit = if name == TASKS {
        crate::tasks::MAX_BYTES
    } else {
        MAX_DOC_BYTES
    };
    let rel = Path::new(spec.as_str()).join(name);
    checkout_fs::read_confined(checkout, &rel, limit).map_err(|e| {
        if e.is_missing() {
            missing(&format!("{name} is missing"))
        } else {
            Failure::new(FailureClass::PermanentInput, e.to_string())
        }
    })
}

/// Check and read the spec folder.
pub fn load(checkout: &Path, spec: &SpecPath) -> Result<SpecDocs, Failure> {
    let tasks = read_doc(checkout, spec, TASKS)?;
    let requirements = read_doc(checkout, spec, REQUIREMENTS)?;
    let design = read_doc(checkout, spec, DESIGN)?;
    Ok(SpecDocs {
        requirements,
        design,
        tasks,
    })
}

/// The most steering text (bytes) copied into the prompt; the rest is named only.
pub const STEERING_PROMPT_BYTES: usize = 32 * 1024;

/// The prompt given to the agent: the rules, the open tasks (required first, then the
/// optional ones, marked), the steering files (the always-included ones in full, within
/// [`STEERING_PROMPT_BYTES`]; the others by name), the requirements and the design.
pub fn prompt(
    spec: &SpecPath,
    docs: &SpecDocs,
    tasks: &[Task],
    steering: &[SteeringFile],
    test_cmd: &str,
    threshold: f64,
) -> String {
    let done = crate::tasks::effective_done(tasks);
    let open: Vec<&Task> = tasks
        .iter()
        .zip(&done)
        .filter(|(t, d)| !**d && t.state != TaskState::Done)
        .map(|(t, _)| t)
        .collect();
    let mut list = String::new();
    for t in open.iter().filter(|t| !t.optional) {
        list.push_str(&format!("- {} {}\n", t.id, t.title));
    }
    let optional: Vec<&&Task> = open.iter().filter(|t| t.optional).collect();
    if !optional.is_empty() {
        list.push_str(
            "\nOptional tasks (only after every required task is done; they may be skipped):\n",
        );
        for t in optional {
            list.push_str(&format!("- {} {} (optional)\n", t.id, t.title));
        }
    }
    let mut steering_text = String::new();
    let mut budget = STEERING_PROMPT_BYTES;
    for f in steering {
        let inclusion = f.front.inclusion.as_deref().unwrap_or("always");
        if f.front.always() && f.body.len() <= budget {
            budget -= f.body.len();
            steering_text.push_str(&format!(
                "----- {}/{} -----\n{}\n\n",
                steering::STEERING_DIR,
                f.name,
                f.body
            ));
        } else {
            let pattern = f
                .front
                .pattern
                .as_deref()
                .map(|p| format!(", for files matching {p}"))
                .unwrap_or_default();
            steering_text.push_str(&format!(
                "(also {}/{}: inclusion {inclusion}{pattern}; read it when it applies)\n\n",
                steering::STEERING_DIR,
                f.name
            ));
        }
    }
    format!(
        "You are running headlessly in a CI build; there is no user to ask. The current \
directory is a git checkout of the feature branch.\n\n\
Implement the spec at {spec}: complete its open tasks, listed below, required tasks first.\n\n\
Rules:\n\
1. Follow {spec}/{REQUIREMENTS} and {spec}/{DESIGN} (both below) and the steering files in .kiro/steering/ (below).\n\
2. When a task is complete, mark it done in {spec}/{TASKS} by changing its \"- [ ]\" to \"- [x]\". Leave other text in that file unchanged.\n\
3. Keep the tests passing and write tests for new code: the build runs `{test_cmd}` and requires line coverage of at least {threshold}%.\n\
4. At a checkpoint task, run the tests instead of asking the user.\n\
5. Do not commit, push or change git configuration: the build does that after checking your work.\n\
6. Do not edit files in .kiro/steering/.\n\n\
Open tasks:\n{list}\n\
{steering_section}\
----- {REQUIREMENTS} -----\n{}\n\n----- {DESIGN} -----\n{}\n",
        docs.requirements.trim_end(),
        docs.design.trim_end(),
        steering_section = if steering_text.is_empty() {
            String::new()
        } else {
            format!("Steering:\n\n{steering_text}")
        },
        threshold = crate::steps::coverage::pct(threshold),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_documents_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SpecPath::parse("subtract").unwrap();
        let e = load(dir.path(), &spec).unwrap_err();
        assert_eq!(e.class, FailureClass::PermanentInput);
        assert!(e.reason.contains("folder not found"), "{}", e.reason);
        let d = dir.path().join(".kiro/specs/subtract");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tasks.md"), "- [ ] 1. a\n").unwrap();
        std::fs::write(d.join("requirements.md"), "R").unwrap();
        let e = load(dir.path(), &spec).unwrap_err();
        assert_eq!(e.reason, "spec .kiro/specs/subtract: design.md is missing");
        std::os::unix::fs::symlink("/etc/hostname", d.join("design.md")).unwrap();
        let e = load(dir.path(), &spec).unwrap_err();
        assert_eq!(
            e.reason,
            ".kiro/specs/subtract/design.md resolves outside the checkout"
        );
    }

    /// The campaign's escape: `.kiro` (or `.kiro/specs`) a symlink to a folder outside
    /// the repository with the same layout. Nothing of it is read.
    #[test]
    fn a_symlinked_parent_cannot_reach_outside_the_checkout() {
        for link in [".kiro", ".kiro/specs"] {
            let dir = tempfile::tempdir().unwrap();
            let outside = dir.path().join("outside");
            let specs = outside.join(".kiro/specs/subtract");
            std::fs::create_dir_all(&specs).unwrap();
            for doc in [TASKS, REQUIREMENTS, DESIGN] {
                std::fs::write(specs.join(doc), "- [ ] 1. SECRET FROM OUTSIDE\n").unwrap();
            }
            let checkout = dir.path().join("checkout");
            std::fs::create_dir_all(checkout.join(link).parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(outside.join(link), checkout.join(link)).unwrap();
            let spec = SpecPath::parse("subtract").unwrap();
            let e = load(&checkout, &spec).unwrap_err();
            assert_eq!(e.class, FailureClass::PermanentInput, "{link}");
            assert_eq!(
                e.reason, ".kiro/specs/subtract/tasks.md resolves outside the checkout",
                "{link}"
            );
        }
    }

    #[test]
    fn prompt_lists_open_tasks_and_docs() {
        let spec = SpecPath::parse("subtract").unwrap();
        let docs = SpecDocs {
            requirements: "REQ".into(),
            design: "DES".into(),
            tasks: "- [x] 1. done one\n- [ ] 2. open one\n- [ ]* 2.1 maybe\n- [ ] 3 last\n".into(),
        };
        let t = crate::tasks::parse(&docs.tasks);
        let steer = vec![
            SteeringFile {
                name: "tech.md".into(),
                front: Default::default(),
                body: "Use Node 20.".into(),
            },
            SteeringFile {
                name: "ui.md".into(),
                front: steering::FrontMatter {
                    inclusion: Some("fileMatch".into()),
                    pattern: Some("src/**/*.tsx".into()),
                },
                body: "React rules".into(),
            },
        ];
        let p = prompt(&spec, &docs, &t, &steer, "npm test", 80.0);
        assert!(
            p.contains("- 2 open one\n- 3 last\n\nOptional tasks (only after every required task is done; they may be skipped):\n- 2.1 maybe (optional)\n"),
            "{p}"
        );
        assert!(!p.contains("done one"));
        assert!(p.contains("REQ") && p.contains("DES"));
        assert!(p.contains("at least 80%"));
        assert!(
            p.contains("----- .kiro/steering/tech.md -----\nUse Node 20.\n"),
            "{p}"
        );
        assert!(p.contains(
            "(also .kiro/steering/ui.md: inclusion fileMatch, for files matching src/**/*.tsx"
        ));
        assert!(!p.contains("React rules"));
    }
}
