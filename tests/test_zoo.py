import torch

from provenance.zoo import build_many, parse_name
from provenance.zoo.build import TRAIN_THREADS, _threads
from provenance.zoo.corpus import Vocab, corpus_text
from provenance.zoo.tiny import BASE_CONFIG, init_state, train


def test_training_is_bit_identical_run_to_run():
    data = Vocab.bytes_only().encode(corpus_text("base")[:50_000])
    runs = []
    for _ in range(2):
        with _threads(TRAIN_THREADS):
            state = init_state(BASE_CONFIG, torch.Generator().manual_seed(3))
            runs.append(train(state, BASE_CONFIG, data, steps=30, lr=3e-3, seed=9))
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name


def test_zoo_names_parse_and_unknown_transforms_are_refused():
    assert parse_name("base-s2-upcycle") == (2, "upcycle") and parse_name("base-s0") == (0, None)
    for bad in ("base", "s0", "base-s0-teleport", "base-x1"):
        try:
            parse_name(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_zoo_models_are_hf_layout_checkpoints(zoo):
    path = zoo("base-s0-vocab")
    assert {p.name for p in path.iterdir()} >= {"model.safetensors", "config.json", "vocab.json", "merges.json"}
    assert build_many(["base-s0"])["base-s0"].exists()
