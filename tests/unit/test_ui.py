"""Gradio app: chat through gradio_client against a launched app with a real reply model; Monitor queries."""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported anywhere
os.environ["HF_HUB_OFFLINE"] = "1"

import hashlib  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sqlalchemy import select  # noqa: E402

from nlp_suite.chat import service as service_module  # noqa: E402
from nlp_suite.config import load_config  # noqa: E402
from nlp_suite.storage import migrate  # noqa: E402
from nlp_suite.storage.models import (  # noqa: E402
    Alert, ChatMessage, Document, DocumentEntity, ModelVersion, SentimentScore)
from nlp_suite.storage.session import session_scope  # noqa: E402
from nlp_suite.ui import queries  # noqa: E402
from nlp_suite.ui.app import (  # noqa: E402
    UNAVAILABLE_TEXT, bot_message_id, build_app, from_display, launch, monitor_view, to_display)
from tests.helpers import free_port  # noqa: E402
from tests.unit.test_chat import FAQ, train_reply_model  # noqa: E402

DAY = datetime(2024, 3, 1, tzinfo=timezone.utc)



def ui_config(var, faq=None, port=None):
    overrides = [f"paths.var={var}", f"ui.port={port or free_port()}"]
    return load_config(overrides + ([f"data.faq={faq}"] if faq else []))


def add_monitor_data(url: str) -> None:
    """ACME: day 1 one of two negative, day 2 all three negative (open alert); Globex: one positive; a retired
    model's scores (all negative) that the Monitor must ignore; a closed alert it must not list."""
    with session_scope(url) as session:
        active = ModelVersion(name="sentiment-active", task="sentiment", path="/m/a", sha256="0" * 64, status="active")
        retired = ModelVersion(name="sentiment-old", task="sentiment", path="/m/o", sha256="1" * 64, status="retired")
        session.add_all([active, retired])
        session.flush()
        docs = [("ACME", 0, "negative"), ("ACME", 0, "positive"), ("ACME", 1, "negative"), ("ACME", 1, "negative"),
                ("ACME", 1, "negative"), ("Globex", 0, "positive")]
        for number, (entity, day, label) in enumerate(docs):
            text = f"{entity} news {number}"
            document = Document(source="test", external_id=str(number), text=text,
                                 published_at=DAY + timedelta(days=day, hours=number),
                                 content_hash=hashlib.sha256(text.encode()).hexdigest())
            document.entities.append(DocumentEntity(entity=entity))
            session.add(document)
            session.flush()
            for version, value in ((active, label), (retired, "negative")):
                session.add(SentimentScore(document_id=document.id, model_version_id=version.id, label=value,
                                           probabilities={value: 0.9}))
        common = dict(negative_count=3, total_count=3, negative_share=1.0, baseline_share=0.5, z_score=3.5,
                      p_value=0.001, model_version_id=active.id)
        session.add(Alert(entity="ACME", bucket_start=DAY + timedelta(days=1), bucket_end=DAY + timedelta(days=2),
                          severity="high", status="open",
                          evidence=[{"text": "ACME recalls <b>everything</b>"}, {"text": "ACME sued"}], **common))
        session.add(Alert(entity="Globex", bucket_start=DAY, bucket_end=DAY + timedelta(days=1), severity="low",
                          status="closed", evidence=[], **common))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    var = tmp_path_factory.mktemp("ui")
    url, faq, _ = train_reply_model(var)
    add_monitor_data(url)
    return var, url, faq


@pytest.fixture(scope="module")
def served(trained):
    """The app as `launch` serves it, plus how often the reply model was loaded."""
    var, url, faq = trained
    loads = []
    original = service_module.registry.load_active

    def counting_load_active(*args, **kwargs):
        loads.append(args[1:])
        return original(*args, **kwargs)

    service_module.registry.load_active = counting_load_active
    app = None
    try:
        cfg = ui_config(var, faq)
        app = launch(cfg, block=False)
        yield Client(f"http://127.0.0.1:{cfg.ui.port}/", verbose=False), loads
    finally:
        service_module.registry.load_active = original
        if app is not None:
            app.close()


def test_chat_through_gradio_client(served, trained):
    client, loads = served
    assert "/respond" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    answer = client.predict("How do I reset my password?", False, api_name="/respond")
    assert from_display(answer) == FAQ["reset_password"][0]
    assert answer == to_display(FAQ["reset_password"][0])  # HTML-escaped for display

    details = client.predict("can I pay with paypal", True, api_name="/respond")
    assert from_display(details).startswith(FAQ["payment_methods"][0])
    assert "intent: payment_methods" in details and "KB entry: payment_methods" in details

    # The client's session carries the conversation: the bot asks for the account number, then uses it.
    assert "account number" in client.predict("what is my account balance", False, api_name="/respond")
    filled = client.predict("it is 4455667788", False, api_name="/respond")
    assert from_display(filled) == "The balance of account 4455667788 is shown under Accounts > Overview."
    assert loads == [("reply",)]  # the model was loaded once, at startup

    with session_scope(trained[1]) as session:
        sessions = set(session.scalars(select(ChatMessage.session_id)).all())
    assert len(sessions) == 1  # one gradio client = one chat session


def test_chat_streams_growing_prefixes_and_logs_html_verbatim(served, trained):
    client, _ = served
    job = client.submit("<i>how long</i> does delivery take", False, api_name="/respond")
    chunks = list(job)
    assert len(chunks) >= 2 and all(b.startswith(a) for a, b in zip(chunks, chunks[1:]))
    assert chunks[-1] == job.outputs()[-1]
    with session_scope(trained[1]) as session:
        texts = session.scalars(select(ChatMessage.text).where(ChatMessage.role == "user")).all()
    assert "<i>how long</i> does delivery take" in texts


def test_app_without_reply_model_explains_instead_of_failing(tmp_path):
    migrate.upgrade(f"sqlite:///{tmp_path}/empty.db")
    cfg = ui_config(tmp_path, port=free_port())
    cfg.db.url = f"sqlite:///{tmp_path}/empty.db"
    app = build_app(cfg, None).queue()
    try:
        app.launch(server_name="127.0.0.1", server_port=cfg.ui.port, prevent_thread_lock=True, quiet=True)
        client = Client(f"http://127.0.0.1:{cfg.ui.port}/", verbose=False)
        assert from_display(client.predict("hello", False, api_name="/respond")) == UNAVAILABLE_TEXT
        entity, message, _, table = client.predict(None, None, None, api_name="/refresh_monitor")
        assert "No active sentiment model" in message and table["data"] == []
    finally:
        app.close()


def test_bot_message_id_maps_chatbot_index_to_stored_ids():
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
               {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    assert bot_message_id(history, 1, [10, 20]) == 10
    assert bot_message_id(history, 3, [10, 20]) == 20
    assert bot_message_id(history, 2, [10, 20]) is None  # a user message
    assert bot_message_id(history, 3, [10]) is None and bot_message_id(history, 9, [10, 20]) is None


# ---------------------------------------------------------------- Monitor queries


def test_sentiment_series_uses_the_active_model_per_entity_and_day(trained):
    url = trained[1]
    series = queries.sentiment_series(url)
    assert list(series.columns) == queries.SERIES_COLUMNS
    acme = series[series["entity"] == "ACME"]
    assert acme["documents"].tolist() == [2, 3] and acme["negatives"].tolist() == [1, 3]
    assert acme["negative_share"].tolist() == [0.5, 1.0]
    assert acme["day"].tolist() == [pd.Timestamp(DAY), pd.Timestamp(DAY + timedelta(days=1))]
    assert series[series["entity"] == "Globex"]["negative_share"].tolist() == [0.0]

    only_day_two = queries.sentiment_series(url, "ACME", "2024-03-02", datetime(2024, 3, 2, 15))
    assert only_day_two["negatives"].tolist() == [3]
    assert queries.sentiment_series(url, "Nobody").empty
    assert queries.entities(url) == ["ACME", "Globex"]
    assert queries.active_sentiment_version(url)[1] == "sentiment-active"


def test_open_alerts_table(trained):
    url = trained[1]
    alerts = queries.open_alerts(url)
    assert list(alerts.columns) == queries.ALERT_COLUMNS
    assert alerts["entity"].tolist() == ["ACME"]  # the closed Globex alert is not listed
    row = alerts.iloc[0]
    assert (row["severity"], row["negative_share"], row["baseline_share"]) == ("high", 1.0, 0.5)
    assert row["bucket_start"] == pd.Timestamp(DAY + timedelta(days=1))
    assert row["evidence"] == "ACME recalls <b>everything</b> | ACME sued"
    assert queries.open_alerts(url, "ACME", end=DAY).empty  # the spike starts after the range
    assert len(queries.open_alerts(url, "ACME", start=DAY + timedelta(days=1))) == 1


def test_monitor_view_never_raises(trained, tmp_path):
    choices, message, figure, alerts = monitor_view(trained[1], "ACME", None, None)
    assert choices == ["ACME", "Globex"] and "5 scored documents" in message
    assert isinstance(figure, Figure) and len(alerts) == 1
    import gradio as gr

    assert gr.Plot().postprocess(figure).plot.startswith("data:image/")  # what the Monitor tab sends

    empty = f"sqlite:///{tmp_path}/fresh.db"
    migrate.upgrade(empty)
    choices, message, figure, alerts = monitor_view(empty, None, None, None)
    assert choices == [] and "No active sentiment model" in message
    assert isinstance(figure, Figure) and list(alerts.columns) == queries.ALERT_COLUMNS and alerts.empty
    assert list(queries.sentiment_series(empty).columns) == queries.SERIES_COLUMNS

    _, message, figure, _ = monitor_view(f"sqlite:///{tmp_path}/no_tables.db", None, None, None)
    assert "could not read the database" in message and isinstance(figure, Figure)


def test_thumbs_on_a_bot_message_is_stored(served, trained):
    """The Chatbot's like event, posted the way the browser posts it, lands in chat_messages.feedback."""
    import json

    import httpx

    client, _ = served
    question = "can I pay with paypal"
    answer = client.predict(question, False, api_name="/respond")
    with session_scope(trained[1]) as session:  # the whole conversation, as the browser's chatbot shows it
        logged = session.scalars(select(ChatMessage).order_by(ChatMessage.id)).all()
    history = [{"role": "user" if m.role == "user" else "assistant",
                "content": [{"type": "text", "text": to_display(m.text)}]} for m in logged]
    assert from_display(history[-1]["content"][0]["text"]) == FAQ["payment_methods"][0]
    dependency = next(d for d in client.config["dependencies"] if d.get("api_name") == "record_feedback")
    root = client.src.rstrip("/") + "/gradio_api"
    with httpx.Client(timeout=30) as http:
        # The browser sends the chatbot value and null for the State input (the server uses the session's state).
        http.post(f"{root}/queue/join", json={
            "data": [history, None], "event_data": {"index": len(history) - 1, "value": answer, "liked": False},
            "fn_index": dependency["id"], "trigger_id": dependency["targets"][0][0],
            "session_hash": client.session_hash}).raise_for_status()
        with http.stream("GET", f"{root}/queue/data", params={"session_hash": client.session_hash}) as events:
            for line in events.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_completed":
                    assert json.loads(line[5:])["success"] is True
                    break
    with session_scope(trained[1]) as session:
        feedback = dict(session.execute(select(ChatMessage.id, ChatMessage.feedback)
                                        .where(ChatMessage.role == "bot")).all())
    assert feedback[logged[-1].id] == -1  # the thumbs-down went to the paypal answer, and only to it
    assert sum(value is not None for value in feedback.values()) == 1


def test_login_pairs_come_from_the_auth_setting():
    from nlp_suite.ui.app import parse_auth

    assert parse_auth(None) is None and parse_auth("") is None
    assert parse_auth("ana:s3cret, bo:pw:with:colons") == [("ana", "s3cret"), ("bo", "pw:with:colons")]
    with pytest.raises(ValueError, match="'nopassword'"):
        parse_auth("nopassword")


def test_streamed_prefixes_double_so_a_long_reply_is_a_few_events():
    from nlp_suite.ui.app import _chunks

    words = " ".join(f"w{i}" for i in range(100))
    prefixes = list(_chunks(words))
    assert prefixes[0] == "w0 w1 w2 " and prefixes[-1] == words
    assert all(a != b and b.startswith(a) for a, b in zip(prefixes, prefixes[1:]))
    assert len(prefixes) == 4  # 3, 12, 48, 100 words (a fixed 3-word step took 34, doubling 7)
    assert list(_chunks("hi")) == ["hi"] and list(_chunks("")) == [""]
    assert all(not p.endswith("&amp") for p in _chunks("a &amp; b &amp; c &amp; d &amp; e"))
