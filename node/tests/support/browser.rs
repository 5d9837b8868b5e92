//! Where the real-browser tests' scripts and screenshots are, and the tools they need.

use std::path::{Path, PathBuf};

/// `node/tests/browser`: the playwright-core scripts and their `package.json`.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where screenshots go: `$CARGO_TARGET_TMPDIR/browser-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-artifacts")
}

/// Checks that the tools the test drives are there, or says how to get them.
pub fn check_tools() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: `apt-get install chromium` (scripts/test.sh does)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in node/tests/browser (scripts/test.sh does)"
    );
}
