//! Puts pixels on an X server's root window with core-protocol PutImage, the way any X client
//! draws, so that Xvnc sees them as ordinary damage.

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    ChangeWindowAttributesAux, ConnectionExt, CreateGCAux, ImageFormat, ImageOrder, Rectangle,
};
use x11rb::rust_connection::RustConnection;

use crate::canvas::Rect;

/// A connection that draws on the root window of a depth-24, 32-bits-a-pixel screen.
pub struct Display {
    conn: RustConnection,
    root: u32,
    gc: u32,
    little_endian: bool,
}

impl Display {
    /// Connects to `name` (e.g. ":20"), checks the screen takes x8r8g8b8 pixels as they are,
    /// and hides the pointer, which Xvnc would otherwise draw into the frames it sends.
    pub fn connect(name: &str) -> Result<Display, String> {
        let (conn, screen) =
            RustConnection::connect(Some(name)).map_err(|e| format!("X {name}: {e}"))?;
        let setup = conn.setup();
        let root = &setup.roots[screen];
        let format = setup.pixmap_formats.iter().find(|f| f.depth == 24);
        if root.root_depth != 24 || format.is_none_or(|f| f.bits_per_pixel != 32) {
            return Err(format!(
                "X {name}: the root window is depth {}, not 24 at 32 bits a pixel",
                root.root_depth
            ));
        }
        let visual = root
            .allowed_depths
            .iter()
            .flat_map(|d| &d.visuals)
            .find(|v| v.visual_id == root.root_visual);
        if visual
            .is_none_or(|v| (v.red_mask, v.green_mask, v.blue_mask) != (0xff0000, 0xff00, 0xff))
        {
            return Err(format!("X {name}: the root visual is not x8r8g8b8"));
        }
        let (root, little_endian) = (root.root, setup.image_byte_order == ImageOrder::LSB_FIRST);
        let gc = conn.generate_id().map_err(|e| e.to_string())?;
        conn.create_gc(gc, root, &CreateGCAux::new())
            .map_err(|e| e.to_string())?;
        let display = Display {
            conn,
            root,
            gc,
            little_endian,
        };
        display
            .hide_pointer()
            .map_err(|e| format!("X {name}: {e}"))?;
        display.sync()?;
        Ok(display)
    }

    /// Gives the root window a cursor whose mask is empty.
    fn hide_pointer(&self) -> Result<(), Box<dyn std::error::Error>> {
        let conn = &self.conn;
        let (pixmap, gc, cursor) = (
            conn.generate_id()?,
            conn.generate_id()?,
            conn.generate_id()?,
        );
        conn.create_pixmap(1, pixmap, self.root, 1, 1)?;
        conn.create_gc(gc, pixmap, &CreateGCAux::new().foreground(0))?;
        let whole = Rectangle {
            x: 0,
            y: 0,
            width: 1,
            height: 1,
        };
        conn.poly_fill_rectangle(pixmap, gc, &[whole])?;
        conn.create_cursor(cursor, pixmap, pixmap, 0, 0, 0, 0, 0, 0, 0, 0)?;
        conn.change_window_attributes(self.root, &ChangeWindowAttributesAux::new().cursor(cursor))?;
        conn.free_gc(gc)?;
        conn.free_pixmap(pixmap)?;
        Ok(())
    }

    /// Draws `rect` of `frame` (`width` pixels a row) at the same place on the root window,
    /// in strips that each fit one request, then waits until the server has drawn them.
    pub fn upload(&self, frame: &[u32], width: u32, rect: Rect) -> Result<(), String> {
        let (x, y, w, h) = rect;
        if w == 0 || h == 0 {
            return Ok(());
        }
        // PutImage's header is 24 bytes; a big request adds 4.
        let room = self.conn.maximum_request_bytes().saturating_sub(28);
        let rows_per_strip = (room / (w as usize * 4)).clamp(1, h as usize) as u32;
        let mut data = Vec::with_capacity((w * rows_per_strip * 4) as usize);
        for top in (y..y + h).step_by(rows_per_strip as usize) {
            let rows = rows_per_strip.min(y + h - top);
            data.clear();
            for row in top..top + rows {
                let start = (row * width + x) as usize;
                for &pixel in &frame[start..start + w as usize] {
                    data.extend_from_slice(&if self.little_endian {
                        pixel.to_le_bytes()
                    } else {
                        pixel.to_be_bytes()
                    });
                }
            }
            self.conn
                .put_image(
                    ImageFormat::Z_PIXMAP,
                    self.root,
                    self.gc,
                    w as u16,
                    rows as u16,
                    x as i16,
                    top as i16,
                    0,
                    24,
                    &data,
                )
                .map_err(|e| format!("PutImage: {e}"))?;
        }
        self.sync()
    }

    /// A round trip: when it returns, the server has processed every earlier request. Errors
    /// the server reported meanwhile are returned.
    fn sync(&self) -> Result<(), String> {
        self.conn
            .get_input_focus()
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| format!("X round trip: {e}"))?;
        while let Some(event) = self.conn.poll_for_event().map_err(|e| e.to_string())? {
            if let Event::Error(e) = event {
                return Err(format!("X error: {e:?}"));
            }
        }
        Ok(())
    }
}
