"""The Chat tab in a real browser: Debian's Chromium driven by Playwright against `launch(cfg, block=False)`.

One conversation with a real (small) reply model trained on the embedded sample FAQ: a KB question gets the KB
answer, streamed; a thumbs-up on it is stored as `chat_messages.feedback = 1`; typed HTML shows literally (no
element rendered, no script run). Also writes the README screenshot `docs/images/chat.png`.

Needs /usr/bin/chromium (`apt-get install -y chromium chromium-driver`; never `playwright install`) and the
`playwright` package. Skipped without them, unless NLP_SUITE_REQUIRE_BROWSER=1 (CI), which turns the skip into a
failure.
"""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported anywhere
os.environ["HF_HUB_OFFLINE"] = "1"

import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import select  # noqa: E402

from nlp_suite.chat.knowledge import fill  # noqa: E402
from nlp_suite.config import db_url, load_config  # noqa: E402
from nlp_suite.data.sample import write_sample_data  # noqa: E402
from nlp_suite.storage import migrate  # noqa: E402
from nlp_suite.storage.models import ChatMessage, ChatSession  # noqa: E402
from nlp_suite.storage.session import session_scope  # noqa: E402
from tests.helpers import free_port, train_single_threaded  # noqa: E402

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the check below reports it
    sync_playwright = None

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "chat.png"
QUESTION = "How do I reset my password?"
HOSTILE = "<script>alert(1)</script><b>bold</b>"
USER_MESSAGES = '[data-testid="user"]'
BOT_MESSAGES = '[data-testid="bot"]'  # the text is in its `.message-content`


def _missing_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    if sync_playwright is None:
        return "the `playwright` package is not importable (pip install playwright)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (apt-get install -y chromium chromium-driver; never `playwright install`)"
    return None


@pytest.fixture(scope="module", autouse=True)
def browser_available():
    """Skip (or, with NLP_SUITE_REQUIRE_BROWSER=1, fail) before any training when Chromium/Playwright are missing."""
    problem = _missing_browser()
    if problem:
        if os.environ.get("NLP_SUITE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NLP_SUITE_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)



@pytest.fixture(scope="module")
def app_config(tmp_path_factory):
    """Sample data written, database migrated, a real reply model trained and active; returns (cfg, faq path)."""
    var = tmp_path_factory.mktemp("browser")
    files = write_sample_data(var / "sample", seed=0)
    cfg = load_config([f"paths.var={var}", f"data.dir={var}/sample", "task=reply", "train.epochs=15",
                       f"ui.port={free_port()}"])
    migrate.upgrade(db_url(cfg))
    train_single_threaded(cfg)
    return cfg, files.faq


@pytest.fixture(scope="module")
def served(app_config):
    """The app as `launch` serves it; closed at the end."""
    from nlp_suite.ui.app import launch

    cfg, _ = app_config
    app = launch(cfg, block=False)
    try:
        yield f"http://127.0.0.1:{cfg.ui.port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def page(served):
    """A headless Chromium page on the app; records any JavaScript dialog (alert/confirm) that opens."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1000, "height": 700})
            tab.set_default_timeout(15_000)
            tab.dialogs = []

            def on_dialog(dialog):
                tab.dialogs.append(dialog.message)
                dialog.dismiss()

            tab.on("dialog", on_dialog)
            tab.goto(served, wait_until="domcontentloaded")
            tab.get_by_role("textbox").first.wait_for(state="visible")
            yield tab
        finally:
            browser.close()


def kb_answer(faq: Path, intent: str) -> str:
    """The answer the bot gives for `intent`, from the FAQ file (placeholders without a value show their name)."""
    for line in faq.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["intent"] == intent:
            assert not entry.get("slots"), "this test expects an answer that needs no value from the user"
            return fill(entry["answer"], entry.get("defaults") or {})
    raise AssertionError(f"{intent} not in {faq}")


def send(page, text: str) -> None:
    box = page.get_by_role("textbox").first
    box.fill(text)
    box.press("Enter")


def settled_bot_text(page, count: int, expected: str | None = None, timeout_s: float = 20.0) -> str:
    """Text of the `count`-th bot message once the stream is over: unchanged for 0.5 s (and equal to `expected`)."""
    bot = page.locator(BOT_MESSAGES)
    deadline = time.monotonic() + timeout_s
    last, since, text = None, time.monotonic(), ""
    while time.monotonic() < deadline:
        if bot.count() >= count:
            text = bot.nth(count - 1).locator(".message-content").inner_text().strip()
            if text != last:
                last, since = text, time.monotonic()
            elif time.monotonic() - since >= 0.5 and (expected is None or text == expected):
                return text
        time.sleep(0.1)
    raise AssertionError(f"bot message {count} did not settle{f' on {expected!r}' if expected else ''}; "
                         f"last text: {text!r}")


def wait_for(check, timeout_s: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for {what}"
            return value
        time.sleep(0.2)


def save_screenshot(png: bytes, path: Path, max_changed_share: float = 0.001) -> None:
    """Write the README screenshot, unless the one there already shows the same (Chromium varies a few pixels
    between runs; rewriting it every run would leave the tracked file modified)."""
    from PIL import Image, ImageChops

    assert len(png) < 200_000, f"screenshot is {len(png)} bytes; keep the README image small"
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    if path.exists():
        with Image.open(path) as existing:
            old = existing.convert("RGB")
        if old.size == shot.size:
            changed = ImageChops.difference(old, shot).convert("L").point(lambda value: 255 if value else 0)
            if changed.histogram()[255] <= max_changed_share * shot.width * shot.height:
                return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def stored_messages(url: str) -> list[ChatMessage]:
    with session_scope(url) as session:
        return list(session.scalars(select(ChatMessage).order_by(ChatMessage.id)))


def test_chat_in_browser(app_config, page):
    cfg, faq = app_config
    url = db_url(cfg)
    expected = kb_answer(faq, "reset_password")

    # A KB question: the reply streams in and settles on the KB answer.
    send(page, QUESTION)
    assert page.locator(USER_MESSAGES).first.inner_text().strip() == QUESTION
    assert settled_bot_text(page, 1, expected) == expected

    # Thumbs up on that bot message ("Like"; exact, or "Dislike" would match too).
    like = page.get_by_role("button", name="Like", exact=True)
    assert like.count() == 1
    like.click()
    page.mouse.move(0, 0)  # no hover styling in the screenshot

    def bot_feedback():
        bots = [message for message in stored_messages(url) if message.role == "bot"]
        return bots if bots and bots[0].feedback is not None else None

    wait_for(bot_feedback, what="the like to reach chat_messages.feedback")
    with session_scope(url) as session:
        sessions = list(session.scalars(select(ChatSession)))
    messages = stored_messages(url)
    assert len(sessions) == 1
    assert [(m.role, m.session_id) for m in messages] == [("user", sessions[0].id), ("bot", sessions[0].id)]
    user, bot = messages
    assert (user.text, user.intent) == (QUESTION, "reset_password")
    assert (bot.text, bot.intent, bot.feedback) == (expected, "reset_password", 1)
    assert user.feedback is None

    page.evaluate("document.activeElement && document.activeElement.blur()")  # no blinking caret
    save_screenshot(page.screenshot(), SCREENSHOT)

    # Typed HTML is inert: shown literally, no element created, no script run, stored as typed.
    send(page, HOSTILE)
    wait_for(lambda: page.locator(USER_MESSAGES).count() == 2, what="the second user message")
    settled_bot_text(page, 2)
    chat = page.get_by_role("log")  # the chatbot conversation
    assert page.locator(USER_MESSAGES).nth(1).inner_text().strip() == HOSTILE
    assert chat.locator("b").count() == 0
    assert chat.locator("script").count() == 0
    time.sleep(0.3)  # give a (wrongly) injected script the chance to run
    assert page.dialogs == []
    stored = stored_messages(url)
    assert [m.role for m in stored] == ["user", "bot", "user", "bot"]
    assert stored[2].text == HOSTILE
