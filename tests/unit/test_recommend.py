"""Recommendation: catalog loading, two-tower shapes and training, batch runs into SQL (atomic, idempotent)."""
from __future__ import annotations

import csv
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sqlalchemy import func, select

from nlp_suite.config import db_url, load_config
from nlp_suite.data.catalog import (ReadError, item_text, load_catalog, movielens_frames, positive_sequences,
                                    read_interactions, read_items)
from nlp_suite.models.encoder import Encoder, EncoderConfig
from nlp_suite.recommend import batch
from nlp_suite.recommend.batch import (ItemVectorCache, latest_recommendations, pick_top, prune_runs,
                                       recommend_all, users_for_new_item)
from nlp_suite.storage import migrate
from nlp_suite.storage.models import Interaction, Item, ModelVersion, Recommendation, RecommendationRun, User
from nlp_suite.storage.session import session_scope
from nlp_suite.tasks.recommend import RecommendTask, TwoTowerModel, encode_items, encode_users
from nlp_suite.text.tokenizer import TextTokenizer
from nlp_suite.training.checkpoint import load_checkpoint
from nlp_suite.training.train import train

MOVIELENS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "movielens_latest_small"

CATEGORIES = {
    "travel": ["lisbon", "kyoto", "iceland", "patagonia", "alps", "morocco"],
    "cooking": ["pasta", "sourdough", "curry", "pizza", "noodles", "salad"],
    "music": ["guitar", "piano", "vinyl", "jazz", "chords", "songwriting"],
    "fitness": ["marathon", "yoga", "strength", "cycling", "mobility", "cardio"],
}
EVENTS, EVENT_WEIGHTS = ("view", "click", "like", "purchase"), (0.4, 0.3, 0.2, 0.1)
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2024, 7, 1, tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def catalog_rows(users: int = 24, per_category: int = 7, seed: int = 0):
    """Items in 4 categories (the last of each is fresh, never interacted with) and users with preferences."""
    rng = random.Random(seed)
    items = []
    for category, words in CATEGORIES.items():
        for i in range(per_category):
            topic = words[i % len(words)]
            fresh = i == per_category - 1
            created = NOW - timedelta(days=2) if fresh else START - timedelta(days=rng.randint(1, 90))
            items.append({"id": f"{category[:2]}{i}", "title": f"{topic.title()} guide number {i} for {category}",
                          "description": f"All about {topic} and {rng.choice(words)} in {category}.",
                          "tags": "|".join([category, topic]), "category": category, "created_at": iso(created)})
    old = {c: [it["id"] for it in items if it["category"] == c and it["created_at"] < iso(NOW - timedelta(days=10))]
           for c in CATEGORIES}
    interactions = []
    for user in range(1, users + 1):
        preferred = rng.sample(sorted(CATEGORIES), rng.choice((1, 2)))
        for _ in range(rng.randint(10, 16)):
            category = rng.choice(preferred) if rng.random() < 0.9 else rng.choice(sorted(CATEGORIES))
            when = START + timedelta(seconds=rng.randrange(150 * 86400))
            interactions.append({"user_id": f"u{user:02d}", "item_id": rng.choice(old[category]),
                                 "event": rng.choices(EVENTS, EVENT_WEIGHTS)[0], "value": "1.0",
                                 "occurred_at": iso(when)})
    return items, interactions


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_catalog(folder: Path, **kwargs) -> tuple[Path, Path]:
    items, interactions = catalog_rows(**kwargs)
    return write_csv(folder / "items.csv", items), write_csv(folder / "interactions.csv", interactions)


def count(url: str, model) -> int:
    with session_scope(url) as session:
        return session.scalar(select(func.count()).select_from(model))


# --- catalog ---------------------------------------------------------------------------------------------------

def test_load_catalog_is_idempotent_and_updates_changed_items(tmp_path, sqlite_url):
    migrate.upgrade(sqlite_url)
    items_csv, interactions_csv = write_catalog(tmp_path)
    first = load_catalog(sqlite_url, items_csv, interactions_csv)
    assert first.items_inserted == first.items_read == 28
    assert first.users_inserted == 24
    assert first.interactions_inserted == first.interactions_read > 0
    assert first.bad_rows == 0 and 0 < first.positives < first.interactions_read
    again = load_catalog(sqlite_url, items_csv, interactions_csv)
    assert (again.items_inserted, again.items_updated, again.users_inserted,
            again.interactions_inserted) == (0, 0, 0, 0)
    assert count(sqlite_url, Interaction) == first.interactions_inserted

    items, _ = catalog_rows()
    items[0]["title"] = "A brand new title"
    write_csv(items_csv, items)
    changed = load_catalog(sqlite_url, items_csv, interactions_csv)
    assert (changed.items_inserted, changed.items_updated, changed.interactions_inserted) == (0, 1, 0)
    with session_scope(sqlite_url) as session:
        assert session.scalar(select(Item.title).where(Item.external_id == items[0]["id"])) == "A brand new title"
    assert "items updated" in str(changed.as_table().columns[0]._cells)


def test_bad_rows_are_named_skipped_and_counted(tmp_path, sqlite_url):
    migrate.upgrade(sqlite_url)
    items_csv = tmp_path / "items.csv"
    items_csv.write_text(
        "id,title,description,tags,category,created_at\n"
        "a1,Good item,desc,x|y,cat,2024-01-01T00:00:00Z\n"
        "a2,,no title,x,cat,2024-01-01T00:00:00Z\n"              # row 2: empty title
        "a3,Bad date,desc,x,cat,yesterday\n"                        # row 3: unparsable created_at
        "a1,Duplicate,desc,x,cat,2024-01-01T00:00:00Z\n"          # row 4: duplicate id
        "a4,Too,many,fields,here,2024-01-01T00:00:00Z,extra\n"    # row 5: wrong field count
        "a5,Naive time is UTC,desc,,cat,2024-02-01 10:00:00\n",   # row 6: fine
        encoding="utf-8")
    interactions_csv = tmp_path / "interactions.csv"
    interactions_csv.write_text(
        "user_id,item_id,event,value,occurred_at\n"
        "u1,a1,click,1,2024-03-01T00:00:00Z\n"
        "u1,zz,click,1,2024-03-01T00:00:00Z\n"      # row 2: unknown item
        "u1,a5,click,abc,2024-03-01T00:00:00Z\n"    # row 3: value not a number
        ",a5,click,1,2024-03-01T00:00:00Z\n"        # row 4: empty user
        "u2,a5,like,,not a time\n"                  # row 5: bad timestamp
        "u2,a5,LIKE,,2024-03-02T00:00:00+02:00\n",  # row 6: fine (event lower-cased, value 1.0)
        encoding="utf-8")
    summary = load_catalog(sqlite_url, items_csv, interactions_csv)
    messages = [str(error) for error in summary.errors]
    assert summary.bad_rows == 8, messages
    assert messages[0].startswith("items.csv row 2")  # in file order
    expected = ["items.csv row 2, field 'title'", "items.csv row 3, field 'created_at'", "items.csv row 4, field 'id'",
                "items.csv row 5: expected 6 fields", "interactions.csv row 2, field 'item_id'",
                "interactions.csv row 3, field 'value'", "interactions.csv row 4, field 'user_id'",
                "interactions.csv row 5, field 'occurred_at'"]
    for prefix in expected:
        assert any(message.startswith(prefix) for message in messages), (prefix, messages)
    assert "'yesterday'" in next(m for m in messages if "created_at" in m)
    assert (summary.items_inserted, summary.users_inserted, summary.interactions_inserted) == (2, 2, 2)
    with session_scope(sqlite_url) as session:
        row = session.execute(select(Interaction.event, Interaction.value, Interaction.occurred_at)
                              .join(User).where(User.external_id == "u2")).one()
        created = session.scalar(select(Item.created_at).where(Item.external_id == "a5"))
    assert row == ("like", 1.0, datetime(2024, 3, 1, 22, tzinfo=timezone.utc))
    assert created == datetime(2024, 2, 1, 10, tzinfo=timezone.utc)


def test_whole_file_problems_raise_before_writing(tmp_path, sqlite_url):
    migrate.upgrade(sqlite_url)
    items_csv, interactions_csv = write_catalog(tmp_path)
    (tmp_path / "no_title.csv").write_text("id,description\n1,x\n", encoding="utf-8")
    with pytest.raises(ReadError, match="title"):
        load_catalog(sqlite_url, tmp_path / "no_title.csv", interactions_csv)
    with pytest.raises(ReadError, match="no such file"):
        load_catalog(sqlite_url, items_csv, tmp_path / "missing.csv")
    assert count(sqlite_url, Item) == 0


def test_parquet_and_dataframes_read_like_csv(tmp_path):
    items_csv, interactions_csv = write_catalog(tmp_path)
    pd.read_csv(items_csv, dtype=str, keep_default_na=False).to_parquet(tmp_path / "items.parquet")
    pd.read_csv(interactions_csv, dtype=str, keep_default_na=False).to_parquet(tmp_path / "interactions.parquet")
    from_csv, _ = read_items(items_csv)
    from_parquet, errors = read_items(tmp_path / "items.parquet")
    assert not errors
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
    csv_events, _ = read_interactions(interactions_csv, set(from_csv["external_id"]))
    parquet_events, _ = read_interactions(tmp_path / "interactions.parquet", set(from_csv["external_id"]))
    frame_events, _ = read_interactions(pd.read_csv(interactions_csv, dtype=str, keep_default_na=False))
    pd.testing.assert_frame_equal(csv_events, parquet_events, check_dtype=False)
    assert frame_events[["user_id", "item_id", "event"]].equals(csv_events[["user_id", "item_id", "event"]])


def test_positive_sequences_are_time_ordered_and_deduplicated():
    frame = pd.DataFrame({
        "user_id": ["u", "u", "u", "u", "v"], "item_id": ["b", "a", "b", "c", "a"],
        "event": ["click", "purchase", "like", "view", "rating"], "value": [1.0, 1.0, 1.0, 1.0, 3.5],
        "occurred_at": pd.to_datetime(["2024-01-03", "2024-01-01", "2024-01-05", "2024-01-02", "2024-01-01"],
                                      utc=True)})
    assert positive_sequences(frame) == {"u": ["a", "b"]}  # view is not positive, rating 3.5 < 4
    assert positive_sequences(frame, min_rating=3.5) == {"u": ["a", "b"], "v": ["a"]}
    assert item_text("Title", "x|y", "Desc.") == "Title. x, y. Desc."


@pytest.mark.realdata
def test_movielens_frames():
    if not MOVIELENS.is_dir():
        pytest.skip(f"MovieLens not found at {MOVIELENS}")
    items, interactions = movielens_frames(MOVIELENS)
    assert len(items) == 9742 and len(interactions) == 100836
    assert set(interactions["event"]) == {"rating"}
    toy_story = items.set_index("id").loc["1"]
    assert toy_story["title"] == "Toy Story (1995)" and "Animation" in toy_story["tags"].split("|")
    assert "pixar" in toy_story["description"]
    valid_items, item_errors = read_items(items)
    valid_events, event_errors = read_interactions(interactions, set(valid_items["external_id"]))
    assert not item_errors and not event_errors
    assert 0.45 < (valid_events["value"] >= 4).mean() < 0.5  # SOURCE.md: 48.2% of ratings are >= 4


# --- task ------------------------------------------------------------------------------------------------------

def tiny_task_and_model(tmp_path, user_dim: int = 8, **options):
    items_csv, interactions_csv = write_catalog(tmp_path)
    task = RecommendTask(**{"user_dim": user_dim, "negatives": 3, "history": 4, **options})
    items, _ = read_items(items_csv)
    interactions, _ = read_interactions(interactions_csv)
    data = task.split_sequences(items, interactions)
    tokenizer = TextTokenizer.train(task.corpus(data), 200)
    task.prepare(data, tokenizer, 16)
    torch.manual_seed(0)
    model = task.build_model(Encoder(EncoderConfig(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=8)))
    return task, model, tokenizer, data


def test_tower_shapes_and_loss(tmp_path):
    task, model, tokenizer, data = tiny_task_and_model(tmp_path)
    assert isinstance(model, TwoTowerModel)
    vectors = encode_items(model, tokenizer, data["item_texts"][:5], 16)
    assert vectors.shape == (5, 8)
    users = encode_users(model, [vectors[:0], vectors[:2], vectors[1:4]])  # cold user, 2 and 3 items of history
    assert users.shape == (3, 8) and torch.isfinite(users).all()
    batch_ = next(task.batches("train", 6, shuffle=True, generator=torch.Generator().manual_seed(0)))
    distinct = len(set(batch_["candidates"].flatten().tolist()) | set(batch_["history"].flatten().tolist()))
    assert batch_["item_ids"].size(0) <= distinct + 1  # only the batch's distinct items are encoded
    assert batch_["candidates"].shape == (6, 4)
    model.train()
    loss = task.loss(model, batch_)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert model.encoder.embedding.weight.grad is not None
    assert task.tokens_in_batch(batch_) == int(batch_["item_lengths"].sum())
    metrics = task.evaluate(model, "val")
    assert {"ndcg@10", "hit@10", "mrr", "auc"} <= set(metrics)
    assert all(0.0 <= value <= 1.0 for value in metrics.values())


def test_time_split_holds_out_each_users_last_positive(tmp_path):
    task, _, _, data = tiny_task_and_model(tmp_path)
    assert data["val"], "the fixture has users with >= 3 positives"
    for user, history, target in data["val"]:
        assert target not in data["seen"][user]  # the held-out item is not in the user's training positives
        assert len(history) <= task.history
    for user, history, target in data["train"]:
        assert target in data["seen"][user] and set(history) <= data["seen"][user]
        assert target not in history
    held_out = {(u, t) for u, _, t in data["val"]}
    assert not held_out & {(u, t) for u, _, t in data["train"]}


def test_negatives_are_never_the_users_positives(tmp_path):
    task, _, _, _ = tiny_task_and_model(tmp_path)
    generator = torch.Generator().manual_seed(1)
    users = list(range(len(task.positives))) * 10
    negatives, valid = task.sample_negatives(users, generator)
    assert valid.all()
    for user, row in zip(users, negatives.tolist()):
        assert not set(row) & task.positives[user]
    # A user who liked all but one item: every negative is that item.
    task.positives[0] = set(range(len(task.item_ids))) - {5}
    negatives, valid = task.sample_negatives([0, 0], generator)
    assert valid.all() and set(negatives.flatten().tolist()) == {5}


def test_state_round_trip(tmp_path):
    task, _, _, _ = tiny_task_and_model(tmp_path, user_dim=12)
    other = RecommendTask(user_dim=64, unknown_option="ignored")
    other.load_state(task.state())
    assert (other.user_dim, other.history, other.negatives) == (12, 4, 3)


def test_id_embedding_and_long_term_user_tower(tmp_path):
    task, model, tokenizer, data = tiny_task_and_model(tmp_path, history=6, id_embedding=True, id_dropout=0.5,
                                                       long_term=True)
    warm = {t for _, _, t in data["train"]}
    assert model.id_vectors.num_embeddings == len(warm) + 1 and model.user_tower.long is not None
    rows = task.id_rows([*data["item_ids"], "never-seen"])
    assert rows[-1] == -1 and (rows[:-1] >= 0).sum() == len(warm)  # cold items have no id row
    batch_ = next(task.batches("train", 6, shuffle=True, generator=torch.Generator().manual_seed(0)))
    model.train()
    task.loss(model, batch_).backward()
    assert model.id_vectors.weight.grad is not None
    # Cold items (and callers that pass no id rows) get the text vector alone.
    text_only = encode_items(model, tokenizer, data["item_texts"], 16)
    with_ids = encode_items(model, tokenizer, data["item_texts"], 16, item_index=task.warm_index())
    cold = rows[:-1] < 0
    assert torch.allclose(text_only[cold], with_ids[cold]) and not torch.allclose(text_only[~cold], with_ids[~cold])
    assert encode_users(model, [with_ids[:0], with_ids[:3]]).shape == (2, 8)
    assert set(task.evaluate(model, "val")) >= {"ndcg@10", "auc"}
    # The checkpoint state rebuilds the same shapes.
    other = RecommendTask()
    other.load_state(task.state())
    rebuilt = other.build_model(Encoder(EncoderConfig(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=8)))
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert other.id_item_ids == task.id_item_ids and other.long_term and other.id_embedding


# --- train() end to end, then batch recommendations -------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """train(cfg) on the tiny fixture catalog, the catalog loaded into SQL, and the checkpoint loaded."""
    folder = tmp_path_factory.mktemp("recommend")
    items_csv, interactions_csv = write_catalog(folder)
    cfg = load_config(["task=recommend", f"data.items={items_csv}", f"data.interactions={interactions_csv}",
                       "train.epochs=2", f"paths.var={folder}", "model.vocab_size=300", "model.embed_dim=16",
                       "model.hidden_dim=16", "model.max_len=24", "task.user_dim=16", "++train.progress=false"])
    url = db_url(cfg)
    migrate.upgrade(url)
    result = train(cfg)
    loaded = load_checkpoint(Path(result.path))
    load_catalog(url, items_csv, interactions_csv)
    return {"url": url, "result": result, "loaded": loaded, "items": items_csv, "interactions": interactions_csv}


def recommendations_of(url: str, run_id: int) -> dict[int, list[int]]:
    with session_scope(url) as session:
        rows = session.execute(select(Recommendation.user_id, Recommendation.item_id)
                               .where(Recommendation.run_id == run_id)
                               .order_by(Recommendation.user_id, Recommendation.rank)).all()
    out: dict[int, list[int]] = {}
    for user, item in rows:
        out.setdefault(user, []).append(item)
    return out


def test_train_end_to_end_and_checkpoint(trained):
    result, loaded = trained["result"], trained["loaded"]
    assert result.task == "recommend" and result.promoted
    assert {"ndcg@10", "hit@10", "mrr", "auc"} <= set(result.metrics)
    assert isinstance(loaded.task, RecommendTask) and loaded.task.user_dim == 16
    assert loaded.manifest["task"]["state"]["user_dim"] == 16
    vectors = loaded.task.encode_items(loaded.model, loaded.tokenizer, ["Kyoto guide", "Sourdough bread"],
                                       loaded.max_len)
    assert vectors.shape == (2, 16)


def test_batch_run_excludes_seen_items_and_blends_components(trained):
    url, loaded = trained["url"], trained["loaded"]
    summary = recommend_all(url, loaded, trained["result"].version_id, top_k=5, now=NOW)
    assert (summary.users, summary.items) == (24, 28)
    assert summary.rows == 24 * 5
    assert "Recommendation run" in summary.as_table().title
    with session_scope(url) as session:
        seen = set(session.execute(select(Interaction.user_id, Interaction.item_id)).tuples())
        rows = session.execute(select(Recommendation).where(Recommendation.run_id == summary.run_id)).scalars().all()
        status = session.get(RecommendationRun, summary.run_id).status
    assert status == "complete"
    assert not {(row.user_id, row.item_id) for row in rows} & seen
    for row in rows:
        top = {k: v for k, v in row.components.items() if "." not in k}
        assert set(top) == {"model", "popularity", "freshness"}
        assert sum(top.values()) == pytest.approx(row.score)
        detail = {k: v for k, v in row.components.items() if k.startswith("model.")}
        assert set(detail) == {"model.text", "model.cooccurrence", "model.sequence", "model.content", "model.cold",
                               "model.cold_slot"}  # content and cold: conf weights > 0 (the bench's choice)
        assert sum(detail.values()) == pytest.approx(row.components["model"])
    latest = latest_recommendations(url, "u01")
    assert [r["rank"] for r in latest] == [1, 2, 3, 4, 5]
    assert latest[0]["run_id"] == summary.run_id and latest[0]["model_version_id"] == trained["result"].version_id
    assert [r["score"] for r in latest] == sorted((r["score"] for r in latest), reverse=True)
    assert latest_recommendations(url, "nobody") == []


def test_batch_run_is_repeatable_and_failed_runs_do_not_replace_the_latest(trained, monkeypatch):
    url, loaded, version = trained["url"], trained["loaded"], trained["result"].version_id
    first = recommend_all(url, loaded, version, top_k=4, now=NOW)
    second = recommend_all(url, loaded, version, top_k=4, now=NOW)
    assert second.run_id > first.run_id
    assert recommendations_of(url, first.run_id) == recommendations_of(url, second.run_id)
    before = latest_recommendations(url, "u02")
    assert before[0]["run_id"] == second.run_id

    def insert_half_then_fail(session, rows):
        batch_insert(session, rows[: len(rows) // 2])
        raise RuntimeError("simulated crash while writing")

    batch_insert = batch._insert_rows
    monkeypatch.setattr(batch, "_insert_rows", insert_half_then_fail)
    with pytest.raises(RuntimeError, match="simulated crash"):
        recommend_all(url, loaded, version, top_k=4, now=NOW)
    with session_scope(url) as session:
        failed = session.scalars(select(RecommendationRun).order_by(RecommendationRun.id.desc())).first()
        assert failed.status == "failed" and failed.finished_at is not None
        assert session.scalar(select(func.count()).select_from(Recommendation)
                              .where(Recommendation.run_id == failed.id)) == 0
    assert latest_recommendations(url, "u02") == before
    assert prune_runs(url, keep=1) >= 2
    assert latest_recommendations(url, "u02") == before


def test_category_cap(trained):
    url, loaded = trained["url"], trained["loaded"]
    summary = recommend_all(url, loaded, None, top_k=6, category_cap=2, now=NOW)
    with session_scope(url) as session:
        rows = session.execute(select(Recommendation.user_id, Item.category).join(Item)
                               .where(Recommendation.run_id == summary.run_id)).all()
    per_user: dict[tuple[int, str], int] = {}
    for user, category in rows:
        per_user[(user, category)] = per_user.get((user, category), 0) + 1
    assert max(per_user.values()) <= 2
    assert pick_top(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1]), ["a", "a", "a", "b"], 3, 1) == [0, 3]


def test_batch_run_uses_the_bench_components_graph_content_and_cold_prior(trained):
    url, loaded = trained["url"], trained["loaded"]
    weights = {"graph": 0.2, "content": 0.1, "cold": 0.3}
    summary = recommend_all(url, loaded, None, top_k=5, now=NOW, weights=weights,
                            blend={"freshness_clock": "run", "cold_content": 0.5, "cold_min_prior": 0.1})
    with session_scope(url) as session:
        rows = session.execute(select(Recommendation).where(Recommendation.run_id == summary.run_id)).scalars().all()
    assert summary.rows == len(rows) > 0
    for row in rows:
        detail = {k: v for k, v in row.components.items() if k.startswith("model.")}
        assert {"model.graph", "model.content", "model.cold"} <= set(detail)
        assert sum(detail.values()) == pytest.approx(row.components["model"])
        assert row.components["model"] + row.components["popularity"] + row.components["freshness"] == \
            pytest.approx(row.score)


def test_user_freshness_reads_each_users_last_interaction():
    day = timedelta(days=1)
    start = datetime(2020, 1, 1)
    snapshot = batch.Snapshot(item_ids=[1, 2], item_external_ids=["a", "b"], texts=["a", "b"], categories=[None, None],
                              created_at=[start, start + 100 * day], user_ids=[1, 2], user_external_ids=["x", "y"],
                              histories=[[], []], seen=[np.zeros(0, int)] * 2, positive_users=np.zeros(2),
                              last_seen=[start + 100 * day, None])
    settings = batch.BlendSettings(freshness_clock="user", freshness_peak_days=0.0,
                                   freshness_future_half_life_days=50.0)
    fresh = batch.user_freshness(snapshot, start + 200 * day, 100.0, settings)
    assert fresh.shape == (2, 2)
    assert fresh[0].tolist() == pytest.approx([0.5, 1.0])  # user x's clock: day 100
    assert fresh[1].tolist() == pytest.approx([0.25, 0.5])  # no interaction: the run's time, day 200
    at_run = batch.user_freshness(snapshot, start + 200 * day, 100.0, batch.BlendSettings(freshness_clock="run"))
    assert at_run.shape == (2,)


def test_cold_start_item_and_users_for_new_item(trained):
    url, loaded = trained["url"], trained["loaded"]
    with session_scope(url) as session:
        fresh = session.execute(select(Item.id, Item.title, Item.tags, Item.description)
                                .where(~Item.id.in_(select(Interaction.item_id)))).all()
    assert len(fresh) == 4  # one fresh item per category nobody has interacted with
    cache = ItemVectorCache(loaded)
    vectors = cache.vectors([item_text(f.title, f.tags, f.description) for f in fresh])
    users = encode_users(loaded.model, [vectors[:0], vectors[:1]])
    scores = users @ vectors.T
    assert torch.isfinite(scores).all()
    again = cache.vectors([item_text(fresh[0].title, fresh[0].tags, fresh[0].description)])
    assert len(cache) == 4 and torch.equal(again[0], vectors[0])  # served from the cache
    reach = users_for_new_item(url, loaded, "Vinyl jazz piano lesson for music lovers", top_n=5)
    assert len(reach) == 5
    assert all(math.isfinite(r["z"]) and r["would_rank"] >= 1 for r in reach)
    assert [r["z"] for r in reach] == sorted((r["z"] for r in reach), reverse=True)
    with pytest.raises(ValueError):
        users_for_new_item(url, loaded, "   ")


def test_model_version_must_exist(trained):
    with pytest.raises(ValueError, match="does not exist"):
        recommend_all(trained["url"], trained["loaded"], 99999)
    with session_scope(trained["url"]) as session:
        assert session.get(ModelVersion, 99999) is None


@pytest.mark.postgres
def test_catalog_and_batch_run_on_postgresql(trained, pg_url):
    migrate.upgrade(pg_url)
    first = load_catalog(pg_url, trained["items"], trained["interactions"])
    again = load_catalog(pg_url, trained["items"], trained["interactions"])
    assert first.interactions_inserted > 0 and (again.items_inserted, again.interactions_inserted) == (0, 0)
    summary = recommend_all(pg_url, trained["loaded"], None, top_k=3, category_cap=1, now=NOW)
    assert summary.rows == 24 * 3
    latest = latest_recommendations(pg_url, "u03")
    assert len(latest) == 3 and latest[0]["run_id"] == summary.run_id
    assert len({r["category"] for r in latest}) == 3


def test_batch_run_ranks_each_history_bucket_with_its_own_weights(trained):
    url, loaded = trained["url"], trained["loaded"]
    blend = {"freshness_clock": "run", "history_cuts": [1, 1000],
             "history_weights": [{}, {"graph": 0.5, "sequence": 0.0}, {}]}  # graph only through a bucket
    summary = recommend_all(url, loaded, None, top_k=5, now=NOW, weights={"graph": 0.0}, blend=blend)
    with session_scope(url) as session:
        rows = session.execute(select(Recommendation).where(Recommendation.run_id == summary.run_id)).scalars().all()
    assert summary.rows == len(rows) > 0
    assert any("model.graph" in row.components for row in rows)  # users with a positive: bucket 1's weights
    for row in rows:
        detail = {k: v for k, v in row.components.items() if k.startswith("model.")}
        assert sum(detail.values()) == pytest.approx(row.components["model"])
        assert row.components["model"] + row.components["popularity"] + row.components["freshness"] == \
            pytest.approx(row.score)
