//! Links noop-bot's start-up code together when `BOT_SYMBOL_ORDERING_FILE` names a
//! symbol-ordering file (written by `botload startup-order` from this same build): an idle
//! process then keeps a few windows of its binary's code resident instead of some hundred
//! (BENCHMARKS.md, "Idle RSS: start-up code linked together"). Without the variable the build
//! is the default one.
//!
//! The option is lld's: Rust's default linker on x86_64-unknown-linux-gnu since Rust 1.90 (with
//! an older Rust, add `-C link-arg=-fuse-ld=lld`). A symbol the binary lacks is skipped, so a
//! stale file costs memory, never correctness.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=BOT_SYMBOL_ORDERING_FILE");
    let Some(file) = std::env::var_os("BOT_SYMBOL_ORDERING_FILE").filter(|f| !f.is_empty()) else {
        return;
    };
    let file = Path::new(&file);
    // Cargo reads `rerun-if-changed` from the package's directory and the linker from the
    // workspace's: only an absolute path means the same file to both.
    assert!(
        file.is_absolute(),
        "BOT_SYMBOL_ORDERING_FILE must be an absolute path, not {}",
        file.display()
    );
    assert!(
        file.is_file(),
        "BOT_SYMBOL_ORDERING_FILE names no file: {}",
        file.display()
    );
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        println!(
            "cargo:warning=BOT_SYMBOL_ORDERING_FILE ignored: the symbol-ordering option is lld's on Linux"
        );
        return;
    }
    println!("cargo:rerun-if-changed={}", file.display());
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        file.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
