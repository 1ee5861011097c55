//! The `tasks.md` parser: Kiro's implementation plan as a list of [`Task`]s.
//!
//! Rules (DESIGN.md §5, research notes §1.7): a task is a list item `- [m] <text>` or
//! `* [m] <text>` at any indentation; `[ ]` is open, `[x]`/`[X]` done, `[-]` in progress,
//! and any other single mark counts as open; a `*` right after the box marks the task
//! optional (also written `\*`, as Markdown formatters such as Prettier escape it); the id is the leading number (`1.`, `2.1`) of the text, because indentation is
//! not reliable; `_Requirements: 1.2, 3.4_` lines belong to the task above them; nothing
//! inside a ``` or ~~~ code fence is a task.
//!
//! Progress ([`Progress`]) counts required tasks, with optional ones apart; a parent
//! counts as done once all its required sub-tasks are.
//!
//! Limits: a `tasks.md` is read up to [`MAX_BYTES`] and holds at most [`MAX_TASKS`]
//! tasks ([`parse_checked`] names the file when it holds more); a task number is at most
//! [`MAX_ID_LEN`] characters (a longer token is part of the title).
//!
//! Invariant: [`parse`] is total — it never panics and never fails; a line it does not
//! understand is simply not a task. Every pass over a plan ([`effective_done`],
//! [`Progress::of`], [`changes`], [`newly_done`]) is linear in its size.

use std::fmt;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Open,
    InProgress,
    Done,
}

impl TaskState {
    pub fn is_done(self) -> bool {
        self == TaskState::Done
    }

    /// The checkbox mark as Kiro writes it.
    pub fn mark(self) -> char {
        match self {
            TaskState::Open => ' ',
            TaskState::InProgress => '-',
            TaskState::Done => 'x',
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Open => "open",
            TaskState::InProgress => "in progress",
            TaskState::Done => "done",
        })
    }
}

/// One checkbox of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task's number (`1`, `2.1`), or `#n` (its position, 1-based) when it has none.
    pub id: String,
    /// The text after the number.
    pub title: String,
    pub state: TaskState,
    /// `- [ ]* …`: the task may be skipped.
    pub optional: bool,
    /// Requirement numbers from a `_Requirements: …_` line under the task.
    pub requirements: Vec<String>,
    /// The task's line (0-based) in the file.
    pub line: usize,
}

/// The most tasks a `tasks.md` may hold ([`parse_checked`]).
pub const MAX_TASKS: usize = 100_000;

/// The largest `tasks.md` the worker reads, in bytes.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;

/// A plan over [`MAX_TASKS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} has more than {MAX_TASKS} tasks (the limit)")]
pub struct TooManyTasks {
    /// The file, as shown (relative to the checkout).
    pub file: String,
}

/// Parse a `tasks.md` shown as `file`, refusing one of more than [`MAX_TASKS`] tasks
/// (it stops reading at the first task over the limit).
pub fn parse_checked(text: &str, file: &str) -> Result<Vec<Task>, TooManyTasks> {
    let tasks = parse_at_most(text, MAX_TASKS + 1);
    if tasks.len() > MAX_TASKS {
        return Err(TooManyTasks {
            file: file.to_owned(),
        });
    }
    Ok(tasks)
}

/// Parse a `tasks.md`. Never panics.
pub fn parse(text: &str) -> Vec<Task> {
    parse_at_most(text, usize::MAX)
}

/// Parse at most `limit` tasks.
fn parse_at_most(text: &str, limit: usize) -> Vec<Task> {
    let mut tasks: Vec<Task> = Vec::new();
    let mut fence: Option<&str> = None;
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start();
        if let Some(open) = fence {
            if trimmed.starts_with(open) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") {
            fence = Some("```");
            continue;
        }
        if trimmed.starts_with("~~~") {
            fence = Some("~~~");
            continue;
        }
        if let Some(task) = parse_task_line(trimmed, n, tasks.len() + 1) {
            tasks.push(task);
            if tasks.len() >= limit {
                break;
            }
        } else if let Some(reqs) = parse_requirements(trimmed)
            && let Some(last) = tasks.last_mut()
        {
            last.requirements.extend(reqs);
        }
    }
    tasks
}

/// `- [m]* 2.1 Title` (already left-trimmed).
fn parse_task_line(line: &str, line_no: usize, ordinal: usize) -> Option<Task> {
    let rest = line.strip_prefix(['-', '*'])?;
    let rest = rest.strip_prefix([' ', '\t'])?.trim_start();
    let rest = rest.strip_prefix('[')?;
    let mut chars = rest.chars();
    let mark = chars.next()?;
    let rest = chars.as_str().strip_prefix(']')?;
    let state = match mark {
        'x' | 'X' => TaskState::Done,
        '-' => TaskState::InProgress,
        _ => TaskState::Open,
    };
    // `*`, or `\*` as a Markdown formatter escapes it, marks the task optional.
    let (optional, rest) = match rest.strip_prefix('*').or_else(|| rest.strip_prefix("\\*")) {
        Some(r) => (true, r),
        None => (false, rest),
    };
    // The box must be followed by white space (or end the line).
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let text = rest.trim();
    let (id, title) = split_id(text);
    Some(Task {
        id: id.unwrap_or_else(|| format!("#{ordinal}")),
        title: title.to_owned(),
        state,
        optional,
        requirements: Vec::new(),
        line: line_no,
    })
}

/// The longest task number (`2.1.3`): a longer token is part of the title.
pub const MAX_ID_LEN: usize = 32;

/// Split `2.1 Title` / `1. Title` into (`2.1`, `Title`).
fn split_id(text: &str) -> (Option<String>, &str) {
    let token_end = text.find([' ', '\t']).unwrap_or(text.len());
    let token = &text[..token_end];
    let number = token.strip_suffix('.').unwrap_or(token);
    let is_number = !number.is_empty()
        && number.len() <= MAX_ID_LEN
        && number
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if is_number {
        (Some(number.to_owned()), text[token_end..].trim())
    } else {
        (None, text)
    }
}

/// `_Requirements: 1.2, 3.4_`, optionally as a list item (`- _Requirements: …_`).
fn parse_requirements(line: &str) -> Option<Vec<String>> {
    let line = line
        .strip_prefix(['-', '*'])
        .map(str::trim_start)
        .unwrap_or(line);
    let body = line.strip_prefix("_Requirements:")?;
    let body = body.trim().strip_suffix('_').unwrap_or(body.trim());
    Some(
        body.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Whether each task counts as done: its own box is ticked, or it is a parent (by
/// number: `2` is the parent of `2.1` and `2.1.3`) whose required sub-tasks — at least
/// one — are all done.
///
/// Linear in the plan: one pass records, for every number prefix of a required task,
/// whether it has required descendants and whether one of them is not done; ids are at
/// most [`MAX_ID_LEN`] long, so each task has a bounded number of prefixes.
pub fn effective_done(tasks: &[Task]) -> Vec<bool> {
    use std::collections::HashMap;
    // prefix → (has a required descendant, every required descendant is done)
    let mut subtree: HashMap<&str, (bool, bool)> = HashMap::new();
    for c in tasks
        .iter()
        .filter(|c| !c.optional && !c.id.starts_with('#'))
    {
        let id = c.id.as_str();
        for (i, _) in id.match_indices('.') {
            let entry = subtree.entry(&id[..i]).or_insert((false, true));
            entry.0 = true;
            entry.1 &= c.state.is_done();
        }
    }
    tasks
        .iter()
        .map(|t| {
            t.state.is_done()
                || (!t.id.starts_with('#')
                    && subtree
                        .get(t.id.as_str())
                        .is_some_and(|(any, all)| *any && *all))
        })
        .collect()
}

/// Counts of a plan: required tasks, and optional ones apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Required tasks done (a parent counts once all its required sub-tasks are done).
    pub done: u32,
    /// Required tasks.
    pub total: u32,
    pub optional_done: u32,
    pub optional_total: u32,
}

impl Progress {
    pub fn of(tasks: &[Task]) -> Progress {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let done = effective_done(tasks);
        let tally = |optional: bool| {
            let of_kind = || {
                tasks
                    .iter()
                    .zip(&done)
                    .filter(move |(t, _)| t.optional == optional)
            };
            (
                count(of_kind().filter(|(_, d)| **d).count()),
                count(of_kind().count()),
            )
        };
        let (done, total) = tally(false);
        let (optional_done, optional_total) = tally(true);
        Progress {
            done,
            total,
            optional_done,
            optional_total,
        }
    }

    /// Required tasks still open.
    pub fn open(self) -> u32 {
        self.total.saturating_sub(self.done)
    }

    /// Optional tasks still open.
    pub fn optional_open(self) -> u32 {
        self.optional_total.saturating_sub(self.optional_done)
    }
}

/// Ids of tasks done in `after` that were not done in `before` (matched by id).
pub fn newly_done(before: &[Task], after: &[Task]) -> Vec<String> {
    let done_before: std::collections::HashSet<&str> = before
        .iter()
        .filter(|b| b.state.is_done())
        .map(|b| b.id.as_str())
        .collect();
    after
        .iter()
        .filter(|t| t.state.is_done() && !done_before.contains(t.id.as_str()))
        .map(|t| t.id.clone())
        .collect()
}

/// One task's state before and after the run (`None`: not in that version of the plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: String,
    pub title: String,
    pub optional: bool,
    pub before: Option<TaskState>,
    pub after: Option<TaskState>,
}

impl Change {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

/// Every task of `after` (then those only in `before`), with both states. A task of
/// a repeated id is matched with the first task of that id in the other list.
pub fn changes(before: &[Task], after: &[Task]) -> Vec<Change> {
    use std::collections::HashMap;
    fn first_by_id(ts: &[Task]) -> HashMap<&str, TaskState> {
        let mut m = HashMap::with_capacity(ts.len());
        for t in ts {
            m.entry(t.id.as_str()).or_insert(t.state);
        }
        m
    }
    let (was, now) = (first_by_id(before), first_by_id(after));
    let mut out: Vec<Change> = after
        .iter()
        .map(|t| Change {
            id: t.id.clone(),
            title: t.title.clone(),
            optional: t.optional,
            before: was.get(t.id.as_str()).copied(),
            after: Some(t.state),
        })
        .collect();
    for b in before {
        if !now.contains_key(b.id.as_str()) {
            out.push(Change {
                id: b.id.clone(),
                title: b.title.clone(),
                optional: b.optional,
                before: Some(b.state),
                after: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KIRO: &str = "# Implementation Plan: Calc\n\n## Tasks\n\
- [x] 1. Set up project structure\n  - Create `scripts/` directory\n  - _Requirements: 5.1, 5.2_\n\
- [ ] 2. Implement core data models\n  - [x] 2.1 Create data models module\n    - _Requirements: 6.1_\n\
  - [ ]* 2.2 Write unit tests for data models\n- [-] 2.3 Unindented sub-task\n\
- [~] 3 Deferred thing\n\
```md\n- [ ] 9. inside a fence\n```\n\
- [X] 4. Upper-case done\r\n- [ ] Checkpoint without a number\n\
Some prose with [x] in it\n- [x]not a task\n";

    #[test]
    fn an_escaped_optional_marker_is_optional() {
        // Prettier writes Kiro's `- [ ]* 1.4` as `- [ ]\* 1.4`; both are the same optional task.
        let t = parse(
            "- [ ]\\* 1.4 Write unit tests\n  - [x]\\* 2.1 done optional\n- [ ]\\*1.5 glued\n",
        );
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t.iter().all(|t| t.optional));
        assert_eq!(
            (t[0].id.as_str(), t[0].title.as_str()),
            ("1.4", "Write unit tests")
        );
        assert_eq!((t[1].id.as_str(), t[1].state), ("2.1", TaskState::Done));
        // A backslash alone is not a marker: the box must still be followed by white space.
        assert!(parse("- [ ]\\ 1. x\n").is_empty());
    }

    #[test]
    fn parses_kiro_format() {
        let t = parse(KIRO);
        let ids: Vec<&str> = t.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "2.1", "2.2", "2.3", "3", "4", "#8"]);
        assert_eq!(t[0].state, TaskState::Done);
        assert_eq!(t[0].title, "Set up project structure");
        assert_eq!(t[0].requirements, ["5.1", "5.2"]);
        assert_eq!(t[1].state, TaskState::Open);
        assert!(t[1].requirements.is_empty());
        assert_eq!(t[2].requirements, ["6.1"]);
        assert!(t[3].optional && !t[2].optional);
        assert_eq!(t[4].state, TaskState::InProgress);
        assert_eq!(t[5].state, TaskState::Open, "unknown marks are open");
        assert_eq!(t[6].state, TaskState::Done);
        assert_eq!(t[6].title, "Upper-case done");
        assert_eq!(t[7].title, "Checkpoint without a number");
        assert_eq!(
            Progress::of(&t),
            Progress {
                done: 3,
                total: 7,
                optional_done: 0,
                optional_total: 1
            }
        );
    }

    #[test]
    fn parents_are_done_by_their_required_children() {
        let t = parse(
            "- [ ] 1. parent\n  - [x] 1.1 a\n  - [x] 1.2 b\n  - [ ]* 1.3 opt\n- [ ] 2. leaf\n- [ ] 3. only optional kids\n  - [x]* 3.1 o\n",
        );
        assert_eq!(
            effective_done(&t),
            [true, true, true, false, false, false, true]
        );
        let p = Progress::of(&t);
        assert_eq!((p.done, p.total, p.open()), (3, 5, 2));
        assert_eq!(
            (p.optional_done, p.optional_total, p.optional_open()),
            (1, 2, 1)
        );
    }

    #[test]
    fn changes_list_every_task_with_both_states() {
        let before = parse("- [ ] 1. a\n- [x] 2. b\n- [ ] 3. gone\n");
        let after = parse("- [x] 1. a\n- [x] 2. b\n- [-] 4. new\n");
        let c = changes(&before, &after);
        let view: Vec<(&str, Option<TaskState>, Option<TaskState>, bool)> = c
            .iter()
            .map(|c| (c.id.as_str(), c.before, c.after, c.changed()))
            .collect();
        assert_eq!(
            view,
            [
                ("1", Some(TaskState::Open), Some(TaskState::Done), true),
                ("2", Some(TaskState::Done), Some(TaskState::Done), false),
                ("4", None, Some(TaskState::InProgress), true),
                ("3", Some(TaskState::Open), None, true),
            ]
        );
    }

    #[test]
    fn newly_done_diffs_by_id() {
        let before = parse("- [ ] 1. a\n- [x] 2. b\n- [ ] 3. c\n");
        let after = parse("- [x] 1. a\n- [x] 2. b\n- [ ] 3. c\n");
        assert_eq!(newly_done(&before, &after), ["1"]);
    }

    fn arb_task() -> impl Strategy<Value = (usize, char, bool, String)> {
        (
            0usize..4,
            prop::sample::select(vec![' ', 'x', 'X', '-', '~', '?']),
            any::<bool>(),
            "[a-z][a-z ]{0,20}",
        )
    }

    fn render(tasks: &[(usize, char, bool, String)], force_done: &[bool]) -> String {
        let mut s = String::from("# Plan\n\n");
        for (i, (indent, mark, opt, title)) in tasks.iter().enumerate() {
            let mark = if force_done.get(i).copied().unwrap_or(false) {
                'x'
            } else {
                *mark
            };
            s.push_str(&format!(
                "{}- [{mark}]{} {}. {title}\n",
                "  ".repeat(*indent),
                if *opt { "*" } else { "" },
                i + 1
            ));
        }
        s
    }

    /// A plan of `groups` parents with three sub-tasks each (4 × `groups` tasks): `N.1`
    /// done, `N.2` optional and done, `N.3` done for even `N` — so even parents are done.
    fn big_plan(groups: usize) -> String {
        let mut s = String::from("# Plan\n\n");
        for n in 1..=groups {
            let third = if n % 2 == 0 { 'x' } else { ' ' };
            s.push_str(&format!(
                "- [ ] {n}. parent {n}\n  - [x] {n}.1 first\n  - [x]* {n}.2 optional\n  - [{third}] {n}.3 third\n  - _Requirements: 1.{n}_\n"
            ));
        }
        s
    }

    /// 100,000 tasks (the documented limit) parse and count in linear time: the test has
    /// no timing assertion, it simply must finish (a quadratic pass would hang CI).
    #[test]
    fn a_plan_at_the_task_limit_parses_and_counts() {
        assert_eq!(MAX_TASKS, 100_000);
        let text = big_plan(MAX_TASKS / 4);
        let t = parse_checked(&text, ".kiro/specs/big/tasks.md").unwrap();
        assert_eq!(t.len(), 100_000);
        assert_eq!(
            Progress::of(&t),
            Progress {
                done: 25_000 + 12_500 + 12_500,
                total: 75_000,
                optional_done: 25_000,
                optional_total: 25_000,
            }
        );
        let done = effective_done(&t);
        assert!(done[4], "parent 2 is done by its children");
        assert!(!done[0], "parent 1 is not");
        assert_eq!(changes(&t, &t).len(), 100_000);
        assert!(newly_done(&t, &t).is_empty());
        let mut after = t.clone();
        after[0].state = TaskState::Done;
        assert_eq!(newly_done(&t, &after), ["1"]);
    }

    #[test]
    fn a_plan_over_the_task_limit_is_refused_naming_the_file() {
        let mut text = big_plan(MAX_TASKS / 4);
        text.push_str("- [ ] 999999. one too many\n");
        let e = parse_checked(&text, ".kiro/specs/big/tasks.md").unwrap_err();
        assert_eq!(
            e.to_string(),
            ".kiro/specs/big/tasks.md has more than 100000 tasks (the limit)"
        );
    }

    /// A task number with thousands of parts is not a number: ids stay short, so the
    /// parent look-up stays linear.
    #[test]
    fn absurd_task_numbers_are_not_ids() {
        let long = vec!["1"; 5_000].join(".");
        let t = parse(&format!("- [ ] 1. a\n- [x] {long} deep\n"));
        assert_eq!(t[1].id, "#2");
        assert_eq!(effective_done(&t), [false, true]);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,400}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_task_like_noise(s in "([-* \\[\\]xX~`_0-9.\\r\\n]|Requirements:){0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn fenced_lines_never_yield_tasks(
            inner in prop::collection::vec(arb_task(), 0..6),
            fence in prop::sample::select(vec!["```", "~~~", "```rust"]),
        ) {
            let body = render(&inner, &[]);
            let text = format!("- [ ] 1. outside\n{fence}\n{body}{}\n- [ ] 2. after\n", &fence[..3]);
            let t = parse(&text);
            let ids: Vec<&str> = t.iter().map(|t| t.id.as_str()).collect();
            prop_assert_eq!(ids, vec!["1", "2"]);
        }

        #[test]
        fn ticking_boxes_increases_done_exactly(
            tasks in prop::collection::vec(arb_task(), 0..12),
            tick in prop::collection::vec(any::<bool>(), 12),
        ) {
            let before = parse(&render(&tasks, &[]));
            let after = parse(&render(&tasks, &tick));
            prop_assert_eq!(before.len(), tasks.len());
            prop_assert_eq!(after.len(), tasks.len());
            let ticked = |optional: bool| tasks
                .iter()
                .zip(&tick)
                .filter(|((_, m, o, _), t)| **t && *o == optional && !matches!(m, 'x' | 'X'))
                .count() as u32;
            let (b, a) = (Progress::of(&before), Progress::of(&after));
            prop_assert_eq!(a.done, b.done + ticked(false));
            prop_assert_eq!(a.optional_done, b.optional_done + ticked(true));
            prop_assert_eq!(a.total + a.optional_total, tasks.len() as u32);
            prop_assert_eq!(newly_done(&before, &after).len() as u32, ticked(false) + ticked(true));
        }
    }
}
