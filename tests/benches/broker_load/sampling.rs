//! The latency samples of the broker benchmark: one request at a time, timed until its update
//! is read, through the broker and straight to the launcher, interleaved so that neither path
//! always goes second.

use std::time::{Duration, Instant};

use tests::wsrfb::RfbClient;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::TcpStream;

/// A region of the frame: x, y, width, height.
pub type Region = (u16, u16, u16, u16);

/// A session's samples are at least this far apart: the launcher's VNC server looks at the
/// frame at most every 100 ms while it is unchanged (rfb's IDLE_WAKE), and a sample must not
/// wait for that.
pub const MIN_GAP: Duration = Duration::from_millis(150);

/// How long one sample may take before it counts as failed.
const SAMPLE_LIMIT: Duration = Duration::from_secs(30);

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p99 and max of some latencies, in ms.
pub fn spread(label: &str, latencies: &mut [Duration]) -> (f64, f64) {
    latencies.sort_unstable();
    let (p50, p99) = (
        ms(percentile(latencies, 0.50)),
        ms(percentile(latencies, 0.99)),
    );
    println!(
        "{label}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms ({} samples)",
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len()
    );
    (p50, p99)
}

/// A viewer and when its last sample ended.
pub struct Viewer<S> {
    client: RfbClient<S>,
    last: Option<Instant>,
    /// Which of the pool's desktops it views.
    pub desktop: usize,
    failed: bool,
}

impl<S> Viewer<S> {
    pub fn new(client: RfbClient<S>, desktop: usize) -> Self {
        Self {
            client,
            last: None,
            desktop,
            failed: false,
        }
    }
}

/// What the samples of one path came to.
#[derive(Default)]
pub struct Figures {
    /// Each sample's round trip.
    pub latencies: Vec<Duration>,
    /// Bytes of pixels the samples read.
    pub bytes: u64,
    /// Samples held back to keep [`MIN_GAP`] between a session's requests.
    pub waits: usize,
    /// Why viewers failed.
    pub errors: Vec<String>,
}

impl Figures {
    /// Adds `other`'s samples to these.
    pub fn absorb(&mut self, other: Figures) {
        self.latencies.extend(other.latencies);
        self.bytes += other.bytes;
        self.waits += other.waits;
        self.errors.extend(other.errors);
    }
}

/// One sample: a non-incremental request for `region`, timed until its update is read.
/// `None` when the viewer has failed (now or before).
pub async fn sample<S: AsyncRead + AsyncWrite + Unpin>(
    viewer: &mut Viewer<S>,
    region: Region,
    path: &mut Figures,
    label: &str,
) -> Option<Duration> {
    if viewer.failed {
        return None;
    }
    if let Some(ago) = viewer.last.map(|at| at.elapsed())
        && ago < MIN_GAP
    {
        path.waits += 1;
        tokio::time::sleep(MIN_GAP - ago).await;
    }
    let (x, y, w, h) = region;
    let started = Instant::now();
    let result = tokio::time::timeout(SAMPLE_LIMIT, async {
        viewer.client.request(false, x, y, w, h).await?;
        viewer.client.read_update().await
    })
    .await;
    let took = started.elapsed();
    viewer.last = Some(Instant::now());
    match result {
        Ok(Ok(update)) => {
            path.bytes += update.bytes;
            path.latencies.push(took);
            Some(took)
        }
        Ok(Err(e)) => {
            viewer.failed = true;
            path.errors
                .push(format!("{label} desktop {}: {e}", viewer.desktop));
            None
        }
        Err(_) => {
            viewer.failed = true;
            path.errors.push(format!(
                "{label} desktop {}: no update in {} s",
                viewer.desktop,
                SAMPLE_LIMIT.as_secs()
            ));
            None
        }
    }
}

/// `samples` samples of `region` through the broker, one request at a time: desktop by
/// desktop, a broker sample then a direct one on the same launcher (the other way round every
/// other round). The figures of each path, and the paired differences (broker minus the
/// direct sample beside it), in ms.
pub async fn interleaved(
    brokered: &mut [Viewer<DuplexStream>],
    direct: &mut [Viewer<TcpStream>],
    desktops: usize,
    samples: usize,
    region: Region,
) -> (Figures, Figures, Vec<f64>) {
    let rounds = samples.div_ceil(brokered.len().max(1));
    let mut via_broker = Figures::default();
    let mut via_direct = Figures::default();
    let mut paired = Vec::new();
    let mut direct_turn = vec![0usize; desktops];
    'rounds: for round in 0..rounds {
        for viewer in brokered.iter_mut() {
            if via_broker.latencies.len() >= samples {
                break 'rounds;
            }
            let d = viewer.desktop;
            let mine: Vec<usize> = (0..direct.len())
                .filter(|&j| direct[j].desktop == d && !direct[j].failed)
                .collect();
            let j = (!mine.is_empty()).then(|| mine[direct_turn[d] % mine.len()]);
            direct_turn[d] += 1;
            // The direct sample first every other round, so neither path always goes second.
            let direct_first = round % 2 == 1;
            let mut t = None;
            if direct_first && let Some(j) = j {
                t = sample(&mut direct[j], region, &mut via_direct, "direct").await;
            }
            let b = sample(viewer, region, &mut via_broker, "broker").await;
            if !direct_first && let Some(j) = j {
                t = sample(&mut direct[j], region, &mut via_direct, "direct").await;
            }
            if let (Some(b), Some(t)) = (b, t) {
                paired.push(ms(b) - ms(t));
            }
        }
    }
    (via_broker, via_direct, paired)
}
