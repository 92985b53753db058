//! A 50 MB attachment: sent base64-encoded over SMTP, downloaded by its link with a streaming reader,
//! hashed as it arrives, while the gateway's VmRSS is sampled: it must stay flat (the file is streamed
//! from disk, or PostgreSQL's chunks one at a time, never read whole into memory). The raw message
//! (68 MB) by its link, the same way.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

const SIZE: usize = 50_000_000;
/// How much the gateway's resident memory may grow while serving the file.
const RSS_SLACK_KIB: u64 = 20 * 1024;

/// Samples a process's VmRSS every 2 ms on a thread, keeping the peak.
struct Sampler {
    pid: i32,
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Sampler {
    fn start(pid: i32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(vm_rss_kib(pid)));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (peak.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut samples = 0u64;
            while !d.load(Ordering::SeqCst) {
                p.fetch_max(vm_rss_kib(pid), Ordering::SeqCst);
                samples += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            samples
        });
        Sampler { pid, peak, done, thread }
    }

    /// Also sample from the caller's thread (e.g. between reads).
    fn sample(&self) {
        self.peak.fetch_max(vm_rss_kib(self.pid), Ordering::SeqCst);
    }

    /// (peak KiB, number of thread samples)
    fn stop(self) -> (u64, u64) {
        self.sample();
        self.done.store(true, Ordering::SeqCst);
        let samples = self.thread.join().unwrap();
        (self.peak.load(Ordering::SeqCst), samples)
    }
}

/// Reads a download to its end, hashing it as it arrives and sampling the gateway's RSS every
/// 4 MiB: its length, its SHA-256 (hex) and how long it took.
fn read_sampled(reader: &mut impl Read, sampler: &Sampler) -> (usize, String, Duration) {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, t) = (0usize, Instant::now());
    loop {
        let n = reader.read(&mut buf).expect("reading the download");
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        total += n;
        if total % (4 << 20) < n {
            sampler.sample();
        }
    }
    (total, hex(ctx.finish().as_ref()), t.elapsed())
}

#[test]
fn a_50_mb_attachment_streams_with_flat_memory() {
    let started = Instant::now();
    let h = setup(|cfg| cfg.max_message_size = Some("100MB".into()), &[], &[]);
    let gw = h.start();
    let bytes = Rng::new(50).noise(SIZE);
    let sha = sha256_hex(&bytes);
    let body = multipart(
        "fifty megabytes",
        &[attachment_part("application/octet-stream", "attachment; filename=\"big.bin\"", &bytes)],
    );
    drop(bytes);
    let before_ingest = vm_rss_kib(gw.pid());
    let ingest_sampler = Sampler::start(gw.pid());
    let mut c = SmtpClient::ready(gw.smtp);
    let id = c.send_mail("ada@sender.test", &["inbox@example.test"], &body);
    drop(body);
    let (ingest_peak, _) = ingest_sampler.stop();
    let sent_at = started.elapsed();

    let (_, ev) = h.event_for(&id);
    let a = &ev["message"]["attachments"][0];
    assert_eq!(a["size"], SIZE, "event attachment: {a}");
    assert_eq!(a["sha256"], sha.as_str(), "event attachment: {a}");
    assert!(ev["message"]["raw"]["base64"].is_null(), "a 68 MB raw message must not be inlined");
    let url = local(&gw, a["url"].as_str().expect("url"));

    // The gateway's resident memory just before the download (the ingest's buffers are freed by now:
    // allocations this large are mmap'd by the allocator and unmapped on free).
    let pid = gw.pid();
    let baseline = vm_rss_kib(pid);

    let sampler = Sampler::start(pid);

    let agent = agent();
    let mut resp = agent.get(&url).call().expect("GET the 50 MB attachment");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers().get("content-length").and_then(|v| v.to_str().ok()), Some(SIZE.to_string().as_str()));
    let (total, got_sha, download) = read_sampled(&mut resp.body_mut().as_reader(), &sampler);
    let (peak, samples) = sampler.stop();

    assert_eq!(total, SIZE, "downloaded length");
    assert_eq!(got_sha, sha, "downloaded sha256");
    let grew = peak.saturating_sub(baseline);
    assert!(
        grew <= RSS_SLACK_KIB,
        "gateway VmRSS grew by {} KiB while serving 50 MB ({baseline} KiB -> peak {peak} KiB, {samples} samples): \
         the file is not streamed",
        grew
    );
    eprintln!(
        "50 MB: sent and ingested in {sent_at:?} (gateway RSS {before_ingest} KiB -> peak {ingest_peak} KiB during \
         ingest), downloaded in {download:?} (RSS {baseline} KiB -> peak {peak} KiB, +{grew} KiB, {samples} \
         samples); whole test {:?}",
        started.elapsed()
    );

    // A Range at the very end of the big file.
    let tail = get(&agent, &url, &[("range", &format!("bytes={}-", SIZE - 10))]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, Rng::new(50).noise(SIZE)[SIZE - 10..]);

    // The raw message (68 MB of base64) by its link, the same way.
    let raw_url = local(&gw, ev["message"]["raw"]["url"].as_str().expect("raw url"));
    let raw_size = ev["message"]["raw"]["size"].as_u64().expect("raw size");
    let raw_sha = ev["message"]["raw"]["sha256"].as_str().expect("raw sha256").to_string();
    let baseline = vm_rss_kib(pid);
    let sampler = Sampler::start(pid);
    let mut resp = agent.get(&raw_url).call().expect("GET the raw message");
    assert_eq!(resp.status().as_u16(), 200);
    let (total, got_sha, download) = read_sampled(&mut resp.body_mut().as_reader(), &sampler);
    let (peak, samples) = sampler.stop();
    assert_eq!(total as u64, raw_size, "raw download length");
    assert_eq!(got_sha, raw_sha, "raw download sha256");
    let grew = peak.saturating_sub(baseline);
    assert!(
        grew <= RSS_SLACK_KIB,
        "gateway VmRSS grew by {grew} KiB while serving the {total}-byte raw message ({baseline} KiB -> peak {peak} \
         KiB, {samples} samples): it is not streamed"
    );
    eprintln!(
        "raw message of {total} bytes downloaded in {download:?} (RSS {baseline} KiB -> peak {peak} KiB, +{grew} KiB, \
         {samples} samples)"
    );
}
