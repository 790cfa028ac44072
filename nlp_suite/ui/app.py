"""The Gradio app: **Chat** (customer-service bot), **Monitor** (entity sentiment over time and open alerts) and
**Recommendations** (a user's history and latest recommendations with score components; cold-start reach of a
new item).

`launch(cfg)` loads the active reply model and the active recommendation model once through the registry, builds
the `ReplyService` and the `Recommender`, enables the queue with `cfg.ui.concurrency` workers per event and serves
on `cfg.ui.host:cfg.ui.port`. `build_app(cfg, service, recommender)` only wires components; the logic lives in
`nlp_suite.chat`, `nlp_suite.recommend` and `nlp_suite.ui.queries`, and the tabs' view functions
(`monitor_view`, `recommendations_view`, `user_view`, `reach_view`) are plain functions that never raise.

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
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Iterator  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

from nlp_suite.chat.service import BotReply, ReplyService  # noqa: E402
from nlp_suite.config import db_url  # noqa: E402
from nlp_suite.paths import resolve  # noqa: E402
from nlp_suite.recommend.batch import ItemVectorCache, users_for_new_item  # noqa: E402
from nlp_suite.storage.session import session_scope  # noqa: E402
from nlp_suite.training import registry  # noqa: E402
from nlp_suite.training.checkpoint import CheckpointError, LoadedModel  # noqa: E402
from nlp_suite.training.registry import RegistryError  # noqa: E402
from nlp_suite.ui import queries  # noqa: E402

log = logging.getLogger(__name__)

ALL_ENTITIES = "All entities"
STREAM_WORDS = 3  # words in the first streamed chunk
STREAM_GROWTH = 4  # each later chunk multiplies the prefix by this (few events per reply: Gradio costs per event)
STREAM_DELAY_S = 0.02  # default pause between chunks (ui.stream_delay_ms), so the reply visibly streams
ERROR_TEXT = "Sorry, something went wrong on our side. Please try again in a moment."
UNAVAILABLE_TEXT = ("The chatbot is not available: no active reply model. "
                    "Train one with `nlp-suite train task=reply` and restart the app.")
NO_RECOMMENDER_TEXT = ("No recommendation model is loaded: train one with `nlp-suite train task=recommend` "
                       "and restart the app.")
NO_RUN_TEXT = "No recommendation run yet: run `nlp-suite recommend` (the nightly batch) to fill this tab."
REACH_COLUMNS = ["user_id", "would_rank", "z", "score", "history"]
REACH_USERS = 10  # users listed for a new item
MAX_ITEM_CHARS = 5000  # longer new-item texts get a friendly refusal (same bound as ingestion)


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


def bot_message_id(history: list[Any], index: Any, message_ids: list[int | None]) -> int | None:
    """chat_messages id of the chatbot message at `index` (the n-th assistant message ↔ the n-th stored id)."""
    if isinstance(index, (list, tuple)):
        index = index[0]
    if not isinstance(index, int) or not 0 <= index < len(history) or _role(history[index]) != "assistant":
        return None
    ordinal = sum(1 for message in history[:index] if _role(message) == "assistant")
    return message_ids[ordinal] if ordinal < len(message_ids) else None


def _logged_id(reply: BotReply) -> int | None:
    """The bot message's id once the log writer committed it; None (no feedback possible) if the write failed."""
    try:
        return reply.logged()
    except Exception:  # noqa: BLE001 - the reply was shown; the writer logged why it could not store it
        log.exception("chat turn of session %s not logged", reply.session_id)
        return None


def details_line(reply: BotReply) -> str:
    """The "show details" footer: kind, intent, confidence, KB entry used, latency."""
    confidence = f"{reply.confidence:.2f}" if reply.confidence is not None else "n/a"
    parts = [f"kind: {reply.kind}", f"intent: {reply.intent or 'none'}", f"confidence: {confidence}",
             f"KB entry: {reply.kb_entry or 'none'}", f"{reply.latency_ms:.0f} ms"]
    if reply.used_context:
        parts.append("used earlier turns")
    return " · ".join(parts)


def _chunks(shown: str) -> Iterator[str]:
    """Growing prefixes of `shown`: the first few words at once, then the prefix grows STREAM_GROWTH-fold (never
    splitting an entity).

    Every chunk is a server-sent event, and Gradio spends several ms of CPU per event (worker-thread hop, diff,
    SSE write), so a fixed step costs O(words) events per reply; geometric growth keeps it to ~log(words) events
    (a 100-word answer: 4 instead of 34), which is what lets many users chat at once on two cores.
    """
    pieces = re.findall(r"\S+\s*", shown) or [shown]
    end = STREAM_WORDS
    while True:
        yield "".join(pieces[:end])
        if end >= len(pieces):
            return
        end *= STREAM_GROWTH


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


# ---------------------------------------------------------------------- recommendation helpers


@dataclass
class Recommender:
    """The active recommendation model, loaded once per app, with one item-vector cache for all requests."""

    version_id: int
    name: str
    loaded: LoadedModel
    cache: ItemVectorCache
    history: int = 10
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Recommender":
        """Load the active `recommend` version (raises RegistryError when there is none).

        The cache reads the vectors the nightly batch persisted (`recommend.cache_dir`), so the first cold-start
        request does not encode the whole catalog; the app never writes it back (the batch owns those files).
        """
        with session_scope(db_url(cfg)) as session:
            version = registry.active_version(session, "recommend")
            if version is None:
                raise RegistryError("no active recommend model; train one with `nlp-suite train task=recommend`")
            version_id, name = version.id, version.name
            loaded = registry.load_version(version)
        cache_dir = cfg.recommend.get("cache_dir")
        cache = ItemVectorCache(loaded, resolve(cache_dir) if cache_dir else None, model_version_id=version_id)
        return cls(version_id, name, loaded, cache, int(cfg.recommend.history))

    def reach(self, url: str, text: str, top_n: int = REACH_USERS) -> list[dict[str, Any]]:
        """The users a new item would reach (serialised: the shared cache and model are not worth racing on)."""
        with self.lock:
            return users_for_new_item(url, self.loaded, text, top_n, history=self.history, cache=self.cache)


def load_recommender(cfg: DictConfig) -> Recommender | None:
    """The app's recommender, or None (logged) when no usable recommendation model is active."""
    try:
        return Recommender.from_config(cfg)
    except (RegistryError, CheckpointError, OSError, ValueError, SQLAlchemyError) as error:
        log.warning("cold-start recommendations disabled: %s", error)
        return None


def components_figure(recommendations: pd.DataFrame, message: str = "") -> Figure:
    """Grouped bars of the score components per recommended item (by rank), the final score as a black dot."""
    figure = Figure(figsize=(9, 3.2), layout="constrained")
    axes = figure.add_subplot()
    axes.set_ylabel("score")
    if recommendations.empty:
        axes.text(0.5, 0.5, message or "No recommendations", ha="center", va="center", transform=axes.transAxes)
        axes.set_xticks([])
        return figure
    positions = list(range(len(recommendations)))
    width = 0.8 / len(queries.COMPONENTS)
    for offset, name in enumerate(queries.COMPONENTS):
        axes.bar([x + (offset - 1) * width for x in positions], recommendations[name], width, label=name)
    axes.scatter(positions, recommendations["final"], color="black", marker="D", s=18, zorder=3, label="final")
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set_xticks(positions, [f"#{rank}" for rank in recommendations["rank"]])
    axes.set_xlabel("recommendation rank")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")  # outside: never hides a bar
    axes.grid(axis="y", alpha=0.3)
    return figure


def _empty_user_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.DataFrame(columns=queries.HISTORY_COLUMNS), pd.DataFrame(columns=queries.RECOMMENDATION_COLUMNS)


def _run_line(run: dict[str, Any]) -> str:
    """'run 7 (model `recommend-…`, finished 2024-07-01 02:00 UTC)'."""
    model = f"model `{html.escape(run['model'])}`" if run.get("model") else "no registered model"
    finished = pd.Timestamp(run["finished_at"]).strftime("%Y-%m-%d %H:%M UTC") if run.get("finished_at") else "?"
    return f"run {run['id']} ({model}, finished {finished})"


def recommendations_view(url: str) -> tuple[list[str], str]:
    """User choices (those of the newest complete run) and a status line for the Recommendations tab. Never raises."""
    try:
        run = queries.latest_recommendation_run(url)
        users = queries.recommended_users(url) if run else []
    except (SQLAlchemyError, ValueError, TypeError) as error:
        log.exception("recommendations query failed")
        return [], f"The recommendations could not be read from the database: {html.escape(type(error).__name__)}."
    if run is None:
        return [], NO_RUN_TEXT
    return users, f"{len(users):,} users with recommendations in {_run_line(run)}. Pick a user."


def user_view(url: str, user: str | None) -> tuple[str, pd.DataFrame, pd.DataFrame, Figure]:
    """Status, recent history, latest recommendations (with components) and their bar plot for one user.

    Never raises: an unknown user, no run or an unreadable database give empty tables and a message.
    """
    history, recommendations = _empty_user_frames()
    if not user:
        return "Pick a user to see their history and recommendations.", history, recommendations, \
            components_figure(recommendations, "No user selected")
    who = html.escape(user)
    try:
        run = queries.latest_recommendation_run(url)
        history = queries.user_history(url, user)
        recommendations = queries.user_recommendations(url, user)
    except (SQLAlchemyError, ValueError, TypeError) as error:
        log.exception("recommendations query failed")
        history, recommendations = _empty_user_frames()
        return (f"The recommendations could not be read from the database: {html.escape(type(error).__name__)}.",
                history, recommendations, components_figure(recommendations, "Database unavailable"))
    if run is None:
        message = NO_RUN_TEXT
    elif recommendations.empty:
        message = f"No recommendations for user `{who}` in {_run_line(run)}."
    else:
        message = (f"{len(recommendations)} recommendations for user `{who}` from {_run_line(run)}; "
                   f"{len(history)} most recent interactions shown.")
    return message, history, recommendations, components_figure(recommendations, "No recommendations")


def reach_view(url: str, recommender: Recommender | None, text: str | None, top_n: int = REACH_USERS
               ) -> tuple[str, pd.DataFrame]:
    """Cold start: the users a new item (typed as text) would reach, best first, with a status line. Never raises."""
    empty = pd.DataFrame(columns=REACH_COLUMNS)
    if recommender is None:
        return NO_RECOMMENDER_TEXT, empty
    text = (text or "").strip()
    if not text:
        return "Type the new item's text (title, tags, description) to see which users it would reach.", empty
    if len(text) > MAX_ITEM_CHARS:
        return f"That text is too long ({len(text):,} characters; at most {MAX_ITEM_CHARS:,}).", empty
    try:
        reach = recommender.reach(url, text, top_n)
    except (SQLAlchemyError, ValueError, TypeError, RuntimeError) as error:
        log.exception("cold-start reach failed")
        return f"The new item could not be scored: {html.escape(type(error).__name__)}.", empty
    if not reach:
        return "No users yet: load a catalog with interactions first.", empty
    frame = pd.DataFrame(reach, columns=REACH_COLUMNS)
    return (f"The {len(frame)} users this item would reach best (model `{html.escape(recommender.name)}`). "
            "`would_rank`: where it would land among the items they have not seen; `z`: its score against "
            "their scores over the catalog."), frame


# ---------------------------------------------------------------------- app


def build_app(cfg: DictConfig, reply_service: ReplyService | None = None,
              recommender: Recommender | None = None) -> gr.Blocks:
    """The three-tab Blocks app; without a service the Chat tab explains that no reply model is active, without a
    recommender the Recommendations tab still shows the stored runs and explains that cold start is off."""
    url = db_url(cfg)
    delay_ms = cfg.ui.get("stream_delay_ms")
    stream_delay = STREAM_DELAY_S if delay_ms is None else max(0.0, float(delay_ms) / 1000)

    def respond(message: str, history: list, show_details: bool, chat_state: dict | None):
        """Stream the bot's reply to `message` (already escaped by the textbox) as growing prefixes."""
        state = dict(chat_state or {})
        if reply_service is None:
            yield to_display(UNAVAILABLE_TEXT), state
            return
        try:
            # The turn is committed by the log writer while the first words stream; ids are needed only at the end.
            reply = reply_service.reply(state.get("session_id"), from_display(message or ""), wait_for_log=False)
        except Exception:  # noqa: BLE001 - the user gets an apology, the log gets the traceback
            log.exception("chat reply failed")
            yield to_display(ERROR_TEXT), state
            return
        ordinal = sum(1 for item in history or [] if _role(item) == "assistant")
        state["session_id"] = reply.session_id
        text = reply.text + (f"\n\n{details_line(reply)}" if show_details else "")
        shown = to_display(text)
        for prefix in _chunks(shown):
            if prefix == shown:  # the last event carries the stored message id (feedback needs it)
                state["message_ids"] = list(state.get("message_ids", []))[:ordinal] + [_logged_id(reply)]
            yield prefix, state
            if prefix != shown:
                time.sleep(stream_delay)

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

    def refresh_recommendations(user: str | None):
        """Reload the user choices and status; keep the selected user (else the first one) and show them."""
        choices, message = recommendations_view(url)
        value = user if user in choices else (choices[0] if choices else None)
        _, history, recommendations, figure = user_view(url, value)
        return gr.Dropdown(choices=choices, value=value), message, history, recommendations, figure

    def show_user(user: str | None):
        """One user's history, recommendations and components plot."""
        return user_view(url, user)

    def reach_new_item(text: str | None):
        """Which users a new item would reach."""
        return reach_view(url, recommender, text)

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
        with gr.Tab("Recommendations"):
            rec_status = gr.Markdown("Loading…")
            with gr.Row():
                user = gr.Dropdown([], value=None, label="User (type to search)", filterable=True,
                                   allow_custom_value=False)
                rec_refresh = gr.Button("Refresh", variant="primary")
            user_status = gr.Markdown()
            with gr.Row():
                history_table = gr.Dataframe(pd.DataFrame(columns=queries.HISTORY_COLUMNS), label="Recent history",
                                             interactive=False, wrap=True)
                rec_table = gr.Dataframe(pd.DataFrame(columns=queries.RECOMMENDATION_COLUMNS), interactive=False,
                                         label="Latest recommendations (final = model + popularity + freshness)",
                                         wrap=True)
            components_plot = gr.Plot(label="Score components per recommended item")
            gr.Markdown("### Cold start: which users would a new item reach?")
            if recommender is None:
                gr.Markdown(f"**{NO_RECOMMENDER_TEXT}**")
            new_item = gr.Textbox(label="New item text", lines=3, max_length=MAX_ITEM_CHARS,
                                  placeholder="e.g. Sourdough starter kit. baking, bread. Everything to bake at home.")
            reach_button = gr.Button("Find users")
            reach_status = gr.Markdown()
            reach_table = gr.Dataframe(pd.DataFrame(columns=REACH_COLUMNS), label="Users it would reach",
                                       interactive=False)
            rec_io = dict(fn=refresh_recommendations, inputs=[user],
                          outputs=[user, rec_status, history_table, rec_table, components_plot])
            rec_refresh.click(**rec_io, api_name="refresh_recommendations")
            app.load(**rec_io, api_visibility="undocumented")
            # .input, not .change: a refresh that sets the value must not query the same user twice.
            user.input(show_user, [user], [user_status, history_table, rec_table, components_plot],
                       api_name="user_recommendations")
            reach_io = dict(fn=reach_new_item, inputs=[new_item], outputs=[reach_status, reach_table])
            reach_button.click(**reach_io, api_name="reach_new_item")
            new_item.submit(**reach_io, api_visibility="undocumented")
    return app


def launch(cfg: DictConfig, *, block: bool = True) -> gr.Blocks:
    """Load the active reply and recommendation models once, build the app, enable the queue and serve on
    cfg.ui.host:cfg.ui.port.

    With `block=False` it returns right after the server starts (call `app.close()` to stop it).
    """
    threads = cfg.ui.get("torch_threads")
    if threads:  # e.g. to leave cores to other services on the host (1 vs torch's default: no gain measured on 2 cores)
        import torch

        torch.set_num_threads(int(threads))
    try:
        service = ReplyService.from_config(cfg)
    except (RegistryError, OSError, ValueError, SQLAlchemyError) as error:
        log.warning("chat disabled: %s", error)
        service = None
    app = build_app(cfg, service, load_recommender(cfg))
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
