//! What the deployed consumer did on GitHub, with the rendered `KIRO_FORGE`,
//! `KIRO_GITHUB_PROJECT` and token secret of its task: the dead-lettered card marked Failed
//! with its reason and announced to its assignee in a new comment, and a card a human moved
//! off the board's statuses cancelled unbuilt and left where it was put.
//!
//! Invariant: as in [`super`], every assertion message names the item and the seam.

use super::{builds_of, consumer_log, job};
use crate::rehearsal::board::{CALC_ASSIGNEE, COVERAGE_ASSIGNEE, MOVED, MOVED_TO, item_id};
use crate::rehearsal::scenario::{COVERAGE, Outcome};
use kiro_github::gh::REPORT_MARKER;
use kiro_protocol::JobState;

/// The dead-lettered item on GitHub: its card marked Failed saying why, and its final
/// failure announced in a new comment that mentions its assignee.
pub fn dead_letter_reaches_github(o: &Outcome) {
    // The consumer works the GitHub board as deployed (KIRO_FORGE, KIRO_GITHUB_PROJECT and
    // the token secret of its task): the dead-lettered card is marked Failed, saying why.
    let id = item_id(COVERAGE);
    let marks: Vec<_> = o.github.with(|s| {
        s.status_changes
            .iter()
            .filter(|(item, status, _)| item == &id && status == "Failed")
            .cloned()
            .collect()
    });
    assert_eq!(marks.len(), 1, "{COVERAGE} marked Failed once: {marks:?}");
    let note = marks[0].2.clone().unwrap_or_default();
    assert!(
        note.starts_with("dead-lettered (coverage-below): ") && note.contains("below"),
        "the note says why: {note}"
    );
    // …and its final failure is announced in a new comment on its pull request that
    // mentions its assignee; the succeeded items' assignee is mentioned nowhere.
    let card = o.github.item(&id);
    let comments = o.github.comments_on(&card.repo, card.pr);
    let mention = format!("@{COVERAGE_ASSIGNEE}: `{id}` failed for good");
    let announced: Vec<&String> = comments
        .iter()
        .filter(|c| c.starts_with(&mention))
        .collect();
    assert_eq!(
        announced.len(),
        1,
        "one announcement on {}#{}: {comments:?}",
        card.repo,
        card.pr
    );
    assert!(
        announced[0].contains("`coverage-below`") && !announced[0].contains(REPORT_MARKER),
        "a comment of its own, not the sticky report: {}",
        announced[0]
    );
    let everywhere: Vec<String> = o
        .github
        .with(|s| s.comments.iter().map(|c| c.body.clone()).collect());
    assert!(
        everywhere
            .iter()
            .all(|b| !b.contains(&format!("@{CALC_ASSIGNEE}"))),
        "{everywhere:?}"
    );
}

/// The card moved to Backlog on GitHub once queued: the deployed consumer read the move
/// when it took the message, recorded the item `cancelled` and built nothing; the card
/// stays where the human put it, with no note and no comment.
pub fn moved_card_cancelled(o: &Outcome) {
    let id = item_id(MOVED);
    let j = job(o, MOVED);
    assert_eq!(
        j.state,
        JobState::Cancelled,
        "{MOVED}: {j:?}\n{}",
        consumer_log(o)
    );
    assert!(
        j.last_failure
            .as_ref()
            .is_some_and(|f| f.reason == format!("cancelled: the card was moved to \"{MOVED_TO}\"")),
        "{MOVED}: the record says where the card went: {j:?}"
    );
    assert!(builds_of(o, MOVED).is_empty(), "{MOVED} got a build");
    let card = o.github.item(&id);
    assert_eq!(
        (card.status.as_str(), card.note.as_deref()),
        (MOVED_TO, None),
        "{MOVED}: the card stays where it was put"
    );
    let written: Vec<_> = o.github.with(|s| {
        s.status_changes
            .iter()
            .filter(|(item, ..)| item == &id)
            .cloned()
            .collect()
    });
    // The producer's own move to Queued came before the human's.
    assert!(
        written.iter().all(|(_, status, _)| status == "Queued"),
        "{MOVED}: nothing moved the card after the human: {written:?}"
    );
    assert!(o.github.comments_on(&card.repo, card.pr).is_empty());
    assert!(
        o.dead_letters.iter().all(|d| !d.body.contains(&id)),
        "{MOVED} was dead-lettered"
    );
}
