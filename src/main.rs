//! The `fulcrum` binary: parses the command line and hands over to [`fulcrum::cli`].

use clap::Parser;

/// mimalloc: per-thread free lists and cheap aligned allocations. A new connection costs
/// a few allocations (its task, tokio's cache-aligned I/O registration) that glibc's
/// allocator serves slowly (about 2,400 of the 26,000 instructions of a request on a new
/// connection, measured with bench/instructions).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `arena_eager_commit` (its option 4): off, so that the memory it reserves is
/// committed as it is used (with it on, the process starts 14 MB larger).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Sets mimalloc's options before anything allocates (a constructor, run before the
/// standard library's own start-up allocates).
extern "C" fn configure_allocator() {
    // SAFETY: an option setter with no other effect.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = configure_allocator;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = fulcrum::cli::Cli::parse();
    std::process::exit(fulcrum::cli::main(cli));
}
