"""A hand-off in real headless Chromium: the shopper asks for a person, a staff member in a second browser context
logs in to the support desk, claims the ticket and replies, and the shopper's open page shows it.

Screenshots go to tests/artifacts/ (gitignored), desktop and phone.
"""

import pytest
from test_browser_app import ARTIFACTS, browser, open_tab, send, wait_for_answers  # noqa: F401 (browser is a fixture)

from mmsupport.handoff import REFERENCE

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1400, "height": 1000}}


def chat_has(page, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function("(t) => document.querySelector('#chat').innerText.includes(t)", arg=text,
                           timeout=timeout)


def open_shop(browser, ui_server, **options):  # noqa: F811
    context = browser.new_context(**options)  # its own cookies and storage: another person
    page = context.new_page()
    page.goto(ui_server.url)
    page.wait_for_selector("#status.ready", state="attached", timeout=300_000)
    return context, page


def desk_log_in(page, name: str, password: str) -> None:
    open_tab(page, "Support desk")
    page.get_by_label("Your name (shoppers see it)").fill(name)
    page.get_by_label("Staff password").fill(password)
    page.get_by_role("button", name="Log in to the desk").click()


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_shopper_asks_for_a_person_and_sees_the_staff_reply(browser, ui_server, device):  # noqa: F811
    shopper_context, shopper = open_shop(browser, ui_server, **(PHONE if device == "phone" else DESKTOP))
    staff_context, staff = open_shop(browser, ui_server, **(PHONE if device == "phone" else DESKTOP))
    try:
        send(shopper, "Do you sell waterproof hiking boots?")
        wait_for_answers(shopper, 1)
        button = shopper.get_by_role("button", name="Talk to a person")
        box = button.bounding_box()
        assert min(box["width"], box["height"]) >= 40, f"the button is {box}"
        button.click()
        chat_has(shopper, "Your reference is H-")
        reference = REFERENCE.search(shopper.inner_text("#chat")).group(0)
        assert "type your reference" in shopper.inner_text("#chat")
        shopper.screenshot(path=str(ARTIFACTS / f"handoff_{device}.png"))

        desk_log_in(staff, "Sam", "wrong")
        staff.wait_for_function("document.body.innerText.includes('Wrong admin password')", timeout=30_000)
        desk_log_in(staff, "Sam", ui_server.admin_password)
        staff.wait_for_function("(r) => document.querySelector('#desk-queue')?.innerText.includes(r)",
                                arg=reference, timeout=30_000)
        staff.locator("#desk-queue").get_by_text(reference).last.click()  # pick the ticket from the table
        staff.wait_for_function("(r) => document.querySelector('#desk-view').innerText.includes(r)",
                                arg=reference, timeout=30_000)
        assert "Do you sell waterproof hiking boots?" in staff.inner_text("#desk-view")
        staff.get_by_role("button", name="Claim").click()
        chat_has(shopper, "Sam from support joined the chat")

        staff.locator("#desk-reply textarea").fill("Yes, the Ridge boots are waterproof. Which size?")
        staff.get_by_role("button", name="Send reply").click()
        chat_has(shopper, "Yes, the Ridge boots are waterproof. Which size?")
        assert "Sam from support: Yes, the Ridge" in shopper.inner_text("#chat")
        shopper.screenshot(path=str(ARTIFACTS / f"handoff_reply_{device}.png"))

        searches = shopper.inner_text("#chat").count("Search catalog")
        send(shopper, "Size 44 please")  # goes to Sam, not to the assistant
        staff.wait_for_function("document.querySelector('#desk-view').innerText.includes('Size 44 please')",
                                timeout=60_000)
        chat_has(shopper, "Size 44 please")
        assert shopper.inner_text("#chat").count("Search catalog") == searches  # no new bot answer
        staff.screenshot(path=str(ARTIFACTS / f"desk_{device}.png"), full_page=True)
    finally:
        shopper_context.close()
        staff_context.close()
