"""Blend components on a tiny hand-made interaction history (`nlp_suite.recommend.blend`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nlp_suite.recommend.batch import resolve_weights
from nlp_suite.recommend.blend import (BlendSettings, cold_prior, components, content_features, content_scores,
                                       ease_scores, ease_weights, final_scores, fit_interactions, freshness_matrix,
                                       item_labels, positive_matrix, profile_matrix, promote_cold, rp3beta_weights,
                                       scale_rows, sequence_scores, transition_matrix)

# 5 items; item 4 nobody touched (cold). Users like 0 -> 1 -> 2 in that order; user 3 has only 0.
POSITIVES = [[0, 1, 2], [0, 1, 2], [0, 1], [0]]
N_ITEMS = 5


def test_ease_scores_co_liked_items_and_gives_cold_items_zero():
    warm, weights = ease_weights(positive_matrix(POSITIVES, N_ITEMS), ease_lambda=1.0)
    assert warm.tolist() == [0, 1, 2]
    assert np.allclose(np.diag(weights), 0)
    scores = ease_scores(positive_matrix(POSITIVES, N_ITEMS), warm, weights)
    assert scores.shape == (4, N_ITEMS)
    assert scores[3, 1] > scores[3, 3] and scores[3, 1] > scores[3, 4]  # 1 goes with 0, 3 and 4 never do
    assert np.all(scores[:, [3, 4]] == 0)


def test_sequence_scores_follow_the_order_of_interactions():
    transitions = transition_matrix(POSITIVES, N_ITEMS, max_gap=2)
    assert transitions[0, 1] == pytest.approx(3.0) and transitions[0, 2] == pytest.approx(1.0)  # 1 / gap
    assert transitions[1, 0] == 0  # order matters
    scores = sequence_scores([[0]], transitions, recent=5, decay=0.5)
    assert scores[0, 1] > scores[0, 2] > scores[0, 3] == 0


def test_scale_rows_puts_each_users_best_at_one():
    scaled = scale_rows(np.array([[2.0, -4.0, 1.0], [0.0, 0.0, 0.0]]))
    assert scaled[0].tolist() == [0.5, -1.0, 0.25] and scaled[1].tolist() == [0, 0, 0]


def test_cold_item_gets_a_finite_score_from_text_and_the_cold_slot():
    settings = BlendSettings(ease_lambda=1.0, cold_slot=2)
    model = fit_interactions(POSITIVES, POSITIVES, N_ITEMS, settings)
    text = np.array([[0.0, 0.1, 0.2, 0.3, 5.0]] * 4)  # the text tower loves the cold item 4
    parts = components(model, text, POSITIVES, POSITIVES, np.zeros(N_ITEMS), np.zeros(N_ITEMS))
    assert np.isfinite(parts["model"][:, 4]).all() and parts["model"][0, 4] > 1
    weights = resolve_weights({"model": 0.0, "content": 0.0, "cold": 0.0})  # the blend alone buries the cold item
    cold = np.array([False, False, False, False, True])
    exclude = [np.array(p) for p in POSITIVES]
    plain = final_scores(parts, weights, cold, exclude, cold_slot=0)
    slotted = final_scores(parts, weights, cold, exclude, cold_slot=2)
    user = 3  # candidates 1, 2, 3, 4
    order = [i for i in np.argsort(-slotted[user], kind="stable") if i not in exclude[user]]
    assert np.argsort(-plain[user])[0] == order[0] == 1  # the best warm item keeps first place
    assert order[1] == 4  # the cold item holds the slot
    assert np.isfinite(slotted).all()


def test_promote_cold_skips_excluded_items_and_keeps_an_already_high_cold_item():
    final = np.array([[3.0, 2.0, 1.0, 0.5]])
    cold = np.array([False, False, True, True])
    same = promote_cold(final, cold, [np.array([], dtype=int)], slot=3)  # item 2 is third already
    assert same.tolist() == final.tolist()
    moved = promote_cold(final, cold, [np.array([2])], slot=1)  # item 2 is seen: item 3 is the cold pick
    assert np.argmax(moved[0, [0, 1, 3]]) == 2 and moved[0, 2] == final[0, 2]


def test_weights_from_config_are_respected_and_unknown_keys_rejected():
    parts = {"model": np.array([[1.0, 0.0]]), "cooccurrence": np.array([[0.0, 1.0]]),
             "sequence": np.zeros((1, 2)), "popularity": np.zeros(2), "freshness": np.zeros(2)}
    nothing = [np.array([], dtype=int)]
    off = {"content": 0.0, "cold": 0.0}  # components this test does not build
    text_first = final_scores(parts, resolve_weights({"model": 2.0, "cooccurrence": 1.0, **off}), np.zeros(2, bool),
                              nothing, 0)
    cf_first = final_scores(parts, resolve_weights({"model": 0.5, "cooccurrence": 1.0, **off}), np.zeros(2, bool),
                            nothing, 0)
    assert text_first[0].tolist() == [2.0, 1.0] and cf_first[0].tolist() == [0.5, 1.0]
    with pytest.raises(ValueError):
        resolve_weights({"ease": 1.0})
    with pytest.raises(ValueError):
        BlendSettings.from_mapping({"lambda": 3})
    assert BlendSettings.from_mapping({"sequence_gap": 3}).sequence_gap == 3


def test_freshness_matrix_uses_each_users_now_and_zero_for_unknown_dates():
    day = 86400.0
    fresh = freshness_matrix(np.array([0.0, 10 * day, np.nan]), np.array([10 * day, 20 * day]), half_life_days=10)
    assert fresh[0].tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert fresh[1].tolist() == pytest.approx([0.25, 0.5, 0.0])


def test_freshness_matrix_peaks_after_creation_and_fades_for_future_items():
    day = 86400.0
    created = np.array([0.0, 100 * day, 200 * day, 300 * day, np.nan])
    fresh = freshness_matrix(created, np.array([200 * day]), half_life_days=100, peak_days=100,
                             future_half_life_days=50)[0]
    # ages 200, 100 (the peak), 0 and -100 days: past the peak halves per 100 days, before it per 50 days
    assert fresh.tolist() == pytest.approx([0.5, 1.0, 0.25, 2 ** -4, 0.0])
    with pytest.raises(ValueError):
        freshness_matrix(created, np.array([0.0]), half_life_days=10, peak_days=-1)


def test_cold_prior_scores_only_cold_items_from_freshness_and_content():
    cold = np.array([False, True, True])
    fresh = np.array([[1.0, 0.5, 0.2]])
    content = np.array([[0.9, 0.0, 1.0]])
    assert cold_prior(cold, fresh, content, 0.5)[0].tolist() == pytest.approx([0.0, 0.5, 0.7])
    assert cold_prior(cold, fresh, None, 0.5)[0].tolist() == pytest.approx([0.0, 0.5, 0.2])
    parts = components(fit_interactions(POSITIVES, POSITIVES, N_ITEMS, BlendSettings(ease_lambda=1.0)),
                       np.zeros((4, N_ITEMS)), POSITIVES, POSITIVES, np.zeros(N_ITEMS), np.full(N_ITEMS, 0.3),
                       cold=np.array([False, False, False, False, True]))
    assert parts["cold"].shape == (4, N_ITEMS) and np.all(parts["cold"][:, :4] == 0)
    assert parts["cold"][:, 4].tolist() == pytest.approx([0.3] * 4)
    parts["model"][:, 4] = 5.0  # with weight "cold" the prior replaces text, content and freshness of cold items
    final = final_scores(parts, {"model": 1.0, "freshness": 1.0, "cold": 0.5}, np.array([0, 0, 0, 0, 1], bool),
                         [np.zeros(0, np.int64)] * 4, cold_slot=0)
    assert final[:, 4].tolist() == pytest.approx([0.15] * 4)


def test_item_labels_read_genres_and_comma_separated_tags():
    assert item_labels(["Drama|Comedy", None], ["dark, Funny ", ""]) == [
        ["genre:drama", "genre:comedy", "tag:dark", "tag:funny"], []]


def test_cold_min_prior_keeps_only_promotions_of_likely_cold_items():
    parts = {"model": np.array([[3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0]]),
             "cold": np.array([[0.0, 0.0, 0.0, 0.9], [0.0, 0.0, 0.0, 0.2]])}
    cold = np.array([False, False, False, True])
    exclude = [np.zeros(0, dtype=np.int64)] * 2
    always = final_scores(parts, {"model": 1.0}, cold, exclude, cold_slot=2)
    assert always[:, 3].tolist() == pytest.approx([2.5, 2.5])  # between the 1st and 2nd best
    gated = final_scores(parts, {"model": 1.0}, cold, exclude, cold_slot=2, cold_min_prior=0.5)
    assert gated[0, 3] == pytest.approx(2.5) and gated[1, 3] == 0.0  # user 1's cold item is not likely enough


def test_blend_settings_reject_an_unknown_freshness_clock():
    assert BlendSettings.from_mapping({"freshness_clock": "run"}).freshness_clock == "run"
    with pytest.raises(ValueError):
        BlendSettings.from_mapping({"freshness_clock": "tomorrow"})
    with pytest.raises(ValueError):
        BlendSettings.from_mapping({"cold_content": -1})


def test_config_weights_and_blend_settings_match_the_library_defaults():
    from nlp_suite.config import load_config

    cfg = load_config([])
    assert resolve_weights(dict(cfg.recommend.weights)) == resolve_weights(None)
    assert BlendSettings.from_mapping(dict(cfg.recommend.blend)) == BlendSettings()


def test_component_terms_sum_to_the_score_with_the_cold_lift_inside_model():
    from nlp_suite.recommend.batch import component_terms

    parts = {"model": np.array([[1.0, 2.0]]), "cooccurrence": np.array([[0.5, 0.0]]), "sequence": np.zeros((1, 2)),
             "popularity": np.array([0.2, 0.4]), "freshness": np.array([1.0, 0.0])}
    weights = resolve_weights({"model": 1.0, "cooccurrence": 1.0, "sequence": 0.3, "popularity": 0.5,
                               "freshness": 0.1})
    terms = component_terms(parts, weights, 0, 1, score=3.0)  # promoted: the blend alone gives 2.2
    assert terms["model"] + terms["popularity"] + terms["freshness"] == pytest.approx(3.0)
    assert terms["model.text"] == 2.0 and terms["model.cold_slot"] == pytest.approx(0.8)
    assert sum(v for k, v in terms.items() if k.startswith("model.")) == pytest.approx(terms["model"])


def test_profile_matrix_weights_recent_positives_more():
    assert (profile_matrix(POSITIVES, N_ITEMS).toarray() == positive_matrix(POSITIVES, N_ITEMS).toarray()).all()
    profile = profile_matrix([[0, 1, 2, 1]], N_ITEMS, half_life=1.0).toarray()[0]
    assert profile.tolist() == [0.125, 1.0, 0.5, 0.0, 0.0]  # a repeated item keeps its latest weight


def test_rp3beta_walks_to_co_liked_items_and_penalises_popular_ones():
    warm, weights = rp3beta_weights(positive_matrix(POSITIVES, N_ITEMS), beta=0.0, neighbours=0)
    assert warm.tolist() == [0, 1, 2] and np.allclose(np.diag(weights), 0)
    # From item 2 (users 0, 1: 3 items each) the walk reaches 0 and 1 with 1/3 each.
    assert weights[2].tolist() == pytest.approx([1 / 3, 1 / 3, 0.0])
    _, penalised = rp3beta_weights(positive_matrix(POSITIVES, N_ITEMS), beta=1.0, neighbours=0)
    assert penalised[2, 0] < penalised[2, 1]  # item 0 is liked by 4 users, item 1 by 3
    _, pruned = rp3beta_weights(positive_matrix(POSITIVES, N_ITEMS), beta=0.0, neighbours=1)
    assert pruned[0].tolist() == pytest.approx([0.0, (1 / 3 + 1 / 3 + 1 / 2) / 4, 0.0])  # 0 -> 2 dropped
    assert (pruned[2] > 0).sum() == 2  # a tie at the cut keeps both


def test_content_scores_reach_cold_items_through_shared_labels():
    features = content_features([["genre:a"], ["genre:a", "tag:x"], ["genre:b"], ["genre:b"], ["genre:a", "tag:x"]])
    assert np.allclose(np.sqrt(features.multiply(features).sum(axis=1)), 1.0)
    scores = content_scores(positive_matrix([[1]], N_ITEMS), features)
    assert scores[0, 4] == pytest.approx(1.0) and scores[0, 4] > scores[0, 0] > scores[0, 2] == 0  # 4 is cold


def test_components_add_graph_and_content():
    settings = BlendSettings(ease_lambda=1.0, sequence_gap=2, rp3_neighbours=0)
    assert "graph" not in components(fit_interactions(POSITIVES, POSITIVES, N_ITEMS, settings), np.zeros((4, N_ITEMS)),
                                     POSITIVES, POSITIVES, np.zeros(N_ITEMS), np.zeros(N_ITEMS))
    model = fit_interactions(POSITIVES, POSITIVES, N_ITEMS, settings, graph=True)
    features = content_features([["g"], ["g"], ["h"], ["h"], ["g"]])
    parts = components(model, np.zeros((4, N_ITEMS)), POSITIVES, POSITIVES, np.zeros(N_ITEMS), np.zeros(N_ITEMS),
                       features)
    assert parts["graph"].shape == parts["content"].shape == (4, N_ITEMS)
    assert parts["graph"][3, 1] == pytest.approx(1.0) and np.all(parts["graph"][:, [3, 4]] == 0)
    assert parts["content"][3, 4] > 0  # cold item 4 shares user 3's label
    assert "content" not in components(model, np.zeros((4, N_ITEMS)), POSITIVES, POSITIVES, np.zeros(N_ITEMS),
                                       np.zeros(N_ITEMS))
    with pytest.raises(ValueError):
        BlendSettings.from_mapping({"rp3_beta": -1})
    assert BlendSettings.from_mapping({"rp3_neighbours": 50.0}).rp3_neighbours == 50


# --- MovieLens adapter: item features from train-time information only --------------------------------------

def test_movielens_frames_dates_items_by_title_year_and_cuts_tags(tmp_path):
    from nlp_suite.data.catalog import movielens_frames

    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Old (1995),Drama\n2,No year,Comedy\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,1,4.0,100\n7,2,5.0,900000000\n")
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n7,1,early,50\n7,2,late,900000000\n")
    items, _ = movielens_frames(tmp_path)
    assert items["created_at"].tolist() == ["1995-01-01T00:00:00Z", ""]  # never a rating time (test ones leak)
    assert items["description"].tolist() == ["early", "late"]
    cut, _ = movielens_frames(tmp_path, tags_until={"7": pd.Timestamp(100, unit="s", tz="UTC")})
    assert cut["description"].tolist() == ["early", ""]  # the tag written after user 7's cutoff is gone
    nobody, _ = movielens_frames(tmp_path, tags_until={})
    assert nobody["description"].tolist() == ["", ""]


def test_history_groups_split_users_by_positives_and_override_weights():
    from nlp_suite.recommend.blend import history_groups

    settings = BlendSettings.from_mapping({"history_cuts": [2, 5],
                                           "history_weights": [{"sequence": 0.8}, {}, {"freshness": 0.1}]})
    weights = {"cooccurrence": 1.0, "sequence": 0.3, "freshness": 0.02}
    groups = history_groups(np.array([0, 1, 2, 4, 5, 9]), weights, settings)
    assert [rows.tolist() for rows, _ in groups] == [[0, 1], [2, 3], [4, 5]]  # n >= cut moves up a bucket
    assert [w["sequence"] for _, w in groups] == [0.8, 0.3, 0.3]
    assert [w["freshness"] for _, w in groups] == [0.02, 0.02, 0.1]
    one = history_groups(np.array([0, 7]), weights, BlendSettings.from_mapping({"history_cuts": [],
                                                                                "history_weights": []}))
    assert len(one) == 1 and one[0][0].tolist() == [0, 1] and one[0][1] == weights
    with pytest.raises(ValueError):
        history_groups(np.array([0]), weights, BlendSettings.from_mapping(
            {"history_cuts": [1], "history_weights": [{"nonsense": 1.0}, {}]}))


def test_blend_settings_reject_history_buckets_that_do_not_match_the_cuts():
    with pytest.raises(ValueError):
        BlendSettings.from_mapping({"history_cuts": [5, 2], "history_weights": [{}, {}, {}]})  # not increasing
    with pytest.raises(ValueError):
        BlendSettings.from_mapping({"history_cuts": [5], "history_weights": [{}]})  # needs 2 buckets
    assert BlendSettings.from_mapping({"history_cuts": [5], "history_weights": [{}, {"sequence": 1}]}) \
        .history_weights == ((), (("sequence", 1.0),))


def test_history_final_scores_ranks_each_bucket_with_its_own_weights():
    from nlp_suite.recommend.blend import history_final_scores

    parts = {"model": np.zeros((2, 3)), "cooccurrence": np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
             "sequence": np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]), "popularity": np.zeros(3),
             "freshness": np.zeros(3)}
    settings = BlendSettings.from_mapping({"history_cuts": [3], "history_weights": [{"sequence": 2.0}, {}],
                                           "cold_slot": 0})
    weights = {"model": 0.0, "cooccurrence": 1.0, "sequence": 0.3, "popularity": 0.0, "freshness": 0.0}
    exclude = [np.zeros(0, dtype=np.int64)] * 2
    final = history_final_scores(parts, weights, settings, np.array([1, 10]), np.zeros(3, dtype=bool), exclude)
    assert int(np.argmax(final[0])) == 1  # short history: "watched next" weighs 2
    assert int(np.argmax(final[1])) == 0  # long history: the global weights, EASE first
    assert final[1].tolist() == pytest.approx(final_scores(parts, weights, np.zeros(3, dtype=bool), exclude,
                                                           0)[1].tolist())
