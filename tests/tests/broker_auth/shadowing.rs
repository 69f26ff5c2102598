//! Case 10, shadowing, after the table: carol's keys go nowhere, and no clipboard reaches her.

use std::time::Duration;

use tests::wsrfb::RfbClient;
use tokio::io::DuplexStream;

use crate::cases::{Origin, Who};
use crate::report::Table;
use crate::world::World;

/// Carol watches alice's desktop with a view-only token while alice types and copies.
pub(crate) async fn shadowing(w: &World<'_>, t: &mut Table) {
    t.case = "10";
    let a = w.alices();
    let (token, carols) = w.grant(Who::Carol, "10").await;
    t.row(
        "carol POST token for <alice's>: viewOnly",
        true,
        &carols["viewOnly"],
    );
    let (got, carol_view) = w.open(Who::Carol, a, &token, Origin::Own, None).await;
    t.row("WS carol's view-only token", "101+RFB", got);
    let (token, _) = w.grant(Who::Alice, "10").await;
    let (got, alice_view) = w.open(Who::Alice, a, &token, Origin::Own, None).await;
    t.row("WS alice on her own desktop", "101+RFB", got);
    let (mut carol_view, mut alice_view) = (carol_view.unwrap(), alice_view.unwrap());
    // carol presses 'b' (0x326496 in key slot 0, had it landed); then alice presses 'a',
    // which lands in slot 0 at (108, 128) only if carol's key never reached the desktop.
    carol_view.key(u32::from(b'b')).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice_view.key(u32::from(b'a')).await.unwrap();
    let seen = watch(&mut alice_view, 108, 128, 0x1c_3854).await;
    t.row(
        "alice's 'a' is key #0 at (108,128): carol's 'b' dropped",
        "1c3854",
        seen,
    );
    let slot = format!("{:06x}", alice_view.pixel(128, 128));
    t.row("key slot #1 at (128,128): still the window", "f0f0f0", slot);
    let seen = watch(&mut carol_view, 108, 128, 0x1c_3854).await;
    t.row("carol's view shows alice's 'a'", "1c3854", seen);
    // alice copies on one viewer: her other viewer gets the text; carol, who watches with
    // the view-only password, never does (the launcher sends a watcher no clipboard).
    let (token, _) = w.grant(Who::Alice, "10").await;
    let (_, alice_second) = w.open(Who::Alice, a, &token, Origin::Own, None).await;
    let mut alice_second = alice_second.unwrap();
    alice_view
        .send_cut_text(b"alice's clipboard: the payroll password")
        .await
        .unwrap();
    let got = clipboard_in(&mut alice_second, Duration::from_secs(15)).await;
    t.row(
        "alice's second viewer gets her clipboard",
        "alice's clipboard: the payroll password",
        String::from_utf8_lossy(&got.unwrap_or_default()),
    );
    let got = clipboard_in(&mut carol_view, Duration::from_secs(3)).await;
    t.row(
        "carol's view-only viewer gets no clipboard",
        "none",
        got.map_or("none".into(), |t| String::from_utf8_lossy(&t).into_owned()),
    );
    drop((carol_view, alice_view, alice_second));
}

/// Reads updates until (x, y) is `colour` or 30 s pass; the pixel's last value.
async fn watch(viewer: &mut RfbClient<DuplexStream>, x: u16, y: u16, colour: u32) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (w, h) = (viewer.width, viewer.height);
    viewer.request(false, 0, 0, w, h).await.unwrap();
    while viewer.pixel(x, y) != colour {
        match tokio::time::timeout_at(deadline, viewer.read_update()).await {
            Ok(Ok(_)) => viewer.request(true, 0, 0, w, h).await.unwrap(),
            _ => break,
        }
    }
    format!("{:06x}", viewer.pixel(x, y))
}

/// The clipboard text the server sends `viewer` within `wait`, if any: it asks for a 1x1
/// update after each one, so the server keeps answering and the text comes out between them.
async fn clipboard_in(viewer: &mut RfbClient<DuplexStream>, wait: Duration) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + wait;
    viewer.cut_text = None;
    while viewer.cut_text.is_none() {
        viewer.request(false, 0, 0, 1, 1).await.ok()?;
        if !matches!(
            tokio::time::timeout_at(deadline, viewer.read_update()).await,
            Ok(Ok(_))
        ) {
            break;
        }
    }
    viewer.cut_text.take()
}
