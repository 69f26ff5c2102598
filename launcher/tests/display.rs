//! The guest framebuffer through the real `/dev/kvm`: the demo guest finds it through the zero
//! page's `screen_info` and draws a desktop the VMM can read back.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::guest;
use launcher::machine::{ConsoleOptions, Machine, VmExit};
use launcher_api::{DisplayConfig, LauncherConfig};

#[test]
fn demo_guest_draws_the_desktop_where_screen_info_says() {
    let Some(kernel) = guest("demo") else { return };
    let config = LauncherConfig {
        memory: "64Mi".into(),
        display: Some(DisplayConfig {
            width: 640,
            height: 480,
        }),
        ..LauncherConfig::new(kernel)
    }
    .validate()
    .unwrap();
    let machine = Machine::build(
        &config,
        ConsoleOptions {
            stdout: false,
            buffer_bytes: 4096,
        },
    )
    .unwrap();
    let fb = machine.framebuffer().expect("a display was configured");
    assert_eq!((fb.width, fb.height), (640, 480));
    assert!(fb.is_blank(), "nothing drawn before the guest runs");
    let console = machine.console();
    let stop = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let running = s.spawn(|| machine.run(&stop, Duration::ZERO));
        testkit::eventually_blocking(
            "the demo to finish its first frame",
            Duration::from_secs(60),
            || {
                let console = console.snapshot();
                String::from_utf8_lossy(&console)
                    .contains("demo desktop drawn")
                    .then_some(())
            },
        );
        assert!(!fb.is_blank());
        // Known pixels of the demo's layout.
        assert_eq!(fb.pixel(10, 10), Some(0x20_2020), "top panel");
        assert_eq!(fb.pixel(320, 470), Some(0x30_3030), "task bar");
        assert_eq!(fb.pixel(600, 300), Some(0x30_6090), "background");
        assert_eq!(fb.pixel(100, 90), Some(0x40_60a0), "window title bar");
        assert_eq!(fb.pixel(100, 150), Some(0xf0_f0f0), "window body");
        // The clock ticks: its block changes colour.
        let first = fb.pixel(620, 10);
        testkit::eventually_blocking("the clock to tick", Duration::from_secs(30), || {
            (fb.pixel(620, 10) != first).then_some(())
        });
        stop.store(2, Ordering::Release);
        assert_eq!(running.join().unwrap().unwrap(), VmExit::Stopped);
    });
}
