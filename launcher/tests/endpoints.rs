//! The launcher's HTTP endpoints and SIGTERM, against a running guest on the real `/dev/kvm`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{guest, wait_for_line};

fn get(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn endpoints_serve_a_running_vm_and_sigterm_stops_it() {
    let Some(kernel) = guest("smp") else { return };
    // Two vCPUs but a command line asking for three: the guest prints, then waits forever.
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdant-launcher"))
        .args([
            "run",
            "--kernel",
            kernel.to_str().unwrap(),
            "--memory",
            "32Mi",
        ])
        .args([
            "--cpus",
            "2",
            "--cmdline",
            "3",
            "--http",
            "127.0.0.1:0",
            "--shutdown-grace",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launcher starts");
    let line = wait_for_line(&mut child, "http://", Duration::from_secs(30));
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();

    assert_eq!(get(&addr, b"BREW /coffee HTCPCP/1.0\r\n\r\n").0, 505);
    assert_eq!(get(&addr, b"\x00\x01\x02\r\n\r\n").0, 400);
    assert_eq!(get(&addr, &[b'A'; 20_000]).0, 431);
    assert_eq!(get(&addr, b"GET /healthz HTTP/1.1\r\n\r\n").0, 200);

    // SIGTERM asks the guest to shut down; this one ignores the keyboard, so after the
    // one-second grace period the launcher stops it hard and says so with its own status.
    // SAFETY: kill() on our own child's pid with a valid signal.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = testkit::eventually_blocking(
        "the launcher to exit after SIGTERM",
        Duration::from_secs(20),
        || child.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(5));
}
