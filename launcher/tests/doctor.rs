//! `verdant-launcher doctor` on this machine: human and JSON output agree with what KVM says.

use std::process::Command;

#[test]
fn doctor_reports_kvm_cpu_and_speed() {
    let out = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"))
        .args(["doctor", "--json"])
        .output()
        .expect("doctor runs");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON");
    let can_run = report["can_run"].as_bool().expect("can_run");
    let usable = testkit::kvm_usable();
    assert_eq!(
        can_run,
        usable.is_ok(),
        "doctor disagrees with /dev/kvm ({usable:?}): {report:#}"
    );
    assert_eq!(out.status.code(), Some(if can_run { 0 } else { 1 }));
    if let Err(why) = usable {
        testkit::skip(testkit::KVM, format!("{why}: no speed and CPUID checks"));
        return;
    }
    let ips = report["speed"]["instructions_per_second"]
        .as_f64()
        .expect("speed measured");
    assert!(ips > 0.0);
    let vendor = report["cpu"]["vendor"].as_str().unwrap_or_default();
    assert!(!vendor.is_empty(), "CPUID leaf 0 gives a vendor string");
    let checks = report["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "capability Irqchip" && c["ok"] == true)
    );

    let human = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"))
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("Guest speed:") && text.contains("Verdant can run here"),
        "{text}"
    );
    // One screen.
    assert!(text.lines().count() <= 40, "{text}");
}
