//! The group commit's turn-taking, shared by both backends (`sqlite/commit.rs`,
//! `postgres/commit.rs`): callers queue their items; one of them at a time leads, taking every item
//! queued so far and committing them together; the others wait for their answer.
//!
//! A caller whose item a leader has committed returns as soon as that leader is done: it never
//! waits for the next batch's commit (before, followers waited for the writer's lock, and another
//! caller could take it first and lead the next batch: a committed message's 250 then waited for
//! that commit too, up to the pool's 5 s connect timeout with PostgreSQL down).

use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard};

/// The queue of items waiting for a commit, and whether a leader is committing.
pub(super) struct Group<T> {
    state: Mutex<State<T>>,
    /// Signalled when a leader is done: its followers have their answers, and the next may lead.
    done: Condvar,
}

struct State<T> {
    queue: Vec<(T, mpsc::SyncSender<Result<(), String>>)>,
    leading: bool,
}

impl<T> Group<T> {
    pub(super) fn new() -> Group<T> {
        Group { state: Mutex::new(State { queue: Vec::new(), leading: false }), done: Condvar::new() }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` and returns its result once a transaction holding it has committed (or
    /// failed). When nobody leads, this caller does: `commit` gets every queued item, in order, and
    /// returns a result for each, or one error for all.
    pub(super) fn commit(
        &self,
        item: T,
        commit: impl FnOnce(&[T]) -> anyhow::Result<Vec<Result<(), String>>>,
    ) -> Result<(), String> {
        let (answer, result) = mpsc::sync_channel(1);
        let mut state = self.state();
        state.queue.push((item, answer));
        loop {
            match result.try_recv() {
                Ok(r) => return r,
                // The leader holding our item panicked: it is not known to be committed.
                Err(mpsc::TryRecvError::Disconnected) => return Err("the group commit ended without an answer".into()),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            if state.leading {
                state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Our item is still queued: we lead.
            state.leading = true;
            let batch = std::mem::take(&mut state.queue);
            drop(state);
            let _turn = Turn(self);
            let (items, answers): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
            match commit(&items) {
                Ok(each) => answers.into_iter().zip(each).for_each(|(a, r)| {
                    let _ = a.send(r);
                }),
                Err(e) => {
                    let e = format!("{e:#}");
                    answers.into_iter().for_each(|a| {
                        let _ = a.send(Err(e.clone()));
                    });
                }
            }
            drop(_turn);
            return result.recv().unwrap_or_else(|_| Err("the group commit ended without an answer".into()));
        }
    }
}

/// Ends a leader's turn, also when its commit panics: the next caller may lead, and every follower
/// looks for its answer.
struct Turn<'a, T>(&'a Group<T>);

impl<T> Drop for Turn<'_, T> {
    fn drop(&mut self) {
        self.0.state().leading = false;
        self.0.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier, mpsc};
    use std::time::{Duration, Instant};

    use super::Group;

    #[test]
    fn every_item_is_committed_once_and_gets_its_own_answer() {
        let group = Arc::new(Group::<u32>::new());
        let batches = Arc::new(std::sync::Mutex::new(Vec::<Vec<u32>>::new()));
        let start = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let (group, batches, start) = (group.clone(), batches.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..50 {
                        let item = t * 1000 + i;
                        let r = group.commit(item, |items| {
                            batches.lock().unwrap().push(items.to_vec());
                            // Odd items fail alone.
                            Ok(items.iter().map(|n| if n % 2 == 1 { Err(format!("{n}")) } else { Ok(()) }).collect())
                        });
                        assert_eq!(r, if item % 2 == 1 { Err(format!("{item}")) } else { Ok(()) });
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let mut all: Vec<u32> = batches.lock().unwrap().concat();
        assert_eq!(all.len(), 400, "each item in exactly one batch");
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 400);
    }

    /// Waits (bounded) until `n` items are queued.
    fn queued(group: &Group<u32>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while group.state().queue.len() < n {
            assert!(Instant::now() < deadline, "{n} items queued");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_committed_item_is_answered_while_the_next_batch_is_still_committing() {
        let group = Arc::new(Group::<u32>::new());
        let (leading, first_go) = (mpsc::channel::<()>(), Arc::new(Barrier::new(2)));
        let (second_go, third_go) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let leading_tx = leading.0;
        let spawn = |item: u32| {
            let (group, leading_tx) = (group.clone(), leading_tx.clone());
            let (first_go, second_go, third_go) = (first_go.clone(), second_go.clone(), third_go.clone());
            std::thread::spawn(move || {
                group.commit(item, |items| {
                    leading_tx.send(()).unwrap();
                    match items {
                        [1] => first_go.wait(),
                        [2, 3] | [3, 2] => second_go.wait(),
                        _ => third_go.wait(),
                    };
                    Ok(items.iter().map(|_| Ok(())).collect())
                })
            })
        };
        // Item 1 leads alone; 2 and 3 queue behind it and are committed together next.
        let one = spawn(1);
        leading.1.recv().unwrap();
        let (two, three) = (spawn(2), spawn(3));
        queued(&group, 2);
        first_go.wait();
        leading.1.recv().unwrap();
        // Item 4 queues while 2 and 3 commit, and leads the batch after theirs, which stays open.
        let four = spawn(4);
        queued(&group, 1);
        second_go.wait();
        // 2 and 3 are answered (one led, the other followed) while 4's commit has not ended.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(two.is_finished() && three.is_finished()) {
            assert!(Instant::now() < deadline, "a committed item waited for the next batch");
            std::thread::yield_now();
        }
        third_go.wait();
        for t in [one, two, three, four] {
            assert_eq!(t.join().unwrap(), Ok(()));
        }
    }

    #[test]
    fn a_leader_that_panics_fails_its_batch_and_hands_on_the_turn() {
        let group = Arc::new(Group::<u32>::new());
        let g = group.clone();
        let panicked = std::thread::spawn(move || g.commit(1, |_| panic!("boom"))).join();
        assert!(panicked.is_err());
        assert_eq!(group.commit(2, |items| Ok(items.iter().map(|_| Ok(())).collect())), Ok(()));
    }
}
