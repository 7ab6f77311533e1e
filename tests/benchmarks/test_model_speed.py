"""Training-step throughput of OscarVQA: SDPA + dynamic text padding vs eager + fixed 128 padding.

Skipped by default; run with `pytest tests/benchmarks/test_model_speed.py --benchmark-only`.
The variants are alternated in one process on one thread (absolute times on a shared machine are noisy; the ratio
measured side by side is what to trust). Per variant, the median step time gives `samples_per_s`; rates and ratios
go to `extra_info`. The benchmark's own timing is one alternating round (every variant once). Besides the two
compared set-ups, the crossed ones (SDPA + fixed, eager + dynamic) tell the padding's share of the speed-up from
the attention kernel's.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from cvil.models import OscarVQA, oscar_config

BATCH, REGIONS, IMG_DIM, LABELS, VOCAB, FIXED_T = 32, 12, 64, 100, 1000, 128
SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256, rounds=10),
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512, rounds=6),
}


def _batch(pad_to: int | None, seed: int = 0) -> dict[str, torch.Tensor]:
    """32 examples of ~16 text tokens (10..22) and 12 full region slots; text padded to the longest or `pad_to`."""
    gen = torch.Generator().manual_seed(seed)
    lens = torch.randint(10, 23, (BATCH,), generator=gen)
    T = pad_to or int(lens.max())
    pos = torch.arange(T)
    text_mask = (pos[None] < lens[:, None]).long()
    return dict(
        input_ids=torch.randint(1, VOCAB, (BATCH, T), generator=gen) * text_mask,
        token_type_ids=((pos[None] >= lens[:, None] // 2).long() * text_mask),
        attention_mask=torch.cat([text_mask, torch.ones(BATCH, REGIONS, dtype=torch.long)], dim=1),
        img_feats=torch.randn(BATCH, REGIONS, IMG_DIM, generator=gen),
        labels=torch.rand(BATCH, LABELS, generator=gen),
    )


def _step(model: OscarVQA, batch: dict[str, torch.Tensor]) -> float:
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    return time.perf_counter() - start


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("size", list(SIZES))
def test_train_step_throughput(benchmark, one_thread, size):
    fields = dict(SIZES[size])
    rounds = fields.pop("rounds")
    models = {}
    for attn in ("sdpa", "eager"):
        torch.manual_seed(0)
        config = oscar_config(
            img_feature_dim=IMG_DIM, num_labels=LABELS, vocab_size=VOCAB, attn_implementation=attn, **fields
        )
        models[attn] = OscarVQA(config).train()
    dynamic, fixed = _batch(None), _batch(FIXED_T)
    # The two compared set-ups, plus the two crossed ones that tell padding's share from the attention kernel's.
    variants = {
        "sdpa_dynamic": (models["sdpa"], dynamic),
        "eager_fixed128": (models["eager"], fixed),
        "sdpa_fixed128": (models["sdpa"], fixed),
        "eager_dynamic": (models["eager"], dynamic),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for model, batch in variants.values():  # warm-up
        _step(model, batch)

    order = list(variants)

    def one_round() -> None:
        order.reverse()  # alternate which variant goes first
        for name in order:
            times[name].append(_step(*variants[name]))

    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    rate = {name: BATCH / statistics.median(ts) for name, ts in times.items()}
    benchmark.extra_info.update(
        size=size,
        text_len_dynamic=variants["sdpa_dynamic"][1]["input_ids"].shape[1],
        samples_per_s={name: round(r, 1) for name, r in rate.items()},
        ratio_sdpa_dynamic_over_eager_fixed=round(rate["sdpa_dynamic"] / rate["eager_fixed128"], 2),
        ratio_sdpa_over_eager_dynamic=round(rate["sdpa_dynamic"] / rate["eager_dynamic"], 2),
        ratio_sdpa_over_eager_fixed=round(rate["sdpa_fixed128"] / rate["eager_fixed128"], 2),
    )
    print(f"\n{size}: {benchmark.extra_info}")
    assert all(r > 0 for r in rate.values())
