"""Chat knowledge base and reply service, with a real (small) intent model trained on a fixture FAQ."""
from __future__ import annotations

import json
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import select  # noqa: E402

from nlp_suite.chat.knowledge import KnowledgeBase, fill, is_user_slot, placeholders  # noqa: E402
from nlp_suite.chat.service import FALLBACK_TEXT, HANDOFF_TEXT, ReplyService  # noqa: E402
from nlp_suite.config import db_url, load_config  # noqa: E402
from nlp_suite.storage import migrate  # noqa: E402
from nlp_suite.storage.models import ChatMessage, ChatSession  # noqa: E402
from nlp_suite.storage.session import session_scope  # noqa: E402
from nlp_suite.tasks.classification import TextClassifier  # noqa: E402
from nlp_suite.training import registry  # noqa: E402
from tests.helpers import train_single_threaded  # noqa: E402

# Six intents x 25 questions; two answers carry Bitext-style placeholders the user must give.
FAQ: dict[str, tuple[str, list[str]]] = {
    "reset_password": (
        "To reset your password, open Settings > Security and choose 'Reset password'. We will email you a link.",
        ["how do i reset my password", "i forgot my password", "reset password please", "can't remember my password",
         "i need a new password", "password reset link", "how to change my password", "lost my password help",
         "my password does not work", "i want to reset the password", "how can i recover my password",
         "forgot password what do i do", "help me reset my login password", "password not accepted need reset",
         "change password for my login", "where do i reset the password", "send me a password reset",
         "i locked myself out forgot password", "recover forgotten password", "new password needed please",
         "password recovery", "reset my password now", "how do i get a new password", "forgotten password again",
         "can you reset my password"]),
    "check_balance": (
        "The balance of account {{Account Number}} is shown under Accounts > Overview.",
        ["what is my account balance", "check my balance", "how much money is in my account", "show my balance",
         "balance of my account", "i want to see my balance", "how much do i have in my account",
         "account balance please", "tell me my current balance", "what's my balance", "check account balance",
         "how can i check my balance", "view my balance", "display account balance", "current balance of my account",
         "my balance please", "how much is left in my account", "see balance", "what is the balance",
         "balance inquiry", "i need my account balance", "remaining balance on my account", "get my balance",
         "balance check", "how much money do i have"]),
    "cancel_order": (
        "Order {{Order Number}} has been flagged for cancellation; you will get a confirmation email.",
        ["i want to cancel my order", "cancel my order", "how do i cancel an order", "please cancel the order",
         "cancel order", "i need to cancel my purchase", "can i cancel my order", "stop my order",
         "cancel the purchase i made", "i changed my mind cancel the order", "how to cancel a purchase",
         "order cancellation", "cancel my recent order", "i don't want my order anymore", "cancel this order please",
         "can you cancel my purchase", "withdraw my order", "undo my order", "cancel an order i placed",
         "i wish to cancel my order", "help me cancel my order", "cancellation of order", "cancel purchase",
         "i would like to cancel the order", "revoke my order"]),
    "delivery_time": (
        "Standard delivery takes 3 to 5 business days; express delivery takes 1 to 2 days.",
        ["how long does delivery take", "when will my package arrive", "delivery time", "how long is shipping",
         "when does my parcel arrive", "shipping time", "how many days for delivery", "when will i get my package",
         "estimated delivery time", "how fast is shipping", "when will it be delivered", "delivery duration",
         "how long until my package arrives", "shipping duration", "how soon will it ship", "expected arrival date",
         "how long will shipping take", "when do packages arrive", "delivery takes how long", "arrival time of parcel",
         "time to deliver", "how quickly do you deliver", "when is the delivery", "shipping days", "delivery speed"]),
    "payment_methods": (
        "We accept credit cards, debit cards, PayPal and bank transfers.",
        ["what payment methods do you accept", "can i pay with paypal", "which cards do you accept",
         "payment options", "how can i pay", "do you accept credit cards", "can i pay by bank transfer",
         "accepted payment methods", "pay with debit card", "what ways can i pay", "is paypal accepted",
         "payment types", "can i use my visa card", "do you take mastercard", "methods of payment",
         "how do i pay for my purchase", "which payment options are there", "can i pay with a card",
         "pay by transfer", "payment methods available", "do you accept paypal payments", "ways to pay",
         "options for paying", "can i pay cash", "what cards can i use"]),
    "close_account": (
        "We are sorry to see you go. To close your account, open Settings > Account and choose 'Close account'.",
        ["i want to close my account", "delete my account", "how do i close my account", "close account",
         "remove my account", "i want to delete my profile", "terminate my account", "deactivate my account",
         "how to delete my account", "please close my account", "shut down my account", "account deletion",
         "i no longer want my account", "cancel my account", "erase my account", "how can i remove my profile",
         "close my profile", "delete profile", "end my membership", "i wish to close the account",
         "get rid of my account", "account closure", "permanently delete account", "deregister me",
         "unsubscribe and delete account"]),
}


def write_faq(path: Path, faq: dict[str, tuple[str, list[str]]] = FAQ) -> Path:
    """The fixture knowledge base as FAQ JSONL."""
    path.write_text("".join(json.dumps({"intent": intent, "answer": answer, "questions": questions}) + "\n"
                            for intent, (answer, questions) in faq.items()), encoding="utf-8")
    return path


def train_reply_model(var: Path) -> tuple[str, Path, TextClassifier]:
    """Train and register a real reply model on the fixture FAQ; returns (db url, faq path, classifier)."""
    faq = write_faq(var / "faq.jsonl")
    cfg = load_config(["task=reply", f"data.faq={faq}", "train.epochs=20", f"paths.var={var}"])
    url = db_url(cfg)
    migrate.upgrade(url)
    train_single_threaded(cfg)
    with session_scope(url) as session:
        _, loaded = registry.load_active(session, "reply")
    return url, faq, TextClassifier(loaded.model, loaded.tokenizer, loaded.task.labels, loaded.max_len)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return train_reply_model(tmp_path_factory.mktemp("chat"))


@pytest.fixture
def service(model) -> ReplyService:
    url, faq, classifier = model
    return ReplyService(classifier, KnowledgeBase(faq), url)


def messages(url: str, session_id: str) -> list[ChatMessage]:
    with session_scope(url) as session:
        return list(session.scalars(select(ChatMessage).where(ChatMessage.session_id == session_id)
                                    .order_by(ChatMessage.id)))


# ---------------------------------------------------------------- knowledge base


def test_placeholders_and_slots():
    text = "Order {{Order Number}} ships; call {{Customer Support Phone Number}} or see {{ Website URL }}."
    assert placeholders(text) == ["Order Number", "Customer Support Phone Number", "Website URL"]
    assert [is_user_slot(name) for name in placeholders(text)] == [True, False, False]
    assert is_user_slot("Account Number") and is_user_slot("Invoice ID") and not is_user_slot("Company Name")
    assert fill(text, {"Order Number": "42"}) == ("Order 42 ships; call Customer Support Phone Number or see "
                                                  "Website URL.")


def test_knowledge_base_loads_and_reloads_on_change(tmp_path):
    path = write_faq(tmp_path / "faq.jsonl")
    kb = KnowledgeBase(path, defaults={"Website URL": "https://example.test"})
    assert len(kb) == 6 and kb.intents[0] == "reset_password"
    assert kb.get("check_balance").slots == ("Account Number",)
    assert kb.get("cancel_order").missing({}) == ["Order Number"]
    assert kb.get("cancel_order").render({"Order Number": "A-1"}).startswith("Order A-1 has been")
    assert "password" in kb.vocabulary and kb.topic("check_balance") == "check balance"
    assert kb.reload() is False  # unchanged file: nothing to do

    changed = {**FAQ, "delivery_time": ("Delivery takes two days. Details: {{Website URL}}", FAQ["delivery_time"][1])}
    write_faq(path, changed)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert kb.reload() is True
    assert kb.get("delivery_time").render() == "Delivery takes two days. Details: https://example.test"

    path.write_text("{not json\n", encoding="utf-8")  # a broken edit keeps the last good version serving
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert kb.reload() is False and len(kb) == 6


# ---------------------------------------------------------------- reply rules


@pytest.mark.parametrize("question, intent", [
    ("How do I reset my password?", "reset_password"),
    ("how long does delivery take", "delivery_time"),
    ("can I pay with paypal", "payment_methods"),
])
def test_in_kb_question_gets_that_intents_answer(service, model, question, intent):
    reply = service.reply(None, question)
    assert (reply.kind, reply.intent, reply.kb_entry) == ("answer", intent, intent)
    assert reply.text == FAQ[intent][0]
    assert reply.confidence >= 0.5 and reply.latency_ms >= 0
    user, bot = messages(model[0], reply.session_id)
    assert (user.role, user.text, user.intent) == ("user", question, intent)
    assert (bot.role, bot.text, bot.intent, bot.retrieved_ids) == ("bot", reply.text, intent, [intent])
    assert bot.id == reply.message_id and bot.latency_ms == pytest.approx(reply.latency_ms, abs=0.01)
    assert bot.confidence == pytest.approx(reply.confidence)


def test_nonsense_falls_back_and_yes_hands_off_to_a_human(service, model):
    fallback = service.reply(None, "qwzx plorf blee")
    assert fallback.kind == "fallback" and fallback.text == FALLBACK_TEXT and fallback.kb_entry is None
    assert "human agent" in fallback.text
    handoff = service.reply(fallback.session_id, "yes please, a human")
    assert handoff.kind == "handoff" and handoff.text == HANDOFF_TEXT

    short_yes = service.reply(service.reply(None, "the weather is nice today").session_id, "yes")
    assert short_yes.kind == "handoff"
    direct = service.reply(None, "I want to talk to an agent")  # asking for a person works without an offer
    assert direct.kind == "handoff"
    declined = service.reply(service.reply(None, "blorp zint quax").session_id, "no thanks")
    assert declined.kind == "fallback" and "rephrase" in declined.text
    with session_scope(model[0]) as session:
        flags = {s.id: s.handoff_requested for s in session.scalars(select(ChatSession))}
    assert flags[fallback.session_id] is True and flags[short_yes.session_id] is True and flags[direct.session_id]
    assert flags[declined.session_id] is False
    assert [m.retrieved_ids for m in messages(model[0], fallback.session_id) if m.role == "bot"] == [[], []]


@pytest.mark.parametrize("text", ["", "   \n\t ", "x" * 2001])
def test_empty_or_too_long_input_is_refused_and_logged(service, model, text):
    reply = service.reply(None, text)
    assert reply.kind == "refusal" and reply.intent is None and reply.kb_entry is None
    assert ("too long" in reply.text) == (len(text) > 2000)
    user, bot = messages(model[0], reply.session_id)
    assert user.text == text and bot.text == reply.text and bot.id == reply.message_id


def test_input_at_the_limit_is_not_refused(service):
    assert service.reply(None, "password " * 222 + "xx").kind != "refusal"  # 2000 characters


def test_html_is_stored_verbatim_and_escaped_for_the_ui(service, model):
    from nlp_suite.ui.app import InertTextbox, from_display, to_display

    text = "<script>alert('x')</script><img src=x onerror=alert(1)> **bold** how do i reset my password\nthanks"
    reply = service.reply(None, text)
    user, _ = messages(model[0], reply.session_id)
    assert user.text == text  # the log keeps exactly what the user typed
    shown = InertTextbox().preprocess(text)  # what the chat UI displays and passes on
    assert shown == to_display(text) and "<script" not in shown and "<img" not in shown
    assert "&lt;script&gt;" in shown and "<br>" in shown and from_display(shown) == text
    assert "<" not in to_display(reply.text)


def test_placeholder_is_asked_for_then_filled_on_the_next_turn(service):
    ask = service.reply(None, "what is my account balance")
    assert (ask.kind, ask.kb_entry) == ("clarify", "check_balance") and "account number" in ask.text
    answer = service.reply(ask.session_id, "it's 12345678")
    assert answer.kind == "answer" and answer.kb_entry == "check_balance"
    assert answer.text == "The balance of account 12345678 is shown under Accounts > Overview."


def test_placeholder_filled_from_a_value_given_earlier(service, model):
    first = service.reply(None, "hello, my account number is 55501234.")
    answer = service.reply(first.session_id, "what is my account balance")
    assert answer.kind == "answer" and "55501234" in answer.text and "{{" not in answer.text
    # A fresh process (new service, same database) rebuilds the session from its logged messages.
    url, faq, classifier = model
    restarted = ReplyService(classifier, KnowledgeBase(faq), url)
    assert "55501234" in restarted.reply(first.session_id, "check my balance").text


def test_two_concurrent_sessions_keep_separate_context(service, model):
    barrier = threading.Barrier(2)
    results: dict[str, list] = {}
    errors: list[BaseException] = []

    def chat(number: str) -> None:
        try:
            session_id = None
            replies = []
            for text in [f"my account number is {number}", "what is my account balance", "how long does delivery take",
                         "check my balance"]:
                barrier.wait(timeout=30)
                reply = service.reply(session_id, text)
                session_id = reply.session_id
                replies.append(reply)
            results[number] = replies
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=chat, args=(number,)) for number in ("11111111", "22222222")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for number, other in (("11111111", "22222222"), ("22222222", "11111111")):
        replies = results[number]
        assert len({r.session_id for r in replies}) == 1
        balance = [r.text for r in replies if r.kb_entry == "check_balance" and r.kind == "answer"]
        assert balance and all(number in text and other not in text for text in balance)
        logged = messages(model[0], replies[0].session_id)
        assert len(logged) == 8 and not any(other in m.text for m in logged)


def test_ambiguous_question_names_both_topics_and_the_choice_is_answered(model):
    url, faq, classifier = model
    service = ReplyService(classifier, KnowledgeBase(faq), url, ambiguity_gap=1.01)  # every gap counts as close
    ask = service.reply(None, "how long does delivery take")
    assert ask.kind == "clarify" and ask.kb_entry is None
    first, second = (intent for intent, _ in ask.candidates)
    assert first == "delivery_time"
    assert "delivery time" in ask.text and service.kb.topic(second) in ask.text
    answer = service.reply(ask.session_id, "the first one")
    assert (answer.kind, answer.kb_entry, answer.text) == ("answer", "delivery_time", FAQ["delivery_time"][0])


def test_feedback_is_stored_on_bot_messages(service, model):
    reply = service.reply(None, "How do I reset my password?")
    service.feedback(reply.message_id, +1)
    assert messages(model[0], reply.session_id)[1].feedback == 1
    service.feedback(reply.message_id, -1)
    assert messages(model[0], reply.session_id)[1].feedback == -1
    with pytest.raises(ValueError):
        service.feedback(reply.message_id, 5)
    with pytest.raises(ValueError):
        service.feedback(reply.user_message_id, 1)
    with pytest.raises(LookupError):
        service.feedback(10**9, 1)


def test_edited_answer_is_served_without_restart(model, tmp_path):
    url, _, classifier = model
    path = write_faq(tmp_path / "faq.jsonl")
    service = ReplyService(classifier, KnowledgeBase(path), url)
    assert service.reply(None, "can I pay with paypal").text == FAQ["payment_methods"][0]
    write_faq(path, {**FAQ, "payment_methods": ("Cards only, sorry.", FAQ["payment_methods"][1])})
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert service.reply(None, "can I pay with paypal").text == "Cards only, sorry."
