"""What the browser tests share: accounts, viewports, signing in and screenshots."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD

ADMIN_EMAIL = "admin@example.com"
ADMIN_NAME = "Ada Admin"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_NAME",
    "LAPTOP",
    "PASSWORD",
    "PHONE",
    "SCREENSHOTS",
    "assert_fits_width",
    "shot",
    "sign_in",
]


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Sign in through the sign-in form and wait until the signed-in page is shown."""
    page.goto("/auth")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("form.signout")).to_be_visible()


def shot(page: Page, name: str, viewport: dict | None = None) -> Path:
    """Save a full-page screenshot as tests/screenshots/<name>.png (optionally at another viewport size first)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if viewport is not None:
        page.set_viewport_size(viewport)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled", caret="initial")
    return path


def assert_fits_width(page: Page) -> None:
    """The page does not scroll sideways: nothing is wider than the viewport (wide content scrolls in its own box)."""
    overflow = page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const wide = [...document.querySelectorAll("body *")]
                .filter(el => el.getBoundingClientRect().right > width + 1 && !el.closest(".cm-scroller, .table-wrap"))
                .map(el => el.tagName.toLowerCase() + (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : ""));
            return {scrollWidth: document.documentElement.scrollWidth, width, wide: wide.slice(0, 8)};
        }"""
    )
    assert overflow["scrollWidth"] <= overflow["width"], f"{page.url} scrolls sideways: {overflow}"
