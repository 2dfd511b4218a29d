//! `compare`'s statistics against SciPy's: McNemar's exact p-value is
//! SciPy's exact binomial test of the discordant pairs, the unpaired z-test
//! is the normal distribution's two-sided tail, and `erfc` is SciPy's.
//! SciPy is installed from PyPI into a venv cached under `target/`
//! (`tests/pyvenv`); a failed install fails the test.

use std::process::Command;

use evalctl::stats;

mod pyvenv;

const SCIPY: &str = "1.14.1";

/// What SciPy answers for each line of `input`, one number per line.
fn scipy(program: &str, input: &str) -> Vec<f64> {
    let python = pyvenv::python("stats-venv", "scipy", SCIPY, "stats_oracle");
    let out = Command::new(python).args(["-c", program, input]).output().expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse().expect("a number")).collect()
}

fn close(ours: f64, theirs: f64, rel: f64) -> bool {
    (ours - theirs).abs() <= rel * theirs.abs().max(1e-300) || (ours - theirs).abs() < 1e-15
}

#[test]
fn mcnemar_matches_scipys_exact_binomial_test() {
    let cases: Vec<(u64, u64)> =
        vec![(0, 0), (0, 1), (1, 9), (9, 1), (5, 5), (3, 12), (12, 2), (41, 64), (400, 600), (1000, 1100), (0, 30)];
    let input: String = cases.iter().map(|(b, c)| format!("{b} {c}\n")).collect();
    let program = "import sys\nfrom scipy.stats import binomtest\nfor l in sys.argv[1].split('\\n'):\n    if not l: continue\n    b, c = map(int, l.split())\n    print(1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue)\n";
    let theirs = scipy(program, &input);
    assert_eq!(theirs.len(), cases.len());
    for ((b, c), t) in cases.iter().zip(theirs) {
        let ours = stats::mcnemar_exact(*b, *c);
        assert!(close(ours, t, 1e-9), "b={b} c={c}: ours {ours}, SciPy {t}");
    }
}

#[test]
fn the_z_test_and_erfc_match_scipy() {
    let cases = [(0.70, 0.01, 0.75, 0.01), (0.5, 0.02, 0.49, 0.03), (0.9, 0.001, 0.8, 0.002), (0.3, 0.05, 0.3, 0.05)];
    let input: String = cases.iter().map(|(a, sa, b, sb)| format!("{a} {sa} {b} {sb}\n")).collect();
    let program = "import sys, math\nfrom scipy.stats import norm\nfor l in sys.argv[1].split('\\n'):\n    if not l: continue\n    a, sa, b, sb = map(float, l.split())\n    print(2 * norm.sf(abs(b - a) / math.hypot(sa, sb)))\n";
    for (c, t) in cases.iter().zip(scipy(program, &input)) {
        let ours = stats::unpaired(c.0, c.1, c.2, c.3).p_value;
        // The rational erfc is good to about 1.2e-7 relative.
        assert!(close(ours, t, 5e-7), "{c:?}: ours {ours}, SciPy {t}");
    }
    let xs = [0.0, 0.1, 0.5, 1.0, 1.5, 2.5, 4.0, -0.7];
    let input: String = xs.iter().map(|x| format!("{x}\n")).collect();
    let program = "import sys\nfrom scipy.special import erfc\nfor l in sys.argv[1].split('\\n'):\n    if l: print(repr(float(erfc(float(l)))))\n";
    for (x, t) in xs.iter().zip(scipy(program, &input)) {
        assert!(close(stats::erfc(*x), t, 5e-7), "erfc({x}): ours {}, SciPy {t}", stats::erfc(*x));
    }
}
