"""Golden values for the cViL KD objective, recomputed here with plain loops (no shared code with the module)."""

import math

import pytest
import torch

from cvil.distill.kd_losses import distillation_loss, map_layers, teacher_logit_loss

B, T_S, T_T, R, H = 2, 7, 6, 3, 4


def _batch():
    # example 0: CLS, 3 image slots, one tag pair, one codemix pair; example 1: CLS + images only
    pairs = [  # (b, s, t, component)
        (0, 0, 0, 0), (0, T_S + 0, T_T + 0, 1), (0, T_S + 1, T_T + 1, 1), (0, T_S + 2, T_T + 2, 1),
        (0, 4, 3, 2), (0, 2, 1, 3),
        (1, 0, 0, 0), (1, T_S + 0, T_T + 0, 1), (1, T_S + 1, T_T + 1, 1), (1, T_S + 2, T_T + 2, 1),
    ]
    b, s, t, c = (torch.tensor(x) for x in zip(*pairs))
    # segments: example 0 = [CLS] q q [SEP] tag [SEP] pad: 2 question tokens, 1 tag token (+ final SEP)
    token_type = torch.tensor([[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]])
    text_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]])
    return {"kd_batch": b, "kd_student_pos": s, "kd_teacher_pos": t, "kd_component": c,
            "input_ids": torch.ones(B, T_S, dtype=torch.long), "token_type_ids": token_type,
            "attention_mask": torch.cat([text_mask, torch.ones(B, R, dtype=torch.long)], 1),
            "img_feats": torch.zeros(B, R, 5)}, pairs


def _hidden(n_layers, length, seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, length, H, generator=g) for _ in range(n_layers + 1))


def _row_mse(sh, th, b, s, t):
    return sum((sh[b, s, k].item() - th[b, t, k].item()) ** 2 for k in range(H)) / H


def test_pooled_is_one_mean_over_all_selected_rows_summed_over_layers():
    batch, pairs = _batch()
    student, teacher = _hidden(4, T_S + R, 0), _hidden(4, T_T + R, 1)
    got = distillation_loss(student, teacher, batch, layers=(6, 12), weights=(0.5, 2.0), reduction="pooled")
    expected = 0.0
    for layer, w in ((2, 0.5), (4, 2.0)):  # 6 -> 2 and 12 -> 4 on 4-layer models
        expected += w * sum(_row_mse(student[layer], teacher[layer], b, s, t) for b, s, t, _ in pairs) / len(pairs)
    assert got.total.item() == pytest.approx(expected, rel=1e-5)
    assert set(got.per_layer) == {6, 12}
    assert set(got.per_component) == {f"l{m}.{c}" for m in (6, 12) for c in ("cls", "image", "tag", "codemix")}


def test_per_component_follows_equations_2_to_6():
    batch, pairs = _batch()
    student, teacher = _hidden(4, T_S + R, 2), _hidden(4, T_T + R, 3)
    got = distillation_loss(student, teacher, batch, layers=(12,), reduction="per_component")
    sh, th = student[4], teacher[4]
    # example 0: t = 1 tag token, n = 2 question tokens; example 1: t = 3, n = 1
    ex0 = (_row_mse(sh, th, 0, 0, 0)
           + sum(_row_mse(sh, th, 0, T_S + r, T_T + r) for r in range(R)) / R
           + _row_mse(sh, th, 0, 4, 3) / 1 ** 2
           + _row_mse(sh, th, 0, 2, 1) / 2 ** 2)
    ex1 = _row_mse(sh, th, 1, 0, 0) + sum(_row_mse(sh, th, 1, T_S + r, T_T + r) for r in range(R)) / R
    assert got.total.item() == pytest.approx((ex0 + ex1) / B, rel=1e-5)


def test_reductions_differ_and_are_never_swapped():
    batch, _ = _batch()
    student, teacher = _hidden(4, T_S + R, 4), _hidden(4, T_T + R, 5)
    pooled = distillation_loss(student, teacher, batch, layers=(12,), reduction="pooled").total
    per = distillation_loss(student, teacher, batch, layers=(12,), reduction="per_component").total
    assert not math.isclose(pooled.item(), per.item(), rel_tol=1e-3)
    with pytest.raises(ValueError, match="reduction"):
        distillation_loss(student, teacher, batch, reduction="mean")


def test_empty_selection_is_zero_with_a_warning_not_nan():
    batch, _ = _batch()
    for key in ("kd_batch", "kd_student_pos", "kd_teacher_pos", "kd_component"):
        batch[key] = batch[key][:0]
    student, teacher = _hidden(4, T_S + R, 6), _hidden(4, T_T + R, 7)
    with pytest.warns(RuntimeWarning, match="empty"):
        got = distillation_loss(student, teacher, batch)
    assert got.total.item() == 0.0 and not torch.isnan(got.total)


def test_gradients_reach_the_student_only_and_maths_is_fp32():
    batch, _ = _batch()
    student = tuple(h.clone().to(torch.bfloat16).requires_grad_() for h in _hidden(4, T_S + R, 8))
    teacher = tuple(h.requires_grad_() for h in _hidden(4, T_T + R, 9))
    with torch.no_grad():
        teacher = tuple(h.detach() for h in teacher)
    loss = distillation_loss(student, teacher, batch, layers=(3, 6, 9, 12))
    assert loss.total.dtype == torch.float32
    loss.total.backward()
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in student[1:])
    assert all(h.grad is None for h in teacher)


def test_layer_mapping_is_identity_for_base_and_proportional_otherwise():
    assert map_layers((3, 6, 9, 12), 12) == [3, 6, 9, 12]
    assert map_layers((3, 6, 9, 12), 4) == [1, 2, 3, 4]
    assert map_layers((12,), 6) == [6]
    with pytest.raises(ValueError, match="collapse"):
        map_layers((3, 4), 2)
    with pytest.raises(ValueError, match="outside"):
        map_layers((13,), 12)


def test_layer_mapping_rounds_half_up_not_to_even():
    # 3, 6, 9, 12 on 6 layers: 1.5, 3, 4.5, 6 -> 2, 3, 5, 6 (Python's round gave 2, 3, 4, 6)
    assert map_layers((3, 6, 9, 12), 6) == [2, 3, 5, 6]
    assert map_layers((3, 6, 9, 12), 4) == [1, 2, 3, 4]  # exact thirds: no tie
    assert map_layers((3, 6, 9, 12), 12) == [3, 6, 9, 12]
    assert map_layers(tuple(range(1, 13)), 12) == list(range(1, 13))  # identity on every layer
    assert map_layers((6,), 5) == [3]  # 2.5 -> 3 (round gave 2)
    assert map_layers((1,), 6) == [1]  # 0.5 -> 1
    with pytest.raises(ValueError, match="collapse"):
        map_layers((3, 6, 9, 12), 2)


def test_layer_weights_must_match_layers():
    batch, _ = _batch()
    with pytest.raises(ValueError, match="weights"):
        distillation_loss(_hidden(4, T_S + R, 0), _hidden(4, T_T + R, 1), batch, layers=(6, 12), weights=(1.0,))


def test_teacher_logit_loss_uses_probabilities_and_scales_by_labels():
    s = torch.tensor([[0.5, -1.0, 2.0]])
    t = torch.tensor([[1.0, 0.0, -3.0]])
    p = torch.sigmoid(t)
    expected = -(p * torch.log(torch.sigmoid(s)) + (1 - p) * torch.log(1 - torch.sigmoid(s))).mean() * 3
    assert teacher_logit_loss(s, t).item() == pytest.approx(expected.item(), rel=1e-5)


def _tag_example():
    """One example through the real tag walk and collate: tags `dog cat tree`, the student splits `cat` as `ca ##t`.

    The walk pairs the first `[SEP]`, `dog`, `tree` and the final `[SEP]` (component 2): A over the tag tokens has
    exactly two ones, dog-dog and tree-tree, and t = 4 student tag tokens (dog ca ##t tree).
    """
    from cvil.inputs.alignment import KDSelection, tag_alignment, text_pairs
    from cvil.inputs.collate import collate

    teacher = ["[CLS]", "what", "[SEP]", "dog", "cat", "tree", "[SEP]"]
    student = ["[CLS]", "何", "の", "[SEP]", "dog", "ca", "##t", "tree", "[SEP]"]
    tags = tag_alignment(teacher, student)
    assert tags == [(3, 2), (4, 3), (7, 5), (8, 6)]  # both [SEP] rows are component-2 pairs
    example = {
        "input_ids": torch.arange(10, 10 + len(student)), "token_type_ids": torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1]),
        "teacher_input_ids": torch.arange(10, 10 + len(teacher)),
        "teacher_token_type_ids": torch.tensor([0, 0, 0, 1, 1, 1, 1]),
        "img_feats": torch.zeros(2, 5), "n_regions": 2, "labels": torch.zeros(3), "question_id": 1,
        "kd_text_pairs": text_pairs(KDSelection(), tags), "kd_image": True,
    }
    return collate([example]), len(student), len(teacher)


def test_per_component_tag_term_is_equation_4_over_tag_tokens_only():
    batch, t_s, t_t = _tag_example()
    # student rows all 0, teacher row at position p all (p + 1): the MSE of a pair (s, p) is (p + 1)^2
    student = (torch.zeros(1, t_s + 2, H),) * 5
    teacher = (torch.arange(1.0, t_t + 3)[None, :, None].expand(1, t_t + 2, H),) * 5
    got = distillation_loss(student, teacher, batch, layers=(12,), reduction="per_component")
    l_cls = 1.0 ** 2  # teacher position 0
    l_img = (8.0 ** 2 + 9.0 ** 2) / 2  # teacher image slots 7, 8
    l_tag = (4.0 ** 2 + 6.0 ** 2) / 4 ** 2  # Eq. 4: A_dog,dog + A_tree,tree (teacher 3, 5), t = 4; no [SEP] rows
    assert got.total.item() == pytest.approx(l_cls + l_img + l_tag, rel=1e-6)
    # pooled (the release) is unchanged: one mean over every selected row, [SEP] rows included
    pooled = distillation_loss(student, teacher, batch, layers=(12,), reduction="pooled")
    rows = [0, 7, 8, 2, 3, 5, 6]
    assert pooled.total.item() == pytest.approx(sum((p + 1.0) ** 2 for p in rows) / len(rows), rel=1e-6)


def test_per_component_tag_term_matches_an_explicit_a_matrix_with_random_states():
    batch, t_s, t_t = _tag_example()
    student, teacher = (tuple(torch.randn(1, n + 2, H, generator=torch.Generator().manual_seed(seed))
                              for _ in range(5)) for n, seed in ((t_s, 11), (t_t, 12)))
    got = distillation_loss(student, teacher, batch, layers=(12,), reduction="per_component")
    sh, th = student[4], teacher[4]
    s_tags, t_tags = [4, 5, 6, 7], [3, 4, 5]  # object-tag token positions (no [SEP])
    a = {(4, 3), (7, 5)}
    l_tag = sum(_row_mse(sh, th, 0, i, j) for i in s_tags for j in t_tags if (i, j) in a) / len(s_tags) ** 2
    expected = (_row_mse(sh, th, 0, 0, 0) + sum(_row_mse(sh, th, 0, t_s + r, t_t + r) for r in range(2)) / 2
                + l_tag)
    assert got.total.item() == pytest.approx(expected, rel=1e-5)
