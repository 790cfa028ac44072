"""Reply selection with an intent prior (nlp_suite.chat.selection): scoring, weight choice, the service's pick."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nlp_suite.chat.selection import (PROBABILITY_FLOOR, choose_passage, choose_prior_weight, intent_log_prior,
                                      prior_scores)
from nlp_suite.tasks.retrieval import Hit, rank_metrics

LABELS = ["cancel_order", "track_order", "refund"]


def test_log_prior_picks_each_candidates_intent_floors_zeros_and_is_neutral_for_unknown_intents():
    probabilities = np.array([[0.7, 0.3, 0.0]])
    intents = np.array([["track_order", "cancel_order", "refund", "store_hours"]], dtype=object)
    found = intent_log_prior(probabilities, LABELS, intents)
    assert found.shape == (1, 4)
    assert found[0, :3] == pytest.approx([math.log(0.3), math.log(0.7), math.log(PROBABILITY_FLOOR)])
    assert found[0, 3] == pytest.approx(math.log(0.7))  # not an intent of the classifier: its best guess's value


def test_passage_of_the_predicted_intent_beats_a_slightly_better_text_match_only_with_a_prior():
    scores = np.array([[10.0, 10.3, 4.0]])  # the other intent's passage matches the text slightly better
    intents = np.array([["cancel_order", "track_order", "refund"]], dtype=object)
    log_prior = intent_log_prior(np.array([[0.9, 0.08, 0.02]]), LABELS, intents)
    assert int(np.argmax(prior_scores(scores, log_prior, 0.5))) == 0
    same = prior_scores(scores, log_prior, 0.0)
    assert (np.argsort(-same) == np.argsort(-scores)).all() and (same == scores).all()
    with pytest.raises(ValueError):
        prior_scores(scores, log_prior, -0.1)


def test_weight_is_chosen_by_mean_mrr_and_ties_go_to_the_smallest():
    # Query 0: the true passage (column 0) loses on text by 0.3 but the classifier is sure of its intent.
    scores = [np.array([[10.0, 10.3, 4.0], [8.0, 2.0, 1.0]])]
    priors = [np.log(np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3]]))]
    weight, mrr = choose_prior_weight(scores, priors, (0.0, 0.2, 1.0, 5.0))
    assert mrr[0.0] == pytest.approx(rank_metrics(scores[0])["mrr"]) == pytest.approx(0.75)
    assert weight == 0.2 and mrr[0.2] == mrr[1.0] == pytest.approx(1.0)  # 0.2 already fixes it; 1.0 ties
    # A prior that points away from the truth is never chosen.
    weight, _ = choose_prior_weight([np.array([[10.0, 9.0]])], [np.log(np.array([[0.1, 0.9]]))], (0.0, 1.0, 5.0))
    assert weight == 0.0


def test_service_pick_reorders_only_the_hits_that_pass_the_threshold():
    hits = [Hit(0, 12.0, 0.9), Hit(1, 11.8, 0.8), Hit(2, 9.0, 0.7)]
    intents = ["track_order", "cancel_order", "refund"]
    probabilities = {"cancel_order": 0.6, "track_order": 0.1, "refund": 0.3}
    assert choose_passage(hits, intents, probabilities, 0.0, 10.0) is hits[0]  # w = 0: the retriever's top hit
    assert choose_passage(hits, intents, probabilities, 1.0, 10.0) is hits[1]  # the likelier intent wins
    # "refund" would win on the prior with a big weight, but its passage is below the threshold.
    sure_of_refund = {"refund": 0.98, "cancel_order": 0.01, "track_order": 0.01}
    assert choose_passage(hits, intents, sure_of_refund, 50.0, 10.0) is hits[0]  # a tie of the rest: text order
    assert choose_passage(hits, intents, probabilities, 1.0, 12.5) is None  # nothing passes: fall back as before
    # A plain FAQ document (no intent of the classifier's) ties with the best guess, so the text decides.
    assert choose_passage(hits, ["store_hours", "cancel_order", "refund"], probabilities, 5.0, 10.0) is hits[0]
