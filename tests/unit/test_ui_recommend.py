"""Recommendations tab: view functions on the sample-data pipeline (no browser), and the tab through gradio_client."""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported anywhere
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sqlalchemy import select  # noqa: E402

from nlp_suite import pipeline  # noqa: E402
from nlp_suite.config import db_url, load_config  # noqa: E402
from nlp_suite.storage import migrate  # noqa: E402
from nlp_suite.storage.models import Interaction, User  # noqa: E402
from nlp_suite.storage.session import session_scope  # noqa: E402
from nlp_suite.training import registry  # noqa: E402
from nlp_suite.ui import queries  # noqa: E402
from nlp_suite.ui.app import (  # noqa: E402
    NO_RECOMMENDER_TEXT, NO_RUN_TEXT, REACH_COLUMNS, Recommender, launch, reach_view, recommendations_view,
    user_view)
from tests.helpers import free_port, train_single_threaded  # noqa: E402

TOP_K = 5
TINY = ["task=recommend", "train.epochs=1", "model.vocab_size=300", "model.embed_dim=16", "model.hidden_dim=16",
        "model.max_len=24", "task.user_dim=16", "train.progress=false", f"recommend.top_k={TOP_K}"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample catalog through the pipeline: migrate, load, train a tiny recommend model, one nightly run."""
    var = tmp_path_factory.mktemp("ui-recommend")
    cfg = load_config([f"paths.var={var}", f"ui.port={free_port()}", *TINY])
    pipeline.ensure_sample_data(cfg)
    pipeline.ensure_database(cfg)
    pipeline.ingest_catalog(cfg)
    train_single_threaded(cfg)
    summary = pipeline.recommend(cfg)
    return cfg, db_url(cfg), summary


@pytest.fixture(scope="module")
def recommender(sample):
    return Recommender.from_config(sample[0])


def test_recommendations_view_lists_the_users_of_the_latest_run(sample):
    _, url, summary = sample
    users, message = recommendations_view(url)
    assert len(users) == summary.users and users == sorted(users)
    assert f"run {summary.run_id}" in message and "model `recommend" in message


def test_user_view_shows_history_recommendations_and_components(sample):
    _, url, summary = sample
    user = recommendations_view(url)[0][0]
    message, history, recommendations, figure = user_view(url, user)
    assert f"{TOP_K} recommendations for user `{user}`" in message
    assert list(history.columns) == queries.HISTORY_COLUMNS and 0 < len(history) <= queries.HISTORY_ROWS
    assert history["occurred_at"].is_monotonic_decreasing
    with session_scope(url) as session:
        events = session.scalars(select(Interaction.event).join(User).where(User.external_id == user)
                                 .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())).all()
    assert history["event"].tolist() == events[:queries.HISTORY_ROWS]

    assert list(recommendations.columns) == queries.RECOMMENDATION_COLUMNS
    assert recommendations["rank"].tolist() == list(range(1, TOP_K + 1))
    parts = recommendations[queries.COMPONENTS].sum(axis=1)
    assert parts.tolist() == pytest.approx(recommendations["final"].tolist())
    assert not set(recommendations["item_id"]) & set(history["item_id"])  # seen items are never recommended
    assert isinstance(figure, Figure)
    import gradio as gr

    assert gr.Plot().postprocess(figure).plot.startswith("data:image/")  # what the tab sends


def test_user_view_never_raises(sample, tmp_path):
    url = sample[1]
    message, history, recommendations, figure = user_view(url, "nobody")
    assert "No recommendations for user `nobody`" in message and history.empty and recommendations.empty
    assert "Pick a user" in user_view(url, None)[0] and isinstance(figure, Figure)
    assert "&lt;b&gt;" in user_view(url, "<b>")[0]  # user-supplied names are escaped in the Markdown

    empty = f"sqlite:///{tmp_path}/fresh.db"
    migrate.upgrade(empty)
    assert recommendations_view(empty) == ([], NO_RUN_TEXT)
    message, history, recommendations, figure = user_view(empty, "u001")
    assert message == NO_RUN_TEXT and list(recommendations.columns) == queries.RECOMMENDATION_COLUMNS
    broken = f"sqlite:///{tmp_path}/no_tables.db"
    assert "could not be read" in recommendations_view(broken)[1]
    assert "could not be read" in user_view(broken, "u001")[0]


def test_reach_view_cold_start(sample, recommender):
    url = sample[1]
    message, reach = reach_view(url, recommender, "Sourdough starter kit. baking, bread. Bake bread at home.")
    assert "users this item would reach" in message and list(reach.columns) == REACH_COLUMNS
    assert len(reach) == 10 and reach["z"].is_monotonic_decreasing and (reach["would_rank"] >= 1).all()
    assert reach["user_id"].isin(recommendations_view(url)[0]).all()
    # The catalog's vectors came from the nightly run's persisted cache: only the app's own calls encode.
    assert recommender.cache.computed == 0 and recommender.cache.reused == sample[2].items

    message, reach = reach_view(url, None, "anything")  # the app without a recommendation model
    assert message == NO_RECOMMENDER_TEXT and list(reach.columns) == REACH_COLUMNS and reach.empty
    assert "Type the new item" in reach_view(url, recommender, "   ")[0]
    assert "too long" in reach_view(url, recommender, "x" * 6000)[0]
    message, reach = reach_view(f"sqlite:///{sample[0].paths.var}/missing/no.db", recommender, "text")
    assert "could not be scored" in message and reach.empty


def test_tab_through_gradio_client_loads_the_model_once(sample, monkeypatch):
    cfg, url, summary = sample
    loads = []
    original = registry.load_version

    def counting_load_version(version, *args, **kwargs):
        loads.append(version.task)
        return original(version, *args, **kwargs)

    monkeypatch.setattr(registry, "load_version", counting_load_version)
    app = launch(cfg, block=False)  # no reply model in this database: the Chat tab explains, the rest works
    try:
        client = Client(f"http://127.0.0.1:{cfg.ui.port}/", verbose=False)
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert {"/respond", "/refresh_monitor", "/refresh_recommendations", "/reach_new_item"} <= set(endpoints)
        user, message, history, recommendations, _ = client.predict(None, api_name="/refresh_recommendations")
        users = recommendations_view(url)[0]
        assert user["value"] == users[0] and [c[0] for c in user["choices"]] == users  # first user shown
        assert f"run {summary.run_id}" in message
        assert history["headers"] == queries.HISTORY_COLUMNS and len(recommendations["data"]) == TOP_K
        for text in ("Marathon training plan. running.", "Jazz piano course. music."):
            message, reach = client.predict(text, api_name="/reach_new_item")
            assert reach["headers"] == REACH_COLUMNS and len(reach["data"]) == 10
        assert loads == ["recommend"]  # once, at startup, not per request
    finally:
        app.close()
