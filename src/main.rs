//! The `evalctl` binary: parse arguments, run, exit with the command's status.

fn main() -> std::process::ExitCode {
    evalctl::run_cli().into()
}
