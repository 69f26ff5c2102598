//! Loopback addresses for the servers tests start: free a moment ago, which is all anyone can
//! say; another process may still take one before the server binds it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let [port] = free_ports().expect("a free port on 127.0.0.1");
    port
}

/// `N` distinct TCP ports on 127.0.0.1 that were free a moment ago: all the listeners are held
/// until all are chosen, so no two of one call are the same.
pub fn free_ports<const N: usize>() -> io::Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    for _ in 0..N {
        listeners.push(TcpListener::bind("127.0.0.1:0")?);
    }
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// A random loopback address (in 127.100.0.0 to 127.199.255.255) on which each of `ports` was
/// free a moment ago: for several servers that each listen on the same fixed ports.
pub fn free_loopback_ip(ports: &[u16]) -> Ipv4Addr {
    loop {
        let mut b = [0u8; 3];
        getrandom::fill(&mut b).expect("randomness");
        let ip = Ipv4Addr::new(127, 100 + b[0] % 100, b[1].max(1), b[2].clamp(2, 254));
        let free = |port: &u16| TcpListener::bind(SocketAddr::from((ip, *port))).is_ok();
        if ports.iter().all(free) {
            return ip;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports: [u16; 3] = free_ports().unwrap();
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        TcpListener::bind(("127.0.0.1", free_port())).unwrap();
        let ip = free_loopback_ip(&[ports[0]]);
        assert!(ip.is_loopback() && ip != Ipv4Addr::LOCALHOST);
        TcpListener::bind((ip, ports[0])).unwrap();
    }
}
