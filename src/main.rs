//! The `evalctl` binary: parse arguments, run, exit with the command's code.

fn main() {
    std::process::exit(evalctl::cli::main());
}
