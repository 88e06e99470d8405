//! `baton/validate` on a merge group. A base branch with a merge queue runs its required checks
//! on the queue's group commit (`gh-readonly-queue/<base>/pr-<n>-<head sha>`), not on the PR's
//! head, and waits for them before it merges. baton answers `merge_group` (`checks_requested`)
//! by setting `baton/validate` on the group's head sha with the verdict it gave the queued PR at
//! the head that was queued: the check binds gates to the PR's head (approvals are given
//! there), and the queue only lands that head on the base. A head baton has not (yet) passed
//! fails the group, so the queue drops it rather than merging something unchecked.

use super::check::{CheckError, CheckOutcome, Checker};
use crate::forge::{Forge, StatusState, StatusUpdate};

/// The PR number and queued head named by a merge group's ref, and its base branch:
/// `refs/heads/gh-readonly-queue/<base>/pr-<n>-<head sha>`.
pub fn parse_group_ref(head_ref: &str) -> Option<(String, u64, String)> {
    let rest = head_ref
        .strip_prefix("refs/heads/")
        .unwrap_or(head_ref)
        .strip_prefix("gh-readonly-queue/")?;
    let (base, tail) = rest.rsplit_once("/pr-")?;
    let (n, sha) = tail.split_once('-')?;
    Some((base.to_owned(), n.parse().ok()?, sha.to_owned()))
}

impl Checker {
    /// Set `baton/validate` on a merge group's head `group_sha` (ref `head_ref`). Groups for
    /// another base branch are left alone (`Ok(None)`); a group already reported on the same way
    /// is not written again.
    pub async fn check_merge_group<F: Forge>(
        &self,
        forge: &F,
        group_sha: &str,
        head_ref: &str,
    ) -> Result<Option<CheckOutcome>, CheckError> {
        let Some((base, pr, head)) = parse_group_ref(head_ref) else {
            return Ok(None);
        };
        if base != self.branch() {
            return Ok(None);
        }
        let own = |s: &&crate::forge::CommitStatus| {
            s.context == super::CONTEXT && s.creator.eq_ignore_ascii_case(forge.bot_login())
        };
        let verdict = forge.statuses(&head).await?.into_iter().find(|s| own(&s));
        let (state, description) = match &verdict {
            Some(s) if s.state == StatusState::Success => (
                StatusState::Success,
                format!("PR #{pr} passed at its queued head"),
            ),
            Some(s) if s.state == StatusState::Pending => (
                StatusState::Failure,
                format!("PR #{pr} is still being checked at its queued head"),
            ),
            Some(s) => (
                StatusState::Failure,
                format!("PR #{pr} failed at its queued head: {}", s.description),
            ),
            None => (
                StatusState::Failure,
                format!("PR #{pr} was not checked at its queued head"),
            ),
        };
        let reported = forge
            .statuses(group_sha)
            .await?
            .into_iter()
            .find(|s| own(&s));
        if reported.is_none_or(|r| r.state != state || r.description != description) {
            forge
                .set_status(
                    group_sha,
                    &StatusUpdate {
                        context: super::CONTEXT.to_string(),
                        state,
                        description,
                        target_url: None,
                    },
                )
                .await?;
        }
        tracing::info!(pr, group = %group_sha, passed = state == StatusState::Success, "merge group checked");
        Ok(Some(CheckOutcome::Checked {
            pr,
            sha: group_sha.to_owned(),
            passed: state == StatusState::Success,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_ref_names_its_base_pr_and_head() {
        assert_eq!(
            parse_group_ref("refs/heads/gh-readonly-queue/main/pr-12-abc123"),
            Some(("main".into(), 12, "abc123".into()))
        );
        assert_eq!(
            parse_group_ref("gh-readonly-queue/release/v1/pr-3-ff"),
            Some(("release/v1".into(), 3, "ff".into()))
        );
        assert_eq!(parse_group_ref("refs/heads/main"), None);
    }
}
