//! The keeper: one thread per component that answers waiting stanzas whose time ran out —
//! their deadline (`*_timeout`), or their retry window while the webhook is
//! unreachable — and starts the probe when one is due. Stanzas in flight are bounded by their
//! own request's deadline; this covers the ones no worker holds.
//!
//! It sleeps until the earliest thing it knows to be due, or `timeout` at most. Whatever makes
//! something due earlier than that — a stanza that becomes ready behind its line, a stanza
//! taken whose `<composing/>` is due, a change in the outage or the configuration — wakes it
//! (`Shared::wake_keeper_by`, or a plain notification), so nothing is answered late because
//! the keeper slept.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::outcome::{chat_state, TIMED_OUT};

pub(super) fn start(shared: &Arc<Shared>) -> Result<(), String> {
    lock(&shared.state).keeper_alive = true;
    let keeper = Arc::clone(shared);
    std::thread::Builder::new()
        .name("component_http-keeper".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let _alive = Alive(&keeper);
            run(&keeper);
        })
        .map(drop)
        .map_err(|e| {
            lock(&shared.state).keeper_alive = false;
            format!("could not start the keeper thread: {e}")
        })
}

/// Clears `keeper_alive` when the keeper exits, even by unwinding.
struct Alive<'a>(&'a Shared);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).keeper_alive = false;
    }
}

/// When a job now made ready must be answered at the latest.
pub(super) fn expiry_now(job: &Job, state: &State) -> Instant {
    expiry(job, state.outage.as_ref(), state.limits.retry_window)
}

/// When a waiting job must be answered at the latest.
fn expiry(job: &Job, outage: Option<&Outage>, retry_window: Duration) -> Instant {
    match outage {
        None => job.deadline,
        Some(outage) => {
            let held_since = job.held_since.unwrap_or(job.accepted.max(outage.since));
            held_since.checked_add(retry_window).map_or(job.deadline, |end| end.min(job.deadline))
        }
    }
}

/// The answer to a job whose time ran out while it waited: its deadline (timed out, whatever
/// the reason it waited), or its retry window during an outage (the webhook's last failure).
fn expired(job: &Job, outage: Option<&Outage>, now: Instant, profile: Profile) -> Outcome {
    let outcome = match outage {
        Some(outage) if now < job.deadline => {
            let held = now.saturating_duration_since(job.held_since.unwrap_or(job.accepted.max(outage.since)));
            Outcome::Error(
                outage.last_error.0.clone(),
                format!(
                    "{} (held {:.1} s while the webhook was unreachable, until {} ran out)",
                    outage.last_error.1,
                    held.as_secs_f64(),
                    profile.option("retry_window")
                ),
            )
        }
        Some(outage) => super::worker::out_of_time(
            &Outcome::Error(outage.last_error.0.clone(), outage.last_error.1.clone()),
            profile,
        ),
        None => Outcome::Error(
            TIMED_OUT,
            format!(
                "waited longer than {} in the queue (all {} requests were busy)",
                profile.option("timeout"),
                profile.option("max_in_flight")
            ),
        ),
    };
    outcome
}

/// The answer to a stanza whose deadline ran out while it waited behind an earlier stanza of
/// its sender, still unanswered (an answer that streams, say).
fn behind_its_line(profile: Profile) -> Outcome {
    Outcome::Error(
        TIMED_OUT,
        format!(
            "waited longer than {} behind an earlier stanza of the same sender, whose answer was not finished",
            profile.option("timeout")
        ),
    )
}

fn run(shared: &Arc<Shared>) {
    let mut state = lock(&shared.state);
    loop {
        if state.closing {
            return;
        }
        let now = Instant::now();
        let mut wake_at = now.checked_add(state.limits.timeout).unwrap_or(now);
        // Answer what ran out; a line's next stanza then becomes ready and may have run out too.
        loop {
            let st: &mut State = &mut state;
            let (outage, window) = (st.outage.as_ref(), st.limits.retry_window);
            let mut ran_out = Vec::new();
            let mut kept = VecDeque::with_capacity(st.ready.len());
            for job in st.ready.drain(..) {
                let end = expiry(&job, outage, window);
                if end <= now {
                    ran_out.push(job);
                } else {
                    wake_at = wake_at.min(end);
                    kept.push_back(job);
                }
            }
            st.ready = kept;
            if ran_out.is_empty() {
                break;
            }
            for job in ran_out {
                state.queued -= 1;
                let completion = shared.settle(&job, expired(&job, state.outage.as_ref(), now, state.limits.profile));
                shared.answer(&state.limits, &job, completion, job.composing_sent);
                shared.release_line(&mut state, job.line.as_deref());
            }
        }
        // Stanzas waiting behind an earlier one of their sender whose answer streams (for
        // longer than their deadline, maybe) are answered by their own deadline too; the rest
        // of the line keeps its order. Behind a stanza still waiting for its answer they keep
        // their place: that one's own outcome comes first, and theirs follow in order.
        let st: &mut State = &mut state;
        let (outage, window) = (st.outage.as_ref(), st.limits.retry_window);
        let streaming: HashSet<&str> = st
            .in_flight
            .values()
            .filter(|entry| entry.stream.is_some())
            .filter_map(|entry| entry.line.as_deref())
            .collect();
        let mut ran_out = Vec::new();
        for (line, followers) in st.followers.iter_mut() {
            if !streaming.contains(line.as_str()) {
                continue;
            }
            if followers.iter().all(|job| {
                let end = expiry(job, outage, window);
                wake_at = wake_at.min(end);
                end > now
            }) {
                continue;
            }
            let (kept, out): (VecDeque<Job>, VecDeque<Job>) =
                followers.drain(..).partition(|job| expiry(job, outage, window) > now);
            *followers = kept;
            ran_out.extend(out);
        }
        for job in ran_out {
            state.queued -= 1;
            let outcome = match state.outage {
                Some(_) => expired(&job, state.outage.as_ref(), now, state.limits.profile),
                None => behind_its_line(state.limits.profile),
            };
            let completion = shared.settle(&job, outcome);
            shared.answer(&state.limits, &job, completion, job.composing_sent);
        }
        // Chat states: tell the senders of chat messages the webhook is slow to answer that
        // the bot is composing. A stanza taken after this round wakes the keeper if its
        // `<composing/>` falls due before the next one.
        if state.limits.chat_states {
            for in_flight in state.in_flight.values_mut() {
                match in_flight.composing {
                    Composing::Due(at) if at <= now => {
                        shared.push(Completion { send: Some(chat_state(&in_flight.incoming, "composing")), log: None });
                        in_flight.composing = Composing::Sent;
                    }
                    Composing::Due(at) => wake_at = wake_at.min(at),
                    _ => {}
                }
            }
        }
        // Streamed answers: a correction falls due while its worker waits for the next piece.
        // Each is polled under its own lock, with the state lock let go meanwhile.
        let streams: Vec<(u64, Arc<Incoming>, stream::Slot)> = state
            .in_flight
            .iter()
            .filter_map(|(id, entry)| Some((*id, Arc::clone(&entry.incoming), Arc::clone(entry.stream.as_ref()?))))
            .collect();
        if !streams.is_empty() {
            drop(state);
            let mut first_sent = Vec::new();
            for (id, incoming, slot) in streams {
                // A panic (a bug) ends that stream alone, and the keeper carries on.
                let polled = catch_unwind(AssertUnwindSafe(|| {
                    let mut guard = lock(&slot);
                    guard.as_mut().map(|streaming| shared.poll_stream(streaming, now))
                }));
                match polled {
                    Ok(Some((next, first))) => {
                        wake_at = next.map_or(wake_at, |next| wake_at.min(next));
                        if first {
                            first_sent.push(id);
                        }
                    }
                    Ok(None) => {}
                    Err(_) => shared.abandon_stream(id, &incoming, &slot),
                }
            }
            state = lock(&shared.state);
            if state.closing {
                return;
            }
            for id in first_sent {
                if let Some(entry) = state.in_flight.get_mut(&id) {
                    entry.composing = Composing::Sent; // the first message carries `<composing/>`
                }
            }
        }
        if let Some(outage) = &state.outage {
            if !outage.probe_in_flight && outage.next_probe > now {
                wake_at = wake_at.min(outage.next_probe);
            }
        }
        let start = shared.offer_work(&mut state);
        if start > 0 {
            drop(state);
            shared.spawn_workers(start);
            state = lock(&shared.state);
            continue;
        }
        if let Some(missed) = state.keeper_missed.take() {
            wake_at = wake_at.min(missed);
        }
        let sleep = wake_at.saturating_duration_since(Instant::now());
        state.keeper_wakes_at = Some(wake_at);
        state = shared.keeper.wait_timeout(state, sleep).unwrap_or_else(|p| p.into_inner()).0;
        state.keeper_wakes_at = None;
    }
}
