//! Builds the tiny test guests in `guests/` (GNU assembler + ld, from the host's gcc toolchain)
//! into `$OUT_DIR/guests/<name>.elf` (and `bzhello.bin`, a flat bzImage), and tells the crate where they are through
//! `VERDANT_TEST_GUESTS`. Without a toolchain the variable is empty and the KVM tests skip,
//! saying why. The demo desktop guest is also embedded in the launcher (`run --demo`).

use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[&str] = &[
    "hello",
    "poweroff",
    "reset",
    "progress",
    "crash",
    "badmmio",
    "hello64",
    "smp",
    "idle",
    "ctrlaltdel",
    "initrd",
    "initrd64",
    "demo",
];

fn main() {
    let src =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("guests");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("guests");
    println!("cargo:rerun-if-changed=guests");
    let built = std::fs::create_dir_all(&out).is_ok()
        && GUESTS.iter().all(|g| build(&src, &out, g))
        && build_bzimage(&src, &out);
    let dir = if built {
        out.display().to_string()
    } else {
        String::new()
    };
    println!("cargo:rustc-env=VERDANT_TEST_GUESTS={dir}");

    // The demo desktop guest ships inside the binary (`verdant-launcher run --demo`); without a
    // toolchain it is empty, and `--demo` says so.
    let demo = out.join("demo.elf");
    let embedded = out.join("demo-embedded.elf");
    let bytes = if built {
        std::fs::read(&demo).unwrap_or_default()
    } else {
        Vec::new()
    };
    if std::fs::write(&embedded, bytes).is_err() {
        println!("cargo:warning=cannot write {}", embedded.display());
    }
    println!("cargo:rustc-env=VERDANT_DEMO_GUEST={}", embedded.display());
}

fn build(src: &Path, out: &Path, name: &str) -> bool {
    let object = out.join(format!("{name}.o"));
    let elf = out.join(format!("{name}.elf"));
    let assembled = run(Command::new("gcc")
        .arg("-c")
        .arg("-I")
        .arg(src)
        .arg("-o")
        .arg(&object)
        .arg(src.join(format!("{name}.S"))));
    assembled
        && run(Command::new("ld")
            .args(["-m", "elf_x86_64", "-T"])
            .arg(src.join("guest.ld"))
            .arg("-o")
            .arg(&elf)
            .arg(&object))
}

/// The bzImage guest: no ELF, a flat image whose offsets are the boot protocol's.
fn build_bzimage(src: &Path, out: &Path) -> bool {
    let object = out.join("bzhello.o");
    run(Command::new("gcc")
        .arg("-c")
        .arg("-I")
        .arg(src)
        .arg("-o")
        .arg(&object)
        .arg(src.join("bzhello.S")))
        && run(Command::new("ld")
            .args([
                "-m",
                "elf_x86_64",
                "-Ttext=0",
                "--oformat",
                "binary",
                "-e",
                "0",
                "-o",
            ])
            .arg(out.join("bzhello.bin"))
            .arg(&object))
}

fn run(cmd: &mut Command) -> bool {
    match cmd.output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            println!(
                "cargo:warning=test guest build failed: {:?}: {}",
                cmd,
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
        Err(e) => {
            println!(
                "cargo:warning=test guests not built ({:?}: {e}); KVM tests will skip",
                cmd.get_program()
            );
            false
        }
    }
}
