//! Every test guest through the real `/dev/kvm`, via the `verdant-launcher` binary: serial
//! output, exit status and error reports. Skips, saying why, where `/dev/kvm` or the guests
//! are missing.

mod common;

use std::process::{Command, Output};
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use common::{guest, guest_file};
use launcher::machine::{ConsoleOptions, Machine, VmExit};
use launcher_api::LauncherConfig;

fn launch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verdant-launcher"))
        .args(args)
        .output()
        .expect("verdant-launcher runs")
}

fn run_guest(name: &str, extra: &[&str]) -> Option<(Output, String, String)> {
    let file = if name.ends_with(".bin") {
        name.to_owned()
    } else {
        format!("{name}.elf")
    };
    let kernel = guest_file(&file)?;
    let mut args = vec![
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        "32Mi",
    ];
    args.extend_from_slice(extra);
    let out = launch(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Some((out, stdout, stderr))
}

#[test]
fn hello_prints_on_the_serial_console_and_powers_off() {
    let Some((out, stdout, stderr)) = run_guest("hello", &[]) else {
        return;
    };
    assert_eq!(
        stdout, "Hello from a Verdant test guest\n",
        "stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("powered off"), "{stderr}");
}

#[test]
fn poweroff_exits_zero_with_no_output() {
    let Some((out, stdout, stderr)) = run_guest("poweroff", &[]) else {
        return;
    };
    assert_eq!(stdout, "");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn reset_exits_with_the_reset_status() {
    let Some((out, stdout, stderr)) = run_guest("reset", &[]) else {
        return;
    };
    assert_eq!(stdout, "resetting\n");
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("reset"), "{stderr}");
}

#[test]
fn boot_progress_port_records_the_first_userspace_step() {
    let Some((out, stdout, stderr)) = run_guest("progress", &[]) else {
        return;
    };
    assert_eq!(stdout, "userspace reached\n");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("guest reached userspace (boot code 0x60)"),
        "{stderr}"
    );
}

#[test]
fn triple_fault_is_reported_with_registers_not_a_panic() {
    let Some((out, stdout, stderr)) = run_guest("crash", &[]) else {
        return;
    };
    assert_eq!(stdout, "crashing\n");
    assert_eq!(out.status.code(), Some(4), "stderr: {stderr}");
    assert!(
        stderr.contains("vCPU 0: the guest triple-faulted"),
        "{stderr}"
    );
    // The guest loaded 0xc0ffee into eax just before ud2: the dump shows the guest's state.
    assert!(stderr.contains("rax=0x0000000000c0ffee"), "{stderr}");
    assert!(
        stderr.contains("rip=") && stderr.contains("cr0="),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn stray_mmio_is_survived_and_executing_mmio_is_an_error() {
    let Some((out, stdout, stderr)) = run_guest("badmmio", &[]) else {
        return;
    };
    assert!(
        stderr.contains("guest wrote 4 bytes at 0xd0000000, where no device lives"),
        "{stderr}"
    );
    assert_eq!(stdout, "survived a stray MMIO write\n");
    assert_eq!(out.status.code(), Some(4), "stderr: {stderr}");
    assert!(stderr.contains("vCPU 0:"), "{stderr}");
    assert!(stderr.contains("rip=0x00000000d0000000"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn elf_without_pvh_note_boots_through_the_64bit_linux_entry() {
    let Some((out, stdout, stderr)) = run_guest("hello64", &[]) else {
        return;
    };
    // The guest checks the zero page's "HdrS" magic through %rsi before printing this.
    assert_eq!(stdout, "Hello from 64-bit mode\n", "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn bzimage_boots_through_its_setup_header() {
    let Some((out, stdout, stderr)) = run_guest("bzhello.bin", &[]) else {
        return;
    };
    // Entered at code32_start + 0x200 in long mode; it checks the zero page before printing.
    assert_eq!(stdout, "Hello from a bzImage\n", "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

/// A text file to use as an initrd, removed on drop.
struct TextFile(std::path::PathBuf);

impl TextFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("verdant-{name}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TextFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn initrd_and_cmdline_reach_the_guest_through_both_protocols() {
    for (guest_name, protocol) in [("initrd", "PVH module list"), ("initrd64", "zero page")] {
        let initrd = TextFile::new(guest_name, "initrd contents\n");
        let Some((out, stdout, stderr)) = run_guest(
            guest_name,
            &[
                "--initrd",
                initrd.0.to_str().unwrap(),
                "--cmdline",
                "console=ttyS0 quiet",
            ],
        ) else {
            return;
        };
        assert_eq!(
            stdout, "initrd contents\nconsole=ttyS0 quiet\n",
            "{protocol}; stderr: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{protocol}; stderr: {stderr}");
    }
    // Without an initrd the PVH guest finds no module.
    let Some((_, stdout, _)) = run_guest("initrd", &["--cmdline", "x"]) else {
        return;
    };
    assert_eq!(stdout, "no initrd\nx\n");
}

#[test]
fn an_initrd_larger_than_guest_memory_is_refused_clearly() {
    let Some(kernel) = guest("initrd") else {
        return;
    };
    let big = TextFile::new("big-initrd", &"x".repeat(40 << 20));
    let out = launch(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        big.0.to_str().unwrap(),
        "--memory",
        "32Mi",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not fit in guest memory")
            && stderr.contains("give the VM more memory"),
        "{stderr}"
    );
}

#[test]
fn every_vcpu_writes_to_the_console() {
    for cpus in [1u32, 2, 4, 8] {
        let n = cpus.to_string();
        let Some((out, stdout, stderr)) = run_guest("smp", &["--cpus", &n, "--cmdline", &n]) else {
            return;
        };
        assert_eq!(out.status.code(), Some(0), "{cpus} vCPUs; stderr: {stderr}");
        let mut ids: Vec<u32> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("cpu ")?.strip_suffix(" up")?.parse().ok())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..cpus).collect::<Vec<_>>(), "{cpus} vCPUs: {stdout}");
        assert!(
            stdout.ends_with(&format!("all {cpus} cpus up\n")),
            "{stdout}"
        );
    }
}

/// Builds a machine for a test guest with 16 MiB, its console kept off stdout.
fn machine(kernel: std::path::PathBuf, cpus: u32, cmdline: &str, console_bytes: usize) -> Machine {
    let config = LauncherConfig {
        memory: "16Mi".into(),
        cpus,
        cmdline: cmdline.into(),
        ..LauncherConfig::new(kernel)
    }
    .validate()
    .expect("valid config");
    let console = ConsoleOptions {
        stdout: false,
        buffer_bytes: console_bytes,
    };
    Machine::build(&config, console).expect("machine builds")
}

#[test]
fn console_ring_buffer_holds_the_guest_output() {
    let Some(kernel) = guest("hello") else { return };
    let machine = machine(kernel, 1, "", 16);
    let console = machine.console();
    let exit = machine.run(&AtomicUsize::new(0), Duration::ZERO).unwrap();
    assert_eq!(exit, VmExit::PowerOff);
    // Only the last 16 bytes are kept.
    assert_eq!(console.snapshot(), b"dant test guest\n");
}

#[test]
fn a_stop_request_ends_a_spinning_guest() {
    let Some(kernel) = guest("smp") else { return };
    // Two vCPUs but a command line asking for three: the boot vCPU waits forever.
    let machine = machine(kernel, 2, "3", 4096);
    let stop = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            // This guest ignores the keyboard, so the grace period runs out.
            stop.store(1, std::sync::atomic::Ordering::Release);
        });
        let started = std::time::Instant::now();
        assert_eq!(
            machine.run(&stop, Duration::from_millis(500)).unwrap(),
            VmExit::Stopped
        );
        assert!(
            started.elapsed() >= Duration::from_millis(800),
            "stopped before the grace period ended"
        );
    });
}

#[test]
fn bad_config_and_missing_files_fail_with_a_clear_message() {
    let out = launch(&[
        "run",
        "--kernel",
        "/nonexistent/vmlinux",
        "--memory",
        "32Mi",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Cannot read the kernel /nonexistent/vmlinux"),
        "{stderr}"
    );

    let out = launch(&["run", "--kernel", "/k", "--cpus", "99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Config cpus: 99 is not allowed: use 1 to 64")
    );

    let out = launch(&["run", "--config-json", r#"{"kernel":"/k","memory":"lots"}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Config memory:"));

    let out = launch(&["run", "--frobnicate", "1"]);
    assert_eq!(out.status.code(), Some(2));

    // A file that is no kernel at all (found out once the VM is being built).
    if let Err(why) = testkit::kvm_usable() {
        testkit::skip(testkit::KVM, format!("{why}: no kernel format check"));
        return;
    }
    let junk = std::env::temp_dir().join(format!("verdant-junk-{}", std::process::id()));
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    let out = launch(&[
        "run",
        "--kernel",
        junk.to_str().unwrap(),
        "--memory",
        "32Mi",
    ]);
    let _ = std::fs::remove_file(&junk);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("neither an ELF vmlinux nor a bzImage"),
        "{stderr}"
    );
}
