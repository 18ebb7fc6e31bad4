"""Layer 4 (the real frontend): the ComfyUI page in headless Chromium through Playwright's sync API.

Uses Debian's /usr/bin/chromium (apt-get install chromium); Playwright never downloads a browser. Shares the
session's ComfyUI server with tests/integration. Skipped without COMFY_DIR, playwright or Chromium."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = Path(os.environ.get("ARTIFACTS_DIR") or REPO / "artifacts" / "ui")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# no GPU, no sandbox (root in a container), and no traffic beyond 127.0.0.1
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
APP_READY = "() => window.app && window.app.graph && window.LiteGraph"


cs = sys.modules["scalewise_ci_comfy_server"]  # loaded by tests/conftest.py, which also holds the `comfy` fixture


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class UiPage:
    """A loaded ComfyUI page: .page (playwright Page), .console_errors, .page_errors, .screenshot(name)."""

    def __init__(self, page, comfy):
        self.page, self.comfy = page, comfy
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def open(self, timeout_ms: int = 60000):
        self.page.goto(self.comfy.base + "/", wait_until="domcontentloaded")
        self.page.wait_for_function(APP_READY, timeout=timeout_ms)     # ~6 s after goto on 2 cores
        return self

    def evaluate(self, js: str, arg=None):
        return self.page.evaluate(js, arg)

    def screenshot(self, name: str, **kw) -> Path:
        return screenshot(self.page, name, **kw)

    def errors_mentioning(self, *words: str, since: tuple[int, int] = (0, 0)) -> list[str]:
        """Console/page errors naming one of words: the frontend always logs a few harmless 404s and
        ERR_NAME_NOT_RESOLVED (it tries to reach the internet), so filter by the pack's own names.
        `since`: a mark() taken earlier, to see only the errors logged after it."""
        words = [w.lower() for w in words]
        errors = self.console_errors[since[0]:] + self.page_errors[since[1]:]
        return [e for e in errors if any(w in e.lower() for w in words)]

    def mark(self) -> tuple[int, int]:
        """Position in the error logs, for errors_mentioning(since=...) and page_errors_since()."""
        return len(self.console_errors), len(self.page_errors)

    def page_errors_since(self, mark: tuple[int, int]) -> list[str]:
        return self.page_errors[mark[1]:]


def screenshot(page, name: str, **kw) -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / (name if Path(name).suffix else name + ".png")
    page.screenshot(path=str(path), **kw)
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)     # lets ui_page take a screenshot of failed tests
    return rep


@pytest.fixture
def ui_page(request, browser, comfy):
    """A fresh browser context with the ComfyUI app loaded and ready."""
    # The server's user dir is seeded with Comfy.TutorialCompleted (comfy_server.py); without it the
    # Templates dialog covers the canvas on first load.
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    ui = UiPage(context.new_page(), comfy)
    try:
        yield ui.open()
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            try:
                print("screenshot:", ui.screenshot("FAILED-" + request.node.name))
            except Exception:
                pass
        context.close()


def _new_ui_page(browser, comfy) -> tuple[object, UiPage]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    return context, UiPage(context.new_page(), comfy).open()


@pytest.fixture(scope="module")
def shared_ui_page(browser, comfy):
    """One loaded page for a whole test module (a page load costs ~5 s on 2 cores); tests that use it must
    not depend on each other's graph: load what you need first (app.loadGraphData / loadApiJson)."""
    context, ui = _new_ui_page(browser, comfy)
    try:
        yield ui
    finally:
        context.close()


@pytest.fixture
def app_page(request, shared_ui_page):
    """shared_ui_page for one test, with a screenshot FAILED-<test>.png if the test fails."""
    yield shared_ui_page
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        try:
            print("screenshot:", shared_ui_page.screenshot("FAILED-" + request.node.name))
        except Exception:
            pass
