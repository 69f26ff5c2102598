//! `verdant-launcher doctor`: can Verdant run on this host, and how fast will guests be?
//!
//! Checks `/dev/kvm` (present, openable, API version, the capabilities we use), summarises the
//! CPUID the host's KVM offers, and times a tiny guest to estimate guest instructions per second.
//! Also says which seccomp profile `run` would apply, whether the kernel can apply it, and how
//! confined this process is now ([`crate::sandbox`]).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, kvm_cpuid_entry2};
use kvm_ioctls::{Cap, Kvm};
use serde::Serialize;
use vm_memory::{Bytes, GuestAddress};

use crate::Error;
use crate::arch::layout::HIMEM_START;
use crate::arch::regs::BootProtocol;
use crate::boot::BootEntry;
use crate::devices::Devices;
use crate::devices::serial::{ConsoleBuffer, ConsoleSink, new_com1};
use crate::sandbox::{SeccompMode, Status};
use crate::vstate::memory;
use crate::vstate::vcpu::{Outcome, Vcpu};
use crate::vstate::vm::{REQUIRED_CAPS, Vm};

/// KVM's stable API version.
const KVM_API_VERSION: i32 = 12;
/// Capabilities we use when present.
const OPTIONAL_CAPS: [(Cap, &str); 4] = [
    (Cap::ImmediateExit, "prompt vCPU stops"),
    (Cap::TscDeadlineTimer, "TSC-deadline timer for guests"),
    (
        Cap::DirtyLogRing,
        "dirty ring (the display reads the classic dirty log)",
    ),
    (Cap::X2ApicApi, "x2APIC for large guests"),
];
/// Guest instructions per second above which KVM runs at hardware speed.
const HARDWARE_SPEED: f64 = 100e6;

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// Whether Verdant cannot run without it.
    pub required: bool,
}

/// A CPUID summary.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CpuSummary {
    /// The vendor string.
    pub vendor: String,
    /// Family, model, stepping.
    pub signature: String,
    /// Features of interest the host's KVM offers.
    pub features: Vec<&'static str>,
    /// Features of interest it does not offer.
    pub missing: Vec<&'static str>,
    /// The highest x86-64 micro-architecture level guests get (1 to 4).
    pub x86_64_level: u8,
}

/// The tiny guest's timing.
#[derive(Debug, Clone, Serialize)]
pub struct Speed {
    /// Guest instructions executed.
    pub instructions: u64,
    /// Seconds they took.
    pub seconds: f64,
    /// Instructions per second.
    pub instructions_per_second: f64,
    /// Whether that is hardware speed.
    pub hardware_speed: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The CPUID summary, when KVM could be asked.
    pub cpu: Option<CpuSummary>,
    /// The guest speed, when a guest could run.
    pub speed: Option<Speed>,
    /// Confinement: the profile `run` would apply, the kernel's support, this process's state.
    pub sandbox: Status,
    /// Whether Verdant can run VMs here.
    pub can_run: bool,
    /// One line a person reads first.
    pub verdict: String,
}

/// Runs every check.
pub fn diagnose() -> Report {
    let mut checks = Vec::new();
    match std::fs::metadata("/dev/kvm") {
        Ok(meta) => check(
            &mut checks,
            "/dev/kvm present",
            true,
            format!("mode {:o}", meta.permissions().mode() & 0o7777),
            true,
        ),
        Err(e) => check(
            &mut checks,
            "/dev/kvm present",
            false,
            format!(
                "{e}: enable KVM in the BIOS and load kvm_intel or kvm_amd; in Kubernetes, mount the host's /dev/kvm"
            ),
            true,
        ),
    }
    let kvm = match Kvm::new() {
        Ok(kvm) => {
            check(
                &mut checks,
                "/dev/kvm opens read-write",
                true,
                "ok".into(),
                true,
            );
            Some(kvm)
        }
        Err(e) => {
            check(
                &mut checks,
                "/dev/kvm opens read-write",
                false,
                format!(
                    "{e}: run as root, add the user to the kvm group, or make the pod privileged"
                ),
                true,
            );
            None
        }
    };

    let mut cpu = None;
    let mut speed = None;
    if let Some(kvm) = &kvm {
        let version = kvm.get_api_version();
        check(
            &mut checks,
            "KVM API version",
            version == KVM_API_VERSION,
            format!("{version} (need {KVM_API_VERSION})"),
            true,
        );
        for (cap, what) in REQUIRED_CAPS {
            check(
                &mut checks,
                &format!("capability {cap:?}"),
                kvm.check_extension(cap),
                what.into(),
                true,
            );
        }
        for (cap, what) in OPTIONAL_CAPS {
            check(
                &mut checks,
                &format!("capability {cap:?}"),
                kvm.check_extension(cap),
                what.into(),
                false,
            );
        }
        check(
            &mut checks,
            "vCPUs per VM",
            kvm.get_max_vcpus() >= 1,
            format!(
                "up to {} (recommended {})",
                kvm.get_max_vcpus(),
                kvm.get_nr_vcpus()
            ),
            true,
        );
        match kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES) {
            Ok(cpuid) => cpu = Some(summarise_cpuid(cpuid.as_slice())),
            Err(e) => check(
                &mut checks,
                "KVM_GET_SUPPORTED_CPUID",
                false,
                e.to_string(),
                true,
            ),
        }
        let required_ok = checks.iter().all(|c| c.ok || !c.required);
        if required_ok {
            let (ok, detail) = match dirty_log(kvm) {
                Ok(true) => (
                    true,
                    "the display finds what the guest drew from it".to_owned(),
                ),
                Ok(false) => (
                    false,
                    "KVM keeps no log here: the display compares whole frames instead".to_owned(),
                ),
                Err(e) => (false, e.to_string()),
            };
            check(&mut checks, "framebuffer dirty-page log", ok, detail, false);
            match time_tiny_guest(kvm) {
                Ok(s) => {
                    check(
                        &mut checks,
                        "tiny guest runs",
                        true,
                        format!("{} instructions in {:.3} s", s.instructions, s.seconds),
                        true,
                    );
                    speed = Some(s);
                }
                Err(e) => check(&mut checks, "tiny guest runs", false, e.to_string(), true),
            }
        }
    }

    let sandbox = Status::current();
    confinement_checks(&mut checks, &sandbox);

    let can_run = checks.iter().all(|c| c.ok || !c.required);
    let verdict = match (&speed, can_run) {
        (_, false) => "Verdant cannot run VMs here: see the failed checks.".to_owned(),
        (Some(s), true) if s.hardware_speed => format!(
            "Verdant can run here at hardware speed (~{:.0} M guest instructions/s).",
            s.instructions_per_second / 1e6
        ),
        (Some(s), true) => format!(
            "Verdant can run here, but KVM is emulated or nested and slow (~{:.1} M guest instructions/s): fine for tests, too slow for desktops.",
            s.instructions_per_second / 1e6
        ),
        (None, true) => "Verdant can run here.".to_owned(),
    };
    Report {
        checks,
        cpu,
        speed,
        sandbox,
        can_run,
        verdict,
    }
}

/// What `run`'s confinement needs (a profile that compiles, a kernel that applies it in the
/// chosen mode) and what this process has.
fn confinement_checks(checks: &mut Vec<Check>, status: &Status) {
    let env = SeccompMode::ENV;
    match status.mode {
        None => {
            let why = status.mode_error.clone().unwrap_or_default();
            check(checks, "seccomp profile of run", false, why, true);
        }
        Some(SeccompMode::Off) => {
            let detail = format!("off ({env}=off): run installs no filter");
            check(checks, "seccomp profile of run", false, detail, false);
        }
        Some(mode) => {
            let detail = status.compile_error.clone().unwrap_or_else(|| {
                format!(
                    "{} {mode}: {} syscalls allowed, forbidden -> {} ({env} or --seccomp)",
                    status.profile,
                    status.syscalls_allowed,
                    mode.forbidden()
                )
            });
            let ok = status.compile_error.is_none();
            check(checks, "seccomp profile of run", ok, detail, true);
        }
    }
    let mode = status.mode.unwrap_or_default();
    let wanted = if mode == SeccompMode::Off {
        SeccompMode::Enforce
    } else {
        mode
    };
    let ok = status.kernel_supports(wanted);
    let detail = if ok {
        format!("actions: {}", status.kernel_actions.join(" "))
    } else {
        format!(
            "no seccomp filters with the {} action (Linux 4.14+, CONFIG_SECCOMP_FILTER): run with --seccomp off",
            if wanted == SeccompMode::Log {
                "log"
            } else {
                "kill_process"
            }
        )
    };
    let required = mode != SeccompMode::Off;
    check(
        checks,
        "seccomp filters in the kernel",
        ok,
        detail,
        required,
    );
    let now = status.process.describe();
    check(checks, "confinement of this process", true, now, false);
}

fn check(checks: &mut Vec<Check>, name: &str, ok: bool, detail: String, required: bool) {
    checks.push(Check {
        name: name.into(),
        ok,
        detail,
        required,
    });
}

/// Features of interest: (leaf, register, bit, name). Register 0 = ECX, 1 = EDX, 2 = EBX.
const FEATURES: [(u32, u8, u32, &str); 18] = [
    (0x1, 1, 26, "sse2"),
    (0x1, 0, 0, "sse3"),
    (0x1, 0, 9, "ssse3"),
    (0x1, 0, 13, "cmpxchg16b"),
    (0x1, 0, 19, "sse4.1"),
    (0x1, 0, 20, "sse4.2"),
    (0x1, 0, 21, "x2apic"),
    (0x1, 0, 22, "movbe"),
    (0x1, 0, 23, "popcnt"),
    (0x1, 0, 24, "tsc-deadline"),
    (0x1, 0, 26, "xsave"),
    (0x1, 0, 28, "avx"),
    (0x1, 0, 29, "f16c"),
    (0x1, 0, 12, "fma"),
    (0x7, 2, 5, "avx2"),
    (0x7, 2, 3, "bmi1"),
    (0x7, 2, 8, "bmi2"),
    (0x7, 2, 16, "avx512f"),
];

/// Summarises KVM's supported CPUID: vendor, signature, features, x86-64 level.
pub fn summarise_cpuid(entries: &[kvm_cpuid_entry2]) -> CpuSummary {
    let leaf = |function: u32| {
        entries
            .iter()
            .find(|e| e.function == function && e.index == 0)
    };
    let mut summary = CpuSummary::default();
    if let Some(l0) = leaf(0) {
        let bytes: Vec<u8> = [l0.ebx, l0.edx, l0.ecx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        summary.vendor = String::from_utf8_lossy(&bytes)
            .trim_end_matches('\0')
            .to_owned();
    }
    if let Some(l1) = leaf(1) {
        let family = ((l1.eax >> 8) & 0xf) + ((l1.eax >> 20) & 0xff);
        let model = ((l1.eax >> 4) & 0xf) | (((l1.eax >> 16) & 0xf) << 4);
        summary.signature = format!(
            "family {family:#x} model {model:#x} stepping {}",
            l1.eax & 0xf
        );
    }
    let has = |name: &str| -> bool {
        FEATURES
            .iter()
            .find(|f| f.3 == name)
            .is_some_and(|&(function, reg, bit, _)| {
                leaf(function).is_some_and(|e| {
                    let value = match reg {
                        0 => e.ecx,
                        1 => e.edx,
                        _ => e.ebx,
                    };
                    value & (1 << bit) != 0
                })
            })
    };
    for &(_, _, _, name) in &FEATURES {
        if has(name) {
            summary.features.push(name);
        } else {
            summary.missing.push(name);
        }
    }
    let all = |names: &[&str]| names.iter().all(|n| has(n));
    summary.x86_64_level = if !all(&["sse2"]) {
        0
    } else if !all(&["cmpxchg16b", "popcnt", "sse3", "ssse3", "sse4.1", "sse4.2"]) {
        1
    } else if !all(&[
        "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave",
    ]) {
        2
    } else if !all(&["avx512f"]) {
        3
    } else {
        4
    };
    summary
}

/// The tiny guest, 32-bit code entered like a PVH kernel: counts ECX down from N, then writes
/// S5|SLP_EN to the sleep-control port. It runs 2N + 4 instructions.
fn tiny_guest(n: u32) -> Vec<u8> {
    let mut code = vec![0xb9]; // mov ecx, imm32
    code.extend_from_slice(&n.to_le_bytes());
    code.extend_from_slice(&[
        0x49, // dec ecx
        0x75, 0xfd, // jnz -3
        0x66, 0xba, 0x00, 0x06, // mov dx, 0x600
        0xb0, 0x34, // mov al, (5 << 2) | (1 << 5)
        0xee, // out dx, al
        0xf4, // hlt
        0xeb, 0xfd, // jmp -3
    ]);
    code
}

/// Runs the tiny guest with growing loop counts until it takes long enough to time.
/// Whether KVM logs writes to a framebuffer slot (and the log can be read).
fn dirty_log(kvm: &Kvm) -> Result<bool, Error> {
    let mem = memory::create(4 << 20, Some(64 << 10))?;
    let vm = Vm::new(kvm, &mem)?;
    Ok(vm.framebuffer_log().is_some_and(|log| log.take().is_some()))
}

fn time_tiny_guest(kvm: &Kvm) -> Result<Speed, Error> {
    let mut n: u32 = 50_000;
    loop {
        let took = run_tiny_guest(kvm, n)?;
        let instructions = 2 * u64::from(n) + 4;
        if took >= Duration::from_millis(200) || n >= 1_000_000_000 {
            let ips = instructions as f64 / took.as_secs_f64();
            return Ok(Speed {
                instructions,
                seconds: took.as_secs_f64(),
                instructions_per_second: ips,
                hardware_speed: ips >= HARDWARE_SPEED,
            });
        }
        n = n.saturating_mul(10).min(1_000_000_000);
    }
}

fn run_tiny_guest(kvm: &Kvm, n: u32) -> Result<Duration, Error> {
    let mem = memory::create(4 << 20, None)?;
    mem.write_slice(&tiny_guest(n), GuestAddress(HIMEM_START))
        .map_err(|_| Error::BootSetup("cannot write the tiny guest"))?;
    let vm = Vm::new(kvm, &mem)?;
    let com1 = new_com1(
        vm.irqfd(4)?,
        ConsoleSink::new(ConsoleBuffer::new(256), false),
    );
    let devices = Devices::new(com1, vm.irqfd(1)?, vm.irqfd(12)?, Instant::now());
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| Error::kvm("KVM_GET_SUPPORTED_CPUID", e))?;
    let entry = BootEntry {
        protocol: BootProtocol::Pvh,
        entry: HIMEM_START,
    };
    let mut vcpu = Vcpu::new(&vm, 0, 1, &supported, &mem, Some(entry))?;
    let start = Instant::now();
    let outcome = vcpu.run(&devices, &std::sync::atomic::AtomicBool::new(false));
    let took = start.elapsed();
    match outcome {
        Outcome::PowerOff => Ok(took),
        other => Err(Error::Doctor(format!(
            "the tiny guest did not finish: {other:?}"
        ))),
    }
}

/// The report for people: one screen.
pub fn render(report: &Report) -> String {
    let mut out = String::from("verdant-launcher doctor\n\n");
    for c in &report.checks {
        let mark = match (c.ok, c.required) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            (false, false) => "no  ",
        };
        out.push_str(&format!("  [{mark}] {:<32} {}\n", c.name, c.detail));
    }
    if let Some(cpu) = &report.cpu {
        out.push_str(&format!(
            "\n  CPU offered to guests: {} {}, x86-64-v{}\n    has:     {}\n    lacks:   {}\n",
            cpu.vendor,
            cpu.signature,
            cpu.x86_64_level,
            cpu.features.join(" "),
            if cpu.missing.is_empty() {
                "-".to_owned()
            } else {
                cpu.missing.join(" ")
            },
        ));
        if cpu.x86_64_level < 2 {
            out.push_str("    note: distributions built for x86-64-v2 or newer (RHEL 9+, ...) will not boot on this CPU model\n");
        }
    }
    if let Some(s) = &report.speed {
        out.push_str(&format!(
            "\n  Guest speed: {:.1} M instructions/s ({})\n",
            s.instructions_per_second / 1e6,
            if s.hardware_speed {
                "hardware speed"
            } else {
                "emulated or nested: slow"
            }
        ));
    }
    out.push_str(&format!("\n{}\n", report.verdict));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::cpuid::leaf;

    #[test]
    fn cpuid_summary_names_vendor_features_and_level() {
        // "GenuineIntel", family 6 model 0x3a; SSE2 only in leaf 1: an x86-64-v1 CPU.
        let entries = [
            leaf(0, 0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            leaf(1, 0x000306a9, 0, 0, 1 << 26),
        ];
        let s = summarise_cpuid(&entries);
        assert_eq!(s.vendor, "GenuineIntel");
        assert_eq!(s.signature, "family 0x6 model 0x3a stepping 9");
        assert_eq!(s.features, ["sse2"]);
        assert!(s.missing.contains(&"cmpxchg16b") && s.missing.contains(&"avx2"));
        assert_eq!(s.x86_64_level, 1);
    }

    #[test]
    fn x86_64_v3_needs_avx2_and_friends() {
        let ecx = (1 << 0)
            | (1 << 9)
            | (1 << 12)
            | (1 << 13)
            | (1 << 19)
            | (1 << 20)
            | (1 << 22)
            | (1 << 23)
            | (1 << 26)
            | (1 << 28)
            | (1 << 29);
        let entries = [
            leaf(0, 0xd, 0, 0, 0),
            leaf(1, 0, 0, ecx, 1 << 26),
            leaf(7, 0, (1 << 3) | (1 << 5) | (1 << 8), 0, 0),
        ];
        assert_eq!(summarise_cpuid(&entries).x86_64_level, 3);
    }

    #[test]
    fn tiny_guest_encodes_the_loop_count_and_power_off() {
        let code = tiny_guest(0x0102_0304);
        assert_eq!(&code[..5], &[0xb9, 0x04, 0x03, 0x02, 0x01]);
        assert!(
            code.windows(3).any(|w| w == [0xb0, 0x34, 0xee]),
            "mov al, 0x34; out dx, al"
        );
    }
}
