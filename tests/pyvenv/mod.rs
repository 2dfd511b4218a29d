//! Pinned Python packages from PyPI for the tests that use another tool as
//! their oracle (`harness_models`: nemo-evaluator's models,
//! `launcher_parity`: the launcher's dry run): one virtual environment per
//! package and version under `target/`, made once.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The checkout.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The build's `target/` directory (honours `CARGO_TARGET_DIR`): a test
/// binary is `target/<profile>/deps/<name>-*`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| root().join("target"))
}

/// Runs `cmd`; a failure fails the test with its output.
pub fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Python of a virtual environment holding `package==version`, made
/// once under `target/<dir>/<package>-<version>`: built beside its place
/// and renamed into it, so an interrupted or concurrent install is never
/// taken for a finished one. A failed install fails the test; `test` names
/// it in the message.
pub fn python(dir: &str, package: &str, version: &str, test: &str) -> PathBuf {
    // One install at a time in this process (two tests of one binary may
    // ask at once); other processes are handled by the rename below.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let base = target_dir().join(dir);
    let venv = base.join(format!("{package}-{version}"));
    let python = venv.join("bin/python");
    if python.exists() {
        return python;
    }
    std::fs::create_dir_all(&base).unwrap();
    let tmp = base.join(format!(".building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let help = format!(
        "the {test} test needs python3 with venv (Debian: apt-get install python3-venv) and network access to PyPI"
    );
    run(Command::new("python3").args(["-m", "venv"]).arg(&tmp), &format!("creating a virtual environment ({help})"));
    run(
        Command::new(tmp.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("{package}=={version}"),
        ]),
        &format!("installing {package} {version} from PyPI ({help})"),
    );
    // Another process may have finished first: its copy is as good.
    if std::fs::rename(&tmp, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(python.exists(), "no {} after installing", python.display());
    python
}
