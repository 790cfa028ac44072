"""The Gradio app: **Chat** (customer-service bot) and **Monitor** (entity sentiment over time and open alerts).

`launch(cfg)` loads the active reply model once through the registry, builds the `ReplyService`, enables the queue
with `cfg.ui.concurrency` workers per event and serves on `cfg.ui.host:cfg.ui.port`. `build_app(cfg, service)`
only wires components; the logic lives in `nlp_suite.chat` and `nlp_suite.ui.queries`.

API (gradio_client): the chat is the ChatInterface's endpoint, named after its function, **`/respond`**
(Gradio 6 gives a ChatInterface `api_name=fn.__name__` when none is set). It takes the message and the
"show details" flag; the conversation (session id, bot message ids) is per-client server-side state:

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    text = client.predict("How do I reset my password?", False, api_name="/respond")

The endpoint streams: `client.submit(...)` yields growing prefixes of the reply, `predict` returns the whole reply.
Replies are HTML-escaped text (`&lt;` for `<`, `<br>` for a line break); `from_display` turns them back into text.

Inert user input: the chat textbox escapes what the user typed before anything else sees it (`to_display`), the
chatbot renders no Markdown (`render_markdown=False`) and sanitizes HTML, and bot replies (which may echo values
the user gave) are escaped the same way. So `<script>`, `<img onerror=...>` and `**bold**` show as typed. The
service receives and logs the original text (`from_display` undoes the escaping exactly).
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # never look up external hosts from a local app

import html  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from typing import Any, Iterator  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

from nlp_suite.chat.service import BotReply, ReplyService  # noqa: E402
from nlp_suite.config import db_url  # noqa: E402
from nlp_suite.training.registry import RegistryError  # noqa: E402
from nlp_suite.ui import queries  # noqa: E402

log = logging.getLogger(__name__)

ALL_ENTITIES = "All entities"
STREAM_WORDS = 3  # words added per streamed chunk
STREAM_DELAY_S = 0.02  # pause between chunks, so the reply visibly streams
ERROR_TEXT = "Sorry, something went wrong on our side. Please try again in a moment."
UNAVAILABLE_TEXT = ("The chatbot is not available: no active reply model. "
                    "Train one with `nlp-suite train task=reply` and restart the app.")


# ---------------------------------------------------------------------- escaping


def to_display(text: str) -> str:
    """Plain text → inert HTML text: escape &, <, >, quotes; line breaks become <br>."""
    return html.escape(text, quote=True).replace("\n", "<br>")


def from_display(shown: str) -> str:
    """Exact inverse of `to_display`."""
    return html.unescape(shown.replace("<br>", "\n"))


class InertTextbox(gr.Textbox):
    """A gr.Textbox whose value reaches Python already escaped by `to_display` (same front-end component)."""

    is_template = True  # Gradio renders subclasses marked as templates with the parent's Svelte component

    def preprocess(self, payload: str | None) -> str | None:
        value = super().preprocess(payload)
        return None if value is None else to_display(value)


# ---------------------------------------------------------------------- chat helpers


def _role(message: Any) -> str | None:
    return message.get("role") if isinstance(message, dict) else getattr(message, "role", None)


def bot_message_id(history: list[Any], index: Any, message_ids: list[int]) -> int | None:
    """chat_messages id of the chatbot message at `index` (the n-th assistant message ↔ the n-th stored id)."""
    if isinstance(index, (list, tuple)):
        index = index[0]
    if not isinstance(index, int) or not 0 <= index < len(history) or _role(history[index]) != "assistant":
        return None
    ordinal = sum(1 for message in history[:index] if _role(message) == "assistant")
    return message_ids[ordinal] if ordinal < len(message_ids) else None


def details_line(reply: BotReply) -> str:
    """The "show details" footer: kind, intent, confidence, KB entry used, latency."""
    confidence = f"{reply.confidence:.2f}" if reply.confidence is not None else "n/a"
    parts = [f"kind: {reply.kind}", f"intent: {reply.intent or 'none'}", f"confidence: {confidence}",
             f"KB entry: {reply.kb_entry or 'none'}", f"{reply.latency_ms:.0f} ms"]
    if reply.used_context:
        parts.append("used earlier turns")
    return " · ".join(parts)


def _chunks(shown: str) -> Iterator[str]:
    """Growing prefixes of `shown`, a few words at a time (never splitting an HTML entity)."""
    pieces = re.findall(r"\S+\s*", shown) or [shown]
    for end in range(STREAM_WORDS, len(pieces) + STREAM_WORDS, STREAM_WORDS):
        yield "".join(pieces[:end])


# ---------------------------------------------------------------------- monitor helpers


def sentiment_figure(series: pd.DataFrame, alerts: pd.DataFrame, message: str = "") -> Figure:
    """Negative share per day, one line per entity, alerts as red markers; an empty plot with `message` if no data."""
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    axes = figure.add_subplot()
    axes.set_ylabel("negative share")
    axes.set_ylim(0, 1.05)
    if series.empty:
        axes.text(0.5, 0.5, message or "No data", ha="center", va="center", transform=axes.transAxes)
        axes.set_xticks([])
        return figure
    for entity, group in series.groupby("entity", sort=True):
        axes.plot(group["day"].dt.tz_localize(None), group["negative_share"], marker="o", markersize=3, label=entity)
    shown = alerts[alerts["entity"].isin(series["entity"].unique())] if not alerts.empty else alerts
    if not shown.empty:
        axes.scatter(pd.to_datetime(shown["bucket_start"], utc=True).dt.tz_localize(None), shown["negative_share"],
                     marker="^", s=80, color="red", zorder=3, label="alert")
    axes.legend(loc="upper left", fontsize="small", ncols=2)
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    return figure


def monitor_view(url: str, entity: str | None, start: Any, end: Any) -> tuple[list[str], str, Figure, pd.DataFrame]:
    """Everything the Monitor tab shows: entity choices, status message, figure and alerts table. Never raises."""
    entity = None if entity in (None, "", ALL_ENTITIES) else entity
    empty_alerts = pd.DataFrame(columns=queries.ALERT_COLUMNS)
    try:
        choices = queries.entities(url)
        active = queries.active_sentiment_version(url)
        alerts = queries.open_alerts(url, entity, start, end)
        if active is None:
            message = "No active sentiment model: train one with `nlp-suite train task=sentiment`."
            return choices, message, sentiment_figure(pd.DataFrame(columns=queries.SERIES_COLUMNS), alerts,
                                                      "No active sentiment model"), alerts
        series = queries.sentiment_series(url, entity, start, end, model_version_id=active[0])
    except (SQLAlchemyError, ValueError, TypeError) as error:
        log.exception("monitor query failed")
        message = f"The monitor could not read the database: {html.escape(type(error).__name__)}."
        return [], message, sentiment_figure(pd.DataFrame(columns=queries.SERIES_COLUMNS), empty_alerts,
                                             "Database unavailable"), empty_alerts
    who = html.escape(entity) if entity else "any entity"
    if series.empty:
        message = f"No scored documents for {who} in this date range (model `{html.escape(active[1])}`)."
    else:
        message = (f"{int(series['documents'].sum()):,} scored documents for {who}, "
                   f"{len(alerts)} open alert(s); model `{html.escape(active[1])}`.")
    return choices, message, sentiment_figure(series, alerts, "No scored documents in this range"), alerts


# ---------------------------------------------------------------------- app


def build_app(cfg: DictConfig, reply_service: ReplyService | None = None) -> gr.Blocks:
    """The two-tab Blocks app; without a service the Chat tab explains that no reply model is active."""
    url = db_url(cfg)

    def respond(message: str, history: list, show_details: bool, chat_state: dict | None):
        """Stream the bot's reply to `message` (already escaped by the textbox) as growing prefixes."""
        state = dict(chat_state or {})
        if reply_service is None:
            yield to_display(UNAVAILABLE_TEXT), state
            return
        try:
            reply = reply_service.reply(state.get("session_id"), from_display(message or ""))
        except Exception:  # noqa: BLE001 - the user gets an apology, the log gets the traceback
            log.exception("chat reply failed")
            yield to_display(ERROR_TEXT), state
            return
        ordinal = sum(1 for item in history or [] if _role(item) == "assistant")
        state["session_id"] = reply.session_id
        state["message_ids"] = list(state.get("message_ids", []))[:ordinal] + [reply.message_id]
        text = reply.text + (f"\n\n{details_line(reply)}" if show_details else "")
        shown = to_display(text)
        for prefix in _chunks(shown):
            yield prefix, state
            if prefix != shown:
                time.sleep(STREAM_DELAY_S)

    def record_feedback(history: list, chat_state: dict | None, data: gr.LikeData) -> None:
        """Store a thumbs up/down on the bot message it was given to."""
        if reply_service is None or not isinstance(data.liked, bool):
            return
        message_id = bot_message_id(history or [], data.index, (chat_state or {}).get("message_ids", []))
        if message_id is not None:
            reply_service.feedback(message_id, 1 if data.liked else -1)

    def new_conversation() -> dict:
        """A cleared chat starts a new session (new context, new chat_sessions row)."""
        return {}

    def refresh_monitor(entity: str | None, start: Any, end: Any):
        """Reload entity choices, status, plot and alerts table."""
        choices, message, figure, alerts = monitor_view(url, entity, start, end)
        value = entity if entity in choices else ALL_ENTITIES
        return gr.Dropdown(choices=[ALL_ENTITIES, *choices], value=value), message, figure, alerts

    with gr.Blocks(title="NLP Suite") as app:
        gr.Markdown("# NLP Suite")
        with gr.Tab("Chat"):
            if reply_service is None:
                gr.Markdown(f"**{UNAVAILABLE_TEXT}**")
            chat_state = gr.State({})
            show_details = gr.Checkbox(False, label="Show details (intent, confidence, KB entry used)")
            chatbot = gr.Chatbot(label="Support chat", height=460, render_markdown=False, sanitize_html=True,
                                 allow_tags=False, feedback_options=("Like", "Dislike"))
            gr.ChatInterface(
                respond,
                chatbot=chatbot,
                textbox=InertTextbox(placeholder="Ask a question, e.g. How do I reset my password?",
                                     show_label=False, lines=1),
                additional_inputs=[show_details, chat_state],
                additional_outputs=[chat_state],
                flagging_mode="never",
                fill_height=False,
            )
            chatbot.like(record_feedback, [chatbot, chat_state], None, api_visibility="undocumented")
            chatbot.clear(new_conversation, None, chat_state, api_visibility="undocumented")
        with gr.Tab("Monitor"):
            status = gr.Markdown("Loading…")
            with gr.Row():
                entity = gr.Dropdown([ALL_ENTITIES], value=ALL_ENTITIES, label="Entity", allow_custom_value=False)
                start = gr.DateTime(include_time=False, type="datetime", label="From (UTC day)")
                end = gr.DateTime(include_time=False, type="datetime", label="To (UTC day)")
                refresh = gr.Button("Refresh", variant="primary")
            plot = gr.Plot(label="Negative share per day (red ▲ = alert)")
            table = gr.Dataframe(pd.DataFrame(columns=queries.ALERT_COLUMNS), label="Open alerts", interactive=False,
                                 wrap=True)
            monitor_io = dict(fn=refresh_monitor, inputs=[entity, start, end], outputs=[entity, status, plot, table])
            refresh.click(**monitor_io, api_name="refresh_monitor")
            app.load(**monitor_io, api_visibility="undocumented")
    return app


def launch(cfg: DictConfig, *, block: bool = True) -> gr.Blocks:
    """Load the active reply model once, build the app, enable the queue and serve on cfg.ui.host:cfg.ui.port.

    With `block=False` it returns right after the server starts (call `app.close()` to stop it).
    """
    try:
        service = ReplyService.from_config(cfg)
    except (RegistryError, OSError, ValueError, SQLAlchemyError) as error:
        log.warning("chat disabled: %s", error)
        service = None
    app = build_app(cfg, service)
    app.queue(default_concurrency_limit=int(cfg.ui.concurrency))
    app.launch(server_name=str(cfg.ui.host), server_port=int(cfg.ui.port), prevent_thread_lock=not block,
               show_error=True, quiet=True, auth=parse_auth(cfg.ui.get("auth")))
    return app


def parse_auth(spec: str | None) -> list[tuple[str, str]] | None:
    """'user:password,user2:password2' (from NLP_SUITE_UI_AUTH) as Gradio login pairs; None = no login."""
    if not spec:
        return None
    pairs = []
    for item in str(spec).split(","):
        user, separator, password = item.strip().partition(":")
        if not (user and separator and password):
            raise ValueError(f"ui.auth entry {item.strip()!r} is not 'user:password'")
        pairs.append((user, password))
    return pairs
