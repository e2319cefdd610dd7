//! `ironsight-bench`: see the library for the layout.

fn main() -> std::process::ExitCode {
    ironsight_bench::main()
}
