//! The `scratchfs` binary: everything happens in [`scratchfs::cli`].

fn main() -> std::process::ExitCode {
    scratchfs::cli::main()
}
