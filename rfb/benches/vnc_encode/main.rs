//! Our VNC server's ZRLE and Tight against TigerVNC's Xvnc, alternated in one run, on a
//! realistic 1920x1080 desktop (gradient wallpaper, panel, editor, terminal, photo, file
//! manager): a full frame, a typed line, a moved window. One client of our own asks both
//! servers for the same changes; per encoding and scenario it reports the median bytes an update
//! takes and the median time from request to last byte, ours against TigerVNC, and our
//! encoder's median in-process time on one thread. Targets: a full frame encoded in <= 10 ms on
//! one core, and bytes within 1.2x of TigerVNC's; they are printed as met or not, never an exit
//! status. Every update is decoded and compared with the image the server was given: a
//! difference fails the run (exit 1), for it is an encoder bug. The decoders check themselves
//! first on hand-made updates, so that their own bug cannot pass for one.
//!
//! Our server runs in process on a frame in plain memory (the launcher serves guest memory the
//! same way), with no VM. Xvnc runs on a display of its own and is drawn on with X11 PutImage; its pointer is
//! hidden, else it would be drawn into the frames. Xvnc takes in damage on its own frame clock
//! (TigerVNC 1.12 has no -DeferUpdate), so each change is given 50 ms before it is asked for.
//!
//! Run with `cargo bench -p rfb --bench vnc_encode` (`VERDANT_BENCH_RUNS` sets the updates
//! per scenario, default 15). Skips, saying why, the TigerVNC columns without `Xvnc` on PATH
//! (Debian package tigervnc-standalone-server). Both servers stay lossless: the client sends
//! CompressLevel 2 (the TigerVNC viewer's default) and no JPEG quality level. It offers
//! CopyRect, as every common viewer does; a server sends it only where it finds that pixels
//! moved (ours looks; Xvnc knows only of X CopyArea, which PutImage is not).

mod canvas;
mod code;
mod desktop;
mod encode;
mod font;
mod selfcheck;
mod servers;
mod windows;
mod x11;

use std::collections::BTreeMap;
use std::time::Duration;

use desktop::{Desktop, HEIGHT, Scenario, WIDTH};
use rfb::client::{self, Client};
use servers::{Server, TigerVnc, Verdant};

/// The encodings compared, with their names in the report.
pub const ENCODINGS: [(i32, &str); 2] = [(client::ZRLE, "ZRLE"), (client::TIGHT, "Tight")];
/// Further incremental requests allowed when an update holds only part of a change.
const MAX_RETRIES: usize = 20;
/// The pause between showing a change and asking for it: longer than a frame at 60 a second,
/// the rate our server sends a viewer updates at most and Xvnc's frame clock takes in damage.
const PAUSE: Duration = Duration::from_millis(50);

/// Rectangles a client decoded, by encoding and kind.
type Tally = BTreeMap<&'static str, u64>;

/// One update, or several when the first held only part of the change.
struct Sample {
    bytes: u64,
    elapsed: Duration,
    retries: usize,
}

/// Everything measured for one encoding, scenario and server.
#[derive(Default)]
struct Series {
    samples: Vec<Sample>,
}

impl Series {
    fn median_bytes(&self) -> Option<f64> {
        median(self.samples.iter().map(|s| s.bytes as f64).collect())
    }

    fn median_seconds(&self) -> Option<f64> {
        median(
            self.samples
                .iter()
                .map(|s| s.elapsed.as_secs_f64())
                .collect(),
        )
    }

    /// Samples that needed more than one request.
    fn incomplete(&self) -> usize {
        self.samples.iter().filter(|s| s.retries > 0).count()
    }
}

/// The median, or `None` for no values.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

fn main() {
    let runs: usize = std::env::var("VERDANT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(15);
    // Servers (Xvnc included) are dropped inside `run`, before the process exits.
    if let Err(e) = run(runs) {
        println!("FAIL: {e}");
        std::process::exit(1);
    }
}

fn run(runs: usize) -> Result<(), String> {
    selfcheck::decoders()?;
    let mut servers: Vec<Box<dyn Server>> = vec![Box::new(Verdant::start()?)];
    match TigerVnc::start() {
        Ok(tiger) => servers.push(Box::new(tiger)),
        Err(why) => testkit::skip(testkit::VIEWERS, format!("the TigerVNC columns: {why}")),
    }
    println!(
        "{WIDTH}x{HEIGHT} desktop, {runs} updates per scenario, servers: {}",
        servers
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // series[encoding][scenario][server]
    let mut series = Vec::new();
    let mut tallies = Vec::new();
    for (encoding, name) in ENCODINGS {
        let (by_scenario, tally) = compare(&mut servers, encoding, name, runs)?;
        series.push(by_scenario);
        tallies.push(tally);
    }

    let encode_times = encode::in_process(runs)?;
    let names: Vec<&str> = servers.iter().map(|s| s.name()).collect();
    report(&names, &series, &encode_times);
    println!();
    println!(
        "What the servers sent, whole run (ZRLE: 64x64 tiles by subencoding; others: rectangles):"
    );
    for ((_, encoding_name), by_server) in ENCODINGS.iter().zip(&tallies) {
        for (name, tally) in names.iter().zip(by_server) {
            let kinds: Vec<String> = tally.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("  {encoding_name:<5} {name:<8}: {}", kinds.join(", "));
        }
    }
    Ok(())
}

/// Runs every scenario against every server in `encoding`; returns the samples by scenario
/// and server, and what each server sent.
fn compare(
    servers: &mut [Box<dyn Server>],
    encoding: i32,
    encoding_name: &str,
    runs: usize,
) -> Result<(Vec<Vec<Series>>, Vec<Tally>), String> {
    let mut clients = Vec::new();
    for server in servers.iter() {
        let client = Client::connect(server.addr(), None, encoding)
            .map_err(|e| format!("{}: connect: {e}", server.name()))?;
        clients.push(client);
    }
    // Drawn with the viewers connected: Xvnc keeps its rendered cursor (which it draws for
    // viewers without the Cursor pseudo-encoding) up to date only while some viewer needs one,
    // and would otherwise send a stale pixel under it.
    let mut desktop = Desktop::new();
    for server in servers.iter_mut() {
        server.show(&desktop.pixels, &[(0, 0, WIDTH, HEIGHT)])?;
    }
    std::thread::sleep(PAUSE);
    for (client, server) in clients.iter_mut().zip(servers.iter()) {
        let what = format!("{}, {encoding_name}, first frame", server.name());
        measure(client, Scenario::Full, &desktop.pixels, &what)?;
    }
    let mut by_scenario = Vec::new();
    for scenario in Scenario::ALL {
        let mut by_server: Vec<Series> = servers.iter().map(|_| Series::default()).collect();
        for i in 0..runs {
            let damage = desktop.step(scenario, i);
            for server in servers.iter_mut() {
                server.show(&desktop.pixels, &damage)?;
            }
            std::thread::sleep(PAUSE);
            // Alternate which goes first, so that drift on a shared machine hits both alike.
            let mut order: Vec<usize> = (0..servers.len()).collect();
            if i % 2 == 1 {
                order.reverse();
            }
            for k in order {
                let what = format!(
                    "{}, {encoding_name}, {}, run {i}",
                    servers[k].name(),
                    scenario.name()
                );
                let sample = measure(&mut clients[k], scenario, &desktop.pixels, &what)?;
                by_server[k].samples.push(sample);
            }
        }
        by_scenario.push(by_server);
    }
    let tallies = clients.iter().map(|c| c.tally().clone()).collect();
    Ok((by_scenario, tallies))
}

/// Asks `client` for the update `scenario` calls for and checks it shows `expected`. An
/// incremental update that holds only part of the change is followed by further requests,
/// counted in the same sample.
fn measure(
    client: &mut Client,
    scenario: Scenario,
    expected: &[u32],
    what: &str,
) -> Result<Sample, String> {
    let first = client
        .update(scenario.incremental(), Duration::from_secs(10))
        .map_err(|e| format!("{what}: {e}"))?;
    let mut sample = Sample {
        bytes: first.bytes,
        elapsed: first.elapsed,
        retries: 0,
    };
    while let Some((x, y, got, want)) = client.first_difference(expected) {
        let wrong = || {
            format!(
                "{what}: the server sent pixels that do not decode to the image it was given \
                 (an encoder bug): first difference at ({x}, {y}): 0x{got:06x}, expected 0x{want:06x}"
            )
        };
        if !scenario.incremental() || sample.retries == MAX_RETRIES {
            return Err(wrong());
        }
        std::thread::sleep(Duration::from_millis(10));
        match client.update(true, Duration::from_millis(500)) {
            Ok(more) => {
                sample.bytes += more.bytes;
                sample.elapsed += more.elapsed;
                sample.retries += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("{}, and no further update came", wrong()));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
    Ok(sample)
}

/// Prints the table, and whether the targets were met.
fn report(names: &[&str], series: &[Vec<Vec<Series>>], encode_times: &[Duration]) {
    let ours = 0;
    let theirs = names.iter().position(|&n| n == "TigerVNC");
    let kib = |b: Option<f64>| b.map_or("-".into(), |b| format!("{:.1} KiB", b / 1024.0));
    let ms = |s: Option<f64>| s.map_or("-".into(), |s| format!("{:.2} ms", s * 1e3));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    println!();
    println!(
        "{:<6} {:<13} | {:>12} {:>12} {:>6} | {:>10} {:>10} {:>6} | {:>10}",
        "", "", "bytes/update", "", "", "update time", "", "", "encode"
    );
    println!(
        "{:<6} {:<13} | {:>12} {:>12} {:>6} | {:>10} {:>10} {:>6} | {:>10}",
        "enc", "scenario", "ours", "TigerVNC", "ratio", "ours", "TigerVNC", "ratio", "ours"
    );
    let mut bytes_verdicts = Vec::new();
    let mut full_encode = Vec::new();
    for (e, (_, encoding_name)) in ENCODINGS.iter().enumerate() {
        for (s, scenario) in Scenario::ALL.iter().enumerate() {
            let here = &series[e][s];
            let (our_bytes, our_time) = (here[ours].median_bytes(), here[ours].median_seconds());
            let (their_bytes, their_time) = theirs.map_or((None, None), |t| {
                (here[t].median_bytes(), here[t].median_seconds())
            });
            let encode = encode_times
                .get(e * Scenario::ALL.len() + s)
                .map(Duration::as_secs_f64);
            println!(
                "{:<6} {:<13} | {:>12} {:>12} {:>6} | {:>10} {:>10} {:>6} | {:>10}",
                encoding_name,
                scenario.name(),
                kib(our_bytes),
                kib(their_bytes),
                ratio(our_bytes, their_bytes),
                ms(our_time),
                ms(their_time),
                ratio(our_time, their_time),
                ms(encode),
            );
            if let (Some(a), Some(b)) = (our_bytes, their_bytes) {
                let verdict = if a <= 1.2 * b { "met" } else { "NOT met" };
                bytes_verdicts.push(format!(
                    "{encoding_name} {} {:.2}x {verdict}",
                    scenario.name(),
                    a / b
                ));
            }
            if *scenario == Scenario::Full {
                full_encode.push(match encode {
                    Some(t) if t <= 0.010 => format!("{encoding_name} {:.2} ms met", t * 1e3),
                    Some(t) => format!("{encoding_name} {:.2} ms NOT met", t * 1e3),
                    None => format!("{encoding_name} not measured"),
                });
            }
        }
    }
    let incomplete: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let (n, total) = series.iter().flatten().fold((0, 0), |(n, t), s| {
                (n + s[k].incomplete(), t + s[k].samples.len())
            });
            format!("{name} {n} of {total}")
        })
        .collect();
    println!();
    println!(
        "bytes: the FramebufferUpdate message; update time: request sent to last byte read, by \
         our client (which decodes after); encode: our encoder in process, one thread (medians)"
    );
    println!(
        "updates that held only part of a change and took another request: {}",
        incomplete.join(", ")
    );
    println!(
        "target full frame encoded in <= 10 ms on one core: {}",
        full_encode.join("; ")
    );
    if bytes_verdicts.is_empty() {
        println!("target bytes <= 1.2x TigerVNC: not measured (no TigerVNC)");
    } else {
        println!(
            "target bytes <= 1.2x TigerVNC: {}",
            bytes_verdicts.join("; ")
        );
    }
}
