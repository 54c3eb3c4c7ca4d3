//! Live progress of a stack operation: one line per stack (root and nested) with its
//! status and elapsed time, resource events as they come, and the root cause on failure.
//!
//! Polling backs off from 3 s to 15 s while nothing changes. Each round makes at most
//! three calls per stack (resources of the root, the stack, its events), so no stack is
//! asked more than once a second. Ctrl-C stops watching only; the operation goes on.

use super::stack::{
    self, describe_stack, event_line, is_success, is_terminal, root_cause, status_of,
};
use anyhow::Result;
use aws_sdk_cloudformation::Client;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

pub enum Outcome {
    /// The operation finished well; the final root status.
    Succeeded(String),
    /// It failed: the final status and the first real failure.
    Failed {
        status: String,
        cause: Option<String>,
    },
    /// The user pressed Ctrl-C; the operation continues in CloudFormation.
    Detached,
}

const MIN_POLL: Duration = Duration::from_secs(3);
const MAX_POLL: Duration = Duration::from_secs(15);

struct Lines {
    mp: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
    started: Instant,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            mp: MultiProgress::new(),
            bars: BTreeMap::new(),
            started: Instant::now(),
        }
    }

    fn say(&self, line: String) {
        if self.mp.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.mp.println(line);
        }
    }

    /// Updates a stack's line; returns true when its status changed.
    fn set(&mut self, logical: &str, status: &str) -> bool {
        let style = ProgressStyle::with_template("{spinner} {prefix:<28} {msg:<28} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mp = self.mp.clone();
        let bar = self.bars.entry(logical.to_string()).or_insert_with(|| {
            let b = mp.add(ProgressBar::new_spinner());
            b.set_style(style);
            b.set_prefix(logical.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let changed = bar.message() != status;
        if changed {
            bar.set_message(status.to_string());
            if is_terminal(status) {
                bar.finish();
            }
            if self.mp.is_hidden() {
                eprintln!(
                    "  {logical:<28} {status:<28} {:>5}s",
                    self.started.elapsed().as_secs()
                );
            }
        }
        changed
    }

    fn done(&self) {
        for b in self.bars.values() {
            b.finish();
        }
    }
}

/// Watches the root stack `root_id` (and its nested stacks) until it settles.
pub async fn watch(cfn: &Client, root_id: &str) -> Result<Outcome> {
    let mut lines = Lines::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut all_events: Vec<(String, aws_sdk_cloudformation::types::StackEvent)> = Vec::new();
    let mut poll = MIN_POLL;
    let mut first = true;
    loop {
        let Some(root) = describe_stack(cfn, root_id).await? else {
            lines.done();
            return Ok(Outcome::Succeeded("DELETE_COMPLETE".into()));
        };
        let root_status = status_of(&root);
        let mut changed = lines.set("root", &root_status);
        let mut stacks = vec![("root".to_string(), root_id.to_string())];
        if !root_status.starts_with("DELETE") {
            stacks.extend(stack::nested(cfn, root_id).await.unwrap_or_default());
        }
        for (logical, id) in &stacks {
            if logical != "root"
                && let Some(s) = describe_stack(cfn, id).await?
            {
                changed |= lines.set(logical, &status_of(&s));
            }
            let mut evs = stack::events(cfn, id).await.unwrap_or_default();
            evs.reverse(); // oldest first
            for e in evs {
                let eid = e.event_id().unwrap_or_default().to_string();
                if seen.insert(eid) {
                    if !first {
                        lines.say(format!("  {logical}: {}", event_line(&e)));
                    }
                    all_events.push((logical.clone(), e));
                    changed = true;
                }
            }
        }
        first = false;
        if is_terminal(&root_status) {
            lines.done();
            if is_success(&root_status) {
                return Ok(Outcome::Succeeded(root_status));
            }
            let cause =
                root_cause(&all_events).or_else(|| root.stack_status_reason().map(str::to_string));
            return Ok(Outcome::Failed {
                status: root_status,
                cause,
            });
        }
        poll = if changed {
            MIN_POLL
        } else {
            (poll.mul_f32(1.5)).min(MAX_POLL)
        };
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = tokio::signal::ctrl_c() => {
                lines.done();
                return Ok(Outcome::Detached);
            }
        }
    }
}
