//! A real headless Chromium (Debian's `chromium`, or `CHROMIUM_BIN`) driven
//! over the DevTools protocol, for the dashboard tests: open pages, read the
//! DOM, run the page's own controls, save screenshots under target/.

use std::path::PathBuf;
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::wait_for;

/// A running browser; closed when dropped.
pub struct Chrome {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// Starts headless Chromium with a laptop-sized viewport.
    pub async fn launch() -> Chrome {
        let exe = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = tempfile::tempdir().expect("profile dir");
        let config = BrowserConfig::builder()
            .chrome_executable(exe)
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(1360, 900)
            .viewport(Viewport {
                width: 1360,
                height: 900,
                device_scale_factor: Some(1.0),
                emulating_mobile: false,
                is_landscape: true,
                has_touch: false,
            })
            .arg("--disable-dev-shm-usage")
            .arg("--disable-gpu")
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(30))
            .build()
            .expect("browser config");
        let (browser, mut handler) = Browser::launch(config)
            .await
            .expect("chromium starts (apt-get install chromium, or set CHROMIUM_BIN)");
        // Drive the protocol; events of a newer Chromium it cannot decode are skipped.
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Chrome {
            browser,
            handler,
            _profile: profile,
        }
    }

    /// Opens `url` in a new tab, once loaded, recording every
    /// Content-Security-Policy violation from the first script on in
    /// `window.__csp` (read it with [`csp_violations`]).
    pub async fn open_watching_csp(&self, url: &str) -> Page {
        let page = self
            .browser
            .new_page("about:blank")
            .await
            .expect("a tab opens");
        page.evaluate_on_new_document(
            "window.__csp = []; document.addEventListener('securitypolicyviolation', \
             (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber));",
        )
        .await
        .expect("the watcher is installed");
        page.goto(url).await.expect("the page opens");
        let _ = page.wait_for_navigation().await;
        page
    }

    /// Opens `url` in a new tab, once loaded.
    pub async fn open(&self, url: &str) -> Page {
        let page = self.browser.new_page(url).await.expect("the page opens");
        let _ = page.wait_for_navigation().await;
        page
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        self.handler.abort();
    }
}

/// The Content-Security-Policy violations seen by a page opened with
/// [`Chrome::open_watching_csp`].
pub async fn csp_violations(page: &Page) -> Vec<String> {
    eval(page, "window.__csp").await.expect("window.__csp")
}

/// Evaluates a JavaScript expression in the page.
pub async fn eval<T: DeserializeOwned>(page: &Page, js: &str) -> Result<T, String> {
    page.evaluate(js)
        .await
        .map_err(|e| format!("{js}: {e}"))?
        .into_value()
        .map_err(|e| format!("{js}: {e}"))
}

/// The text of the first element matching `selector`, if any.
pub async fn text(page: &Page, selector: &str) -> Option<String> {
    let sel = serde_json::to_string(selector).expect("a JSON string");
    eval::<Option<String>>(
        page,
        &format!("(() => {{ const e = document.querySelector({sel}); return e ? e.textContent : null; }})()"),
    )
    .await
    .ok()
    .flatten()
}

/// Waits until the text of `selector` satisfies `ok`; returns it.
pub async fn wait_text(
    page: &Page,
    selector: &str,
    what: &str,
    limit: Duration,
    ok: impl Fn(&str) -> bool,
) -> String {
    wait_for(what, limit, || async {
        match text(page, selector).await {
            Some(t) if ok(&t) => Ok(t),
            other => Err(format!("{selector}: {other:?}")),
        }
    })
    .await
}

/// Clicks the first element matching `selector` (the page's own handler runs).
pub async fn click(page: &Page, selector: &str) {
    let sel = serde_json::to_string(selector).expect("a JSON string");
    let clicked: bool = eval(
        page,
        &format!("(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.click(); return true; }})()"),
    )
    .await
    .expect("click");
    assert!(clicked, "nothing to click at {selector}");
}

/// Saves a full-page screenshot as `target/dashboard/<name>.png`.
pub async fn screenshot(page: &Page, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(format!("{name}.png"));
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
        .await
        .expect("screenshot");
    path
}
