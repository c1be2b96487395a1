//! Links noop-bot's start-up code together when `BOT_SYMBOL_ORDERING_FILE` names a
//! symbol-ordering file (written by `botload startup-order` from this same build): an idle
//! process then keeps a few windows of its binary's code resident instead of some hundred
//! (BENCHMARKS.md, "Idle RSS: start-up code linked together"). Without the variable the build
//! is the default one. The option is lld's (Rust's default linker on x86_64 Linux; `-C
//! link-arg=-fuse-ld=lld` elsewhere); a symbol the binary lacks is skipped, so a stale file costs
//! memory, never correctness.

fn main() {
    println!("cargo:rerun-if-env-changed=BOT_SYMBOL_ORDERING_FILE");
    if let Some(file) = std::env::var_os("BOT_SYMBOL_ORDERING_FILE").filter(|f| !f.is_empty()) {
        let file = std::path::PathBuf::from(file);
        println!("cargo:rerun-if-changed={}", file.display());
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            file.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
