//! The portal: server-rendered pages and the static files beside them (noVNC's own files are
//! served from the npm package's folder).

pub mod pages;

/// The portal's stylesheet.
pub const PORTAL_CSS: &str = include_str!("../../web/portal.css");
/// The desktop page's script (noVNC, toolbar, clipboard, reconnect).
pub const DESKTOP_JS: &str = include_str!("../../web/desktop.js");
/// The starting page's script (follows the desktop's phase until Ready).
pub const STARTING_JS: &str = include_str!("../../web/starting.js");
