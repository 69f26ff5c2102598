//! The fallback demo desktop: one VM of the demo guest that verdant-dev runs itself, where no
//! node can run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use launcher::machine::ConsoleOptions;
use launcher::{LaunchOptions, Launcher};
use launcher_api::{LauncherConfig, VncConfig};
use rfb::auth::obfuscated_password_file;

use crate::state::State;

/// The demo desktop VM, run by this process: the demo guest behind VNC on 127.0.0.1:5900 (or a
/// free port when that is taken), with a random password in the state folder.
pub struct Demo {
    /// Where its VNC server listens.
    pub addr: SocketAddr,
    /// Set to 2 to stop it at once.
    pub stop: Arc<AtomicUsize>,
    /// The thread running it.
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the demo VM behind VNC, its password in the state folder.
pub fn start_demo(state: &State) -> Result<Demo, String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    let password: String = bytes.iter().map(|b| char::from(b'a' + b % 26)).collect();
    std::fs::write(state.demo_password_file(), format!("{password}\n"))
        .map_err(|e| e.to_string())?;
    std::fs::write(
        state.demo_passwd_file(),
        obfuscated_password_file(password.as_bytes()),
    )
    .map_err(|e| e.to_string())?;

    // The usual VNC port if it is free, else any.
    let usual = SocketAddr::from(([127, 0, 0, 1], 5900));
    let listen = match std::net::TcpListener::bind(usual) {
        Ok(_) => usual,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let config = LauncherConfig {
        vnc: Some(VncConfig {
            password_file: Some(state.demo_password_file()),
            ..VncConfig::new(listen.to_string())
        }),
        // Stopped with the environment, at once: the demo guest has nothing to save.
        shutdown_grace_seconds: 0,
        ..launcher::demo::demo_config()?
    };
    let vm = config.validate().map_err(|e| e.to_string())?;
    let options = LaunchOptions {
        console: ConsoleOptions {
            stdout: false,
            buffer_bytes: 64 << 10,
        },
        desktop_name: "verdant demo desktop".into(),
    };
    let demo = Launcher::start(&vm, options).map_err(|e| e.to_string())?;
    let addr = demo.vnc_addr().ok_or("the demo has no VNC server")?;
    let stop = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("demo-vm".into())
        .spawn(move || match demo.run(&flag) {
            Ok(exit) => eprintln!("demo desktop ended: {exit:?}"),
            Err(e) => eprintln!("demo desktop failed: {e}"),
        })
        .map_err(|e| e.to_string())?;
    Ok(Demo { addr, stop, thread })
}
