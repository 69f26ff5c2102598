//! Our encoder timed in process, on this thread alone: no socket, no viewer, no frame-rate cap;
//! the time the "full frame <= 10 ms on one core" target is about. Every update is also
//! decoded by the client's decoder and checked against the desktop.

use std::time::{Duration, Instant};

use rfb::client::decode::Decoder;
use rfb::encoding::Encoder;
use rfb::protocol::PixelFormat;
use rfb::tiles::changed_rects;

use crate::desktop::{Desktop, HEIGHT, Scenario, WIDTH};
use crate::{ENCODINGS, median};

/// The median time to encode each scenario's update, for each encoding in [`ENCODINGS`]
/// (scenarios in [`Scenario::ALL`] order within each): the whole frame for a full update,
/// else the rectangles our server would send for the step's change. One encoder per encoding,
/// as for one viewer: its zlib streams carry on from update to update.
pub fn in_process(runs: usize) -> Result<Vec<Duration>, String> {
    let whole = (0, 0, WIDTH, HEIGHT);
    let mut medians = Vec::new();
    for (encoding, name) in ENCODINGS {
        let mut desktop = Desktop::new();
        let mut encoder = Encoder::new(encoding, 2);
        let mut decoder = Decoder::new(encoding);
        let mut viewer = vec![0; (WIDTH * HEIGHT) as usize];
        let mut out = Vec::with_capacity((WIDTH * HEIGHT * 4) as usize);
        // The viewer's first frame, as over the network.
        let count = encoder
            .encode(&desktop.pixels, WIDTH, whole, PixelFormat::NATIVE, &mut out)
            .map_err(|e| format!("{name}: encode the first frame: {e}"))?;
        let what = format!("in process, {name}, first frame");
        check(
            &mut decoder,
            &mut viewer,
            &out,
            count,
            &desktop.pixels,
            &what,
        )?;
        for scenario in Scenario::ALL {
            let mut seconds = Vec::with_capacity(runs);
            for i in 0..runs {
                let before = desktop.pixels.clone();
                desktop.step(scenario, i);
                let rects = if scenario.incremental() {
                    changed_rects(&before, &desktop.pixels, WIDTH, HEIGHT)
                } else {
                    vec![whole]
                };
                out.clear();
                let mut count = 0;
                let start = Instant::now();
                for &rect in &rects {
                    count += encoder
                        .encode(&desktop.pixels, WIDTH, rect, PixelFormat::NATIVE, &mut out)
                        .map_err(|e| format!("{name}, {}: {e}", scenario.name()))?;
                }
                seconds.push(start.elapsed().as_secs_f64());
                let what = format!("in process, {name}, {}, run {i}", scenario.name());
                check(
                    &mut decoder,
                    &mut viewer,
                    &out,
                    count,
                    &desktop.pixels,
                    &what,
                )?;
            }
            let middle = median(seconds).unwrap_or_default();
            medians.push(Duration::from_secs_f64(middle));
        }
    }
    Ok(medians)
}

/// Decodes `count` rectangles in `out` onto `viewer` and compares it with `expected`.
fn check(
    decoder: &mut Decoder,
    viewer: &mut [u32],
    out: &[u8],
    count: u16,
    expected: &[u32],
    what: &str,
) -> Result<(), String> {
    let mut message = vec![0, 0];
    message.extend_from_slice(&count.to_be_bytes());
    message.extend_from_slice(out);
    decoder
        .update(&message, viewer, WIDTH, HEIGHT)
        .map_err(|e| format!("{what}: {e}"))?;
    match viewer.iter().zip(expected).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: the encoder's output does not decode to the frame it was given: first \
             difference at ({}, {}): 0x{:06x}, expected 0x{:06x}",
            i as u32 % WIDTH,
            i as u32 / WIDTH,
            viewer[i],
            expected[i]
        )),
    }
}
