//! Headless Chromium for the tests that check what a browser makes of a
//! page evalctl writes (`report_browser`, the e2e report of real stacks).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs headless Chromium on a page with `args`; its stdout. Fails the
/// test when Chromium is missing, fails or takes over two minutes.
pub fn chromium(dir: &Path, page: &Path, args: &[String]) -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let profile = dir.join(format!("profile-{}", SEQ.fetch_add(1, Ordering::Relaxed)));
    let mut child = Command::new("chromium")
        // As root Chromium needs --no-sandbox; /dev/shm may be small in
        // containers; a profile of its own keeps parallel runs apart.
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
        .args(["--no-first-run", "--no-default-browser-check", "--force-color-profile=srgb"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): install the Debian package `chromium` (scripts/test.sh does)")
        });
    let start = Instant::now();
    while child.try_wait().expect("wait for chromium").is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium took over two minutes on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("chromium's output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "chromium failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    text
}
