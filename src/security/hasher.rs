//! Password verification off the event loop.
//!
//! PBKDF2 with 600,000 iterations takes a few hundred milliseconds of CPU by
//! design; run on the loop it would stall every client. A few worker threads
//! take jobs from a bounded queue ([`Hasher::submit`] refuses once it is
//! full, and the server answers `503`), and hand results back through a
//! channel, calling `notify` (the loop's `mio::Waker`) after each one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use super::password::PasswordHash;

/// One password to check.
pub struct Job<T> {
    /// Passed back with the result (the connection's token, for example).
    pub tag: T,
    /// The user's hash, or a dummy one for an unknown user.
    pub hash: PasswordHash,
    /// The password offered; wiped after use.
    pub password: Vec<u8>,
    /// Whether the user exists: when not, the result is `false` whatever
    /// the dummy hash says, after the same work.
    pub known: bool,
}

impl<T> std::fmt::Debug for Job<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job { password: [redacted], .. }")
    }
}

/// A finished check.
#[derive(Debug)]
pub struct Done<T> {
    /// The job's tag.
    pub tag: T,
    /// Whether the password matched a known user.
    pub ok: bool,
}

/// The pool of verifying threads.
pub struct Hasher<T> {
    jobs: Option<SyncSender<Job<T>>>,
    done: Receiver<Done<T>>,
    threads: Vec<thread::JoinHandle<()>>,
    /// Set when the pool is dropped: queued jobs are wiped, not computed.
    stop: Arc<AtomicBool>,
}

impl<T> std::fmt::Debug for Hasher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hasher({} threads)", self.threads.len())
    }
}

impl<T: Send + 'static> Hasher<T> {
    /// Starts `workers` threads with a queue of `queue` jobs; `notify` is
    /// called after each result is sent.
    pub fn new(
        workers: usize,
        queue: usize,
        notify: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<Hasher<T>> {
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job<T>>(queue);
        let (done_tx, done_rx) = mpsc::channel();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let notify = Arc::new(notify);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let jobs = Arc::clone(&jobs_rx);
            let done = done_tx.clone();
            let notify = Arc::clone(&notify);
            let stop = Arc::clone(&stop);
            let handle = thread::Builder::new()
                .name(format!("palisade-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job.
                        let job = match jobs.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(mut job) = job else {
                            return; // the server is gone
                        };
                        if stop.load(Ordering::Relaxed) {
                            job.password.fill(0);
                            continue; // shutting down: nobody waits for it
                        }
                        let matched = job.hash.verify(&job.password);
                        job.password.fill(0);
                        let ok = matched && job.known;
                        if done.send(Done { tag: job.tag, ok }).is_err() {
                            return;
                        }
                        notify();
                    }
                })?;
            threads.push(handle);
        }
        Ok(Hasher {
            jobs: Some(jobs_tx),
            done: done_rx,
            threads,
            stop,
        })
    }

    /// Queues a job, or gives it back when the queue is full.
    pub fn submit(&self, job: Job<T>) -> Result<(), Job<T>> {
        let Some(tx) = &self.jobs else {
            return Err(job);
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(mut j) | TrySendError::Disconnected(mut j)) => {
                j.password.fill(0);
                Err(j)
            }
        }
    }

    /// A finished check, if any.
    pub fn try_recv(&self) -> Option<Done<T>> {
        self.done.try_recv().ok()
    }
}

impl<T> Drop for Hasher<T> {
    fn drop(&mut self) {
        // Queued jobs are skipped and closing the queue ends the threads;
        // they are not joined, so a stopping server does not wait for a
        // password check nobody will read.
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
        self.threads.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    #[test]
    fn verifies_off_thread_and_bounds_the_queue() {
        let woken = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&woken);
        let hasher = Hasher::new(1, 1, move || {
            w.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let hash = PasswordHash::generate(b"right", 10_000).unwrap();
        let job = |tag, pw: &[u8], known| Job {
            tag,
            hash: hash.clone(),
            password: pw.to_vec(),
            known,
        };
        let mut submitted = vec![];
        let mut refused = 0;
        for (tag, pw, known) in [
            (1, &b"right"[..], true),
            (2, b"wrong", true),
            (3, b"right", false),
        ] {
            match hasher.submit(job(tag, pw, known)) {
                Ok(()) => submitted.push(tag),
                Err(j) => {
                    assert!(j.password.iter().all(|&b| b == 0), "wiped");
                    refused += 1;
                }
            }
        }
        // One queued, plus one running if the worker already took the first
        // (on a busy machine it may not have): never all three.
        assert!(
            (1..=2).contains(&submitted.len()) && refused >= 1,
            "{submitted:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut results = vec![];
        while results.len() < submitted.len() && Instant::now() < deadline {
            match hasher.try_recv() {
                Some(d) => results.push((d.tag, d.ok)),
                None => thread::sleep(Duration::from_millis(5)),
            }
        }
        let expect: Vec<(i32, bool)> = submitted.iter().map(|&t| (t, t == 1)).collect();
        assert_eq!(results, expect);
        assert_eq!(woken.load(Ordering::SeqCst), submitted.len());
        assert_eq!(submitted.len() + refused, 3);
    }
}
