//! X keysyms to PS/2 scancodes, in set 1 (what the i8042 sends when it translates, and what
//! QEMU's extended key events carry) and set 2 (what the keyboard itself speaks).

/// One key: its scancode in set 1 and in set 2; `extended` keys are sent after an 0xE0 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Set 1 make code.
    pub set1: u8,
    /// Set 2 make code.
    pub set2: u8,
    /// Sent after an 0xE0 prefix.
    pub extended: bool,
}

const fn k(set1: u8, set2: u8) -> Key {
    Key {
        set1,
        set2,
        extended: false,
    }
}

const fn e(set1: u8, set2: u8) -> Key {
    Key {
        set1,
        set2,
        extended: true,
    }
}

/// Letters a-z.
const LETTERS: [Key; 26] = [
    k(0x1e, 0x1c),
    k(0x30, 0x32),
    k(0x2e, 0x21),
    k(0x20, 0x23),
    k(0x12, 0x24),
    k(0x21, 0x2b),
    k(0x22, 0x34),
    k(0x23, 0x33),
    k(0x17, 0x43),
    k(0x24, 0x3b),
    k(0x25, 0x42),
    k(0x26, 0x4b),
    k(0x32, 0x3a),
    k(0x31, 0x31),
    k(0x18, 0x44),
    k(0x19, 0x4d),
    k(0x10, 0x15),
    k(0x13, 0x2d),
    k(0x1f, 0x1b),
    k(0x14, 0x2c),
    k(0x16, 0x3c),
    k(0x2f, 0x2a),
    k(0x11, 0x1d),
    k(0x2d, 0x22),
    k(0x15, 0x35),
    k(0x2c, 0x1a),
];

/// Digits 1-9 then 0, the top row.
const DIGITS: [Key; 10] = [
    k(0x02, 0x16),
    k(0x03, 0x1e),
    k(0x04, 0x26),
    k(0x05, 0x25),
    k(0x06, 0x2e),
    k(0x07, 0x36),
    k(0x08, 0x3d),
    k(0x09, 0x3e),
    k(0x0a, 0x46),
    k(0x0b, 0x45),
];

/// Function keys F1-F12.
const FUNCTION: [Key; 12] = [
    k(0x3b, 0x05),
    k(0x3c, 0x06),
    k(0x3d, 0x04),
    k(0x3e, 0x0c),
    k(0x3f, 0x03),
    k(0x40, 0x0b),
    k(0x41, 0x83),
    k(0x42, 0x0a),
    k(0x43, 0x01),
    k(0x44, 0x09),
    k(0x57, 0x78),
    k(0x58, 0x07),
];

/// The key that produces `keysym` (shifted symbols map to their unshifted key: the client sends
/// Shift itself).
pub fn key_for_keysym(keysym: u32) -> Option<Key> {
    let ch = |c: char| keysym == c as u32;
    Some(match keysym {
        0x61..=0x7a => LETTERS[(keysym - 0x61) as usize],
        0x41..=0x5a => LETTERS[(keysym - 0x41) as usize],
        0x31..=0x39 => DIGITS[(keysym - 0x31) as usize],
        0x30 => DIGITS[9],
        0xffbe..=0xffc9 => FUNCTION[(keysym - 0xffbe) as usize],
        _ if ch('!') => DIGITS[0],
        _ if ch('@') => DIGITS[1],
        _ if ch('#') => DIGITS[2],
        _ if ch('$') => DIGITS[3],
        _ if ch('%') => DIGITS[4],
        _ if ch('^') => DIGITS[5],
        _ if ch('&') => DIGITS[6],
        _ if ch('*') => DIGITS[7],
        _ if ch('(') => DIGITS[8],
        _ if ch(')') => DIGITS[9],
        _ if ch(' ') => k(0x39, 0x29),
        _ if ch('-') || ch('_') => k(0x0c, 0x4e),
        _ if ch('=') || ch('+') => k(0x0d, 0x55),
        _ if ch('[') || ch('{') => k(0x1a, 0x54),
        _ if ch(']') || ch('}') => k(0x1b, 0x5b),
        _ if ch(';') || ch(':') => k(0x27, 0x4c),
        _ if ch('\'') || ch('"') => k(0x28, 0x52),
        _ if ch('`') || ch('~') => k(0x29, 0x0e),
        _ if ch('\\') || ch('|') => k(0x2b, 0x5d),
        _ if ch(',') || ch('<') => k(0x33, 0x41),
        _ if ch('.') || ch('>') => k(0x34, 0x49),
        _ if ch('/') || ch('?') => k(0x35, 0x4a),
        0xff0d => k(0x1c, 0x5a),          // Return
        0xff08 => k(0x0e, 0x66),          // BackSpace
        0xff09 => k(0x0f, 0x0d),          // Tab
        0xff1b => k(0x01, 0x76),          // Escape
        0xffe1 => k(0x2a, 0x12),          // Shift_L
        0xffe2 => k(0x36, 0x59),          // Shift_R
        0xffe3 => k(0x1d, 0x14),          // Control_L
        0xffe4 => e(0x1d, 0x14),          // Control_R
        0xffe9 => k(0x38, 0x11),          // Alt_L
        0xffea | 0xfe03 => e(0x38, 0x11), // Alt_R, ISO_Level3_Shift
        0xffeb => e(0x5b, 0x1f),          // Super_L
        0xffec => e(0x5c, 0x27),          // Super_R
        0xffe5 => k(0x3a, 0x58),          // Caps_Lock
        0xff51 => e(0x4b, 0x6b),          // Left
        0xff52 => e(0x48, 0x75),          // Up
        0xff53 => e(0x4d, 0x74),          // Right
        0xff54 => e(0x50, 0x72),          // Down
        0xff50 => e(0x47, 0x6c),          // Home
        0xff57 => e(0x4f, 0x69),          // End
        0xff55 => e(0x49, 0x7d),          // Page_Up
        0xff56 => e(0x51, 0x7a),          // Page_Down
        0xff63 => e(0x52, 0x70),          // Insert
        0xffff => e(0x53, 0x71),          // Delete
        _ => return None,
    })
}

/// The key a QEMU extended key event's XT keycode names (extended keys carry 0x80 or 0xE000).
pub fn key_for_xt(keycode: u32) -> Option<Key> {
    let (extended, code) = match keycode {
        0xe000..=0xe0ff => (true, (keycode & 0xff) as u8),
        0x80..=0xff => (true, (keycode & 0x7f) as u8),
        0..=0x7f => (false, keycode as u8),
        _ => return None,
    };
    // Every key we know, searched by its set-1 code.
    let all = LETTERS
        .iter()
        .chain(&DIGITS)
        .chain(&FUNCTION)
        .copied()
        .chain(
            [
                0x20u32, 0x2d, 0x3d, 0x5b, 0x5d, 0x3b, 0x27, 0x60, 0x5c, 0x2c, 0x2e, 0x2f, 0xff0d,
                0xff08, 0xff09, 0xff1b, 0xffe1, 0xffe2, 0xffe3, 0xffe4, 0xffe9, 0xffea, 0xffeb,
                0xffec, 0xffe5, 0xff51, 0xff52, 0xff53, 0xff54, 0xff50, 0xff57, 0xff55, 0xff56,
                0xff63, 0xffff,
            ]
            .into_iter()
            .filter_map(key_for_keysym),
        );
    all.into_iter()
        .find(|k| k.set1 == code && k.extended == extended)
}

/// The bytes a key press or release sends, in set 1 (`translated`) or set 2.
pub fn scancode_bytes(key: Key, down: bool, translated: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(3);
    if key.extended {
        out.push(0xe0);
    }
    if translated {
        out.push(if down { key.set1 } else { key.set1 | 0x80 });
    } else {
        if !down {
            out.push(0xf0);
        }
        out.push(key.set2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_shifted_symbols() {
        assert_eq!(key_for_keysym('a' as u32), Some(k(0x1e, 0x1c)));
        assert_eq!(key_for_keysym('A' as u32), key_for_keysym('a' as u32));
        assert_eq!(key_for_keysym('1' as u32), Some(k(0x02, 0x16)));
        assert_eq!(key_for_keysym('!' as u32), key_for_keysym('1' as u32));
        assert_eq!(key_for_keysym('0' as u32), Some(k(0x0b, 0x45)));
        assert_eq!(key_for_keysym(0xffbe), Some(k(0x3b, 0x05)), "F1");
        assert_eq!(key_for_keysym(0x1234_5678), None);
    }

    #[test]
    fn bytes_in_both_sets() {
        let a = key_for_keysym('a' as u32).unwrap();
        assert_eq!(scancode_bytes(a, true, false), [0x1c]);
        assert_eq!(scancode_bytes(a, false, false), [0xf0, 0x1c]);
        assert_eq!(scancode_bytes(a, true, true), [0x1e]);
        assert_eq!(scancode_bytes(a, false, true), [0x9e]);
        let del = key_for_keysym(0xffff).unwrap();
        assert_eq!(scancode_bytes(del, true, false), [0xe0, 0x71]);
        assert_eq!(scancode_bytes(del, false, false), [0xe0, 0xf0, 0x71]);
        assert_eq!(scancode_bytes(del, false, true), [0xe0, 0xd3]);
    }

    #[test]
    fn qemu_keycodes_map_back() {
        assert_eq!(key_for_xt(0x1e), key_for_keysym('a' as u32));
        assert_eq!(key_for_xt(0xe053), key_for_keysym(0xffff));
        assert_eq!(key_for_xt(0xd3), key_for_keysym(0xffff));
        assert_eq!(key_for_xt(0x7f), None);
        assert_eq!(key_for_xt(0x1_0000), None);
    }
}
