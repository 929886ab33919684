"""The built-in tiny language: grammar, sampler, recogniser and entropy rate."""

import math

import numpy as np
import pytest

from fastlstm import tinylang


def test_grammar_is_ll1_and_proper():
    assert tinylang.check_ll1()
    # every derivation ends: the expected size of a sentence is finite and positive
    rate, h, chars = tinylang.entropy_rate()
    assert 0 < rate < 1.5 and h > 0 and 10 < chars < 60


def test_samples_are_recognised_with_their_probability():
    for s, logp in tinylang.sample_sentences(3000, seed=11):
        assert tinylang.sentence_log2prob(s) == pytest.approx(logp, abs=1e-9), s
        assert tinylang.is_grammatical(s)


def test_probability_of_one_sentence_by_hand():
    # S->STATEMENT .8, singular .5, DET 1/4, no adjective .7, N 1/5, no clause .8,
    # intransitive .5, VI 1/4
    p = 0.8 * 0.5 * 0.25 * 0.7 * 0.2 * 0.8 * 0.5 * 0.25
    assert tinylang.sentence_log2prob("A cat sleeps.") == pytest.approx(math.log2(p))
    # a question with a nested object relative clause
    q = tinylang.sentence_log2prob("Do two dogs that every fox sees run?")
    assert q is not None and q < math.log2(p)


def test_texts_are_seeded_and_fully_grammatical():
    a = tinylang.generate_text(5000, seed=3)
    assert a == tinylang.generate_text(5000, seed=3) != tinylang.generate_text(5000, seed=4)
    assert len(a) >= 5000 and a.endswith(tinylang.SEPARATOR)
    g, n = tinylang.grammatical_share(a)
    assert g == n > 100
    # an unfinished last sentence is not counted
    assert tinylang.grammatical_share(a + "Two do")[1] == n


@pytest.mark.parametrize("bad", [
    "A cat sleep.",                       # verb does not agree with the subject
    "Two cats sleeps.",
    "This cats sleep.",                   # determiner does not agree with the noun
    "Some cat sleeps.",
    "The cat sleeps.",                    # not a word of the language
    "A cats that sees a dog sleeps.",
    "A cat that see a dog sleeps.",       # relative-clause verb must agree with "cat"
    "A cat that two dogs sees sleeps.",   # object relative: agrees with "two dogs"
    "A cat that sleeps.",                 # main verb missing
    "A cat sleeps a dog.",                # intransitive verb with an object
    "A cat sees.",                        # transitive verb without an object
    "Does a cat sleep.",                  # question with a full stop
    "A cat sleeps?",                      # statement with a question mark
    "Does a cat sleeps?",                 # base form after does
    "Do a cat sleep?",
    "a cat sleeps.",                      # no capital letter
    "A cat  sleeps.",                     # two spaces
    "A cat sleeps",                       # no punctuation
    "A cat sleeps .",                     # space before the punctuation
    "A cat sleeps. ",                     # trailing space
    "A big big cat sleeps.",              # at most one adjective
    "A cat that that dog sees sleeps.",
    "A Cat sleeps.",
    "",
    ".",
    "A cat sleeps.\nA dog runs.",
])
def test_ungrammatical_sentences_are_rejected(bad):
    assert tinylang.sentence_log2prob(bad) is None
    assert not tinylang.is_grammatical(bad)


@pytest.mark.parametrize("good", [
    "A cat sleeps.",
    "Every happy child that two foxes chase follows some birds.",
    "Does this bird that sees all dogs that one cat likes wait?",
    "All lazy cats that run see a red fox that sings.",
])
def test_grammatical_sentences_are_accepted(good):
    assert tinylang.is_grammatical(good)


def test_entropy_rate_matches_monte_carlo():
    rate, h, chars = tinylang.entropy_rate()
    est, se = tinylang.monte_carlo_entropy_rate(20000, seed=5)
    assert 0 < se < 0.01
    assert abs(est - rate) < 4 * se
    # the expected sentence length (with the separator) agrees with the samples too
    lengths = [len(s) + 1 for s, _ in tinylang.sample_sentences(20000, seed=6)]
    assert abs(np.mean(lengths) - chars) < 4 * np.std(lengths) / math.sqrt(len(lengths))


def test_terminals_and_tokenizer():
    words = tinylang.terminals()
    assert {".", "?", "that", "does", "do", "cat", "cats"} <= words
    assert tinylang.tokenize("Does a cat sleep?") == ["does", "a", "cat", "sleep", "?"]
    assert tinylang.render(["does", "a", "cat", "sleep", "?"]) == "Does a cat sleep?"
    assert tinylang.tokenize("no punctuation") is None
