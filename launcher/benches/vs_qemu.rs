//! verdant-launcher against QEMU `-M microvm` on the same PVH test guest, alternated in one run:
//! wall time from process start to the guest's first serial byte, and VMM memory overhead
//! (peak RSS minus the guest RAM the process has touched, read from /proc while the guest idles).
//! Prints medians and ratios; never fails on time. Skips, saying why, without /dev/kvm, the test
//! guests or qemu-system-x86_64.
//!
//! Run with `cargo bench -p launcher --bench vs_qemu` (`VERDANT_BENCH_RUNS` sets the run count,
//! default 21).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Guest RAM for both VMMs; the benchmark finds this mapping in /proc/<pid>/smaps.
const GUEST_MIB: u64 = 32;

struct Sample {
    first_byte: Duration,
    overhead_kib: u64,
    peak_kib: u64,
    guest_touched_kib: u64,
}

fn main() {
    let guest = Path::new(env!("VERDANT_TEST_GUESTS")).join("idle.elf");
    if env!("VERDANT_TEST_GUESTS").is_empty() || !guest.exists() {
        testkit::skip(testkit::KVM, "the test guests were not built");
        return;
    }
    if let Err(why) = testkit::kvm_usable() {
        testkit::skip(testkit::KVM, why);
        return;
    }
    let qemu = "qemu-system-x86_64";
    if !testkit::runs(qemu, &["--version"]) {
        testkit::skip(
            testkit::VIEWERS,
            format!("{qemu} is not installed (Debian package qemu-system-x86)"),
        );
        return;
    }
    let runs: usize = std::env::var("VERDANT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let guest = guest.to_str().expect("UTF-8 path");
    let memory = format!("{GUEST_MIB}Mi");
    let ours = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"));
        cmd.args(["run", "--kernel", guest, "--memory", &memory]);
        cmd
    };
    let qemu_cmd = || {
        let mut cmd = Command::new(qemu);
        cmd.args([
            "-M",
            "microvm",
            "-accel",
            "kvm",
            "-nodefaults",
            "-no-user-config",
        ])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-m",
            &format!("{GUEST_MIB}M"),
        ])
        .args(["-kernel", guest]);
        cmd
    };

    let mut our_samples = Vec::new();
    let mut qemu_samples = Vec::new();
    for run in 0..runs {
        // Alternate which goes first, so that drift on a shared machine hits both alike.
        let order: [bool; 2] = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_ours in order {
            let cmd = if is_ours { ours() } else { qemu_cmd() };
            match measure(cmd) {
                Ok(s) if is_ours => our_samples.push(s),
                Ok(s) => qemu_samples.push(s),
                Err(e) => {
                    println!(
                        "run {run}: {} failed: {e}",
                        if is_ours { "verdant-launcher" } else { "qemu" }
                    );
                    return;
                }
            }
        }
    }

    report("verdant-launcher", &our_samples);
    report("qemu microvm", &qemu_samples);
    let (our_t, qemu_t) = (
        median(&our_samples, |s| s.first_byte.as_secs_f64()),
        median(&qemu_samples, |s| s.first_byte.as_secs_f64()),
    );
    let (our_m, qemu_m) = (
        median(&our_samples, |s| s.overhead_kib as f64),
        median(&qemu_samples, |s| s.overhead_kib as f64),
    );
    println!();
    println!(
        "start -> first serial byte: verdant {:.1} ms, qemu {:.1} ms, ratio verdant/qemu {:.2} (target < 1)",
        our_t * 1e3,
        qemu_t * 1e3,
        our_t / qemu_t
    );
    println!(
        "memory overhead: verdant {:.2} MiB, qemu {:.2} MiB, ratio verdant/qemu {:.2} (target <= 5 MiB)",
        our_m / 1024.0,
        qemu_m / 1024.0,
        our_m / qemu_m
    );
}

fn report(name: &str, samples: &[Sample]) {
    println!(
        "{name}: {} runs; median first byte {:.1} ms (min {:.1}, max {:.1}); median peak RSS {:.2} MiB, guest RAM touched {:.2} MiB, overhead {:.2} MiB",
        samples.len(),
        median(samples, |s| s.first_byte.as_secs_f64()) * 1e3,
        samples
            .iter()
            .map(|s| s.first_byte.as_secs_f64())
            .fold(f64::MAX, f64::min)
            * 1e3,
        samples
            .iter()
            .map(|s| s.first_byte.as_secs_f64())
            .fold(0.0, f64::max)
            * 1e3,
        median(samples, |s| s.peak_kib as f64) / 1024.0,
        median(samples, |s| s.guest_touched_kib as f64) / 1024.0,
        median(samples, |s| s.overhead_kib as f64) / 1024.0,
    );
}

fn median(samples: &[Sample], key: impl Fn(&Sample) -> f64) -> f64 {
    let mut values: Vec<f64> = samples.iter().map(key).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn measure(mut cmd: Command) -> Result<Sample, String> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let result = sample(&mut child, start);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn sample(child: &mut Child, start: Instant) -> Result<Sample, String> {
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut byte = [0u8; 1];
    stdout
        .read_exact(&mut byte)
        .map_err(|e| format!("no serial output: {e}"))?;
    let first_byte = start.elapsed();
    // Read the rest of "ready\n", then let the guest settle into its halt.
    let mut line = vec![byte[0]];
    while !line.ends_with(b"\n") {
        stdout
            .read_exact(&mut byte)
            .map_err(|e| format!("serial output ended: {e}"))?;
        line.push(byte[0]);
    }
    std::thread::sleep(Duration::from_millis(100));
    let pid = child.id();
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let peak_kib = status_kib(&status, "VmHWM:").ok_or("no VmHWM")?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).map_err(|e| e.to_string())?;
    let guest_touched_kib = guest_ram_rss_kib(&smaps).ok_or("no guest RAM mapping found")?;
    Ok(Sample {
        first_byte,
        overhead_kib: peak_kib.saturating_sub(guest_touched_kib),
        peak_kib,
        guest_touched_kib,
    })
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The Rss of the mapping(s) whose size is the guest RAM size: what the guest has touched.
fn guest_ram_rss_kib(smaps: &str) -> Option<u64> {
    let want = GUEST_MIB * 1024;
    let mut total = None;
    let mut in_guest_ram = false;
    for line in smaps.lines() {
        if let Some(size) = line.strip_prefix("Size:") {
            in_guest_ram = size
                .trim()
                .strip_suffix("kB")
                .and_then(|s| s.trim().parse::<u64>().ok())
                == Some(want);
        } else if let Some(rss) = line.strip_prefix("Rss:")
            && in_guest_ram
        {
            let kib: u64 = rss.trim().strip_suffix("kB")?.trim().parse().ok()?;
            *total.get_or_insert(0) += kib;
        }
    }
    total
}
