"""Triggers stamp what they claim, where they claim, and poisoning picks only non-target samples."""

from __future__ import annotations

import pytest
import torch

from worker.zoo.attacks import BadNetsPatch, BlendedTrigger, SinusoidTrigger, WarpTrigger, describe, poison


def test_badnets_bottom_right_white_patch_touches_only_its_pixels() -> None:
    images = torch.zeros(2, 1, 28, 28)
    out = BadNetsPatch(target_class=0, size=3).apply(images)
    assert torch.equal(out[:, :, 24:27, 24:27], torch.ones(2, 1, 3, 3))
    assert float(out.sum()) == 2 * 9  # nothing outside the patch changed
    assert float(images.sum()) == 0.0  # input untouched


def test_badnets_explicit_position_colour_and_checkerboard() -> None:
    images = torch.full((1, 3, 8, 8), 0.5)
    out = BadNetsPatch(target_class=1, size=2, position=(1, 5), colour=(1.0, 0.0, 0.25), checkerboard=True).apply(
        images
    )
    patch = out[0, :, 5:7, 1:3]  # rows y=5..6, columns x=1..2
    assert patch[:, 0, 0].tolist() == [1.0, 0.0, 0.25]
    assert patch[:, 0, 1].tolist() == [0.0, 0.0, 0.0]
    assert patch[:, 1, 1].tolist() == [1.0, 0.0, 0.25]


@pytest.mark.parametrize(("corner", "expected"), [("top_left", (1, 1)), ("top_right", (24, 1)), ("centre", (12, 12))])
def test_badnets_corner_names(corner: str, expected: tuple[int, int]) -> None:
    assert BadNetsPatch(0, size=3, position=corner).top_left(28, 28) == expected  # type: ignore[arg-type]


def test_badnets_patch_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        BadNetsPatch(0, size=3, position=(27, 0)).apply(torch.zeros(1, 1, 28, 28))


def test_blended_noise_is_fixed_and_mixes_with_alpha() -> None:
    attack = BlendedTrigger(target_class=2, alpha=0.2, noise_seed=5)
    zeros = attack.apply(torch.zeros(3, 1, 10, 10))
    assert torch.equal(zeros[0], zeros[2])  # one trigger for every image
    assert torch.allclose(zeros, 0.2 * attack.pattern(1, 10, 10))
    assert torch.allclose(attack.apply(torch.ones(1, 1, 10, 10)), 0.8 + 0.2 * attack.pattern(1, 10, 10))


def test_blended_image_pattern_and_its_manifest_entry() -> None:
    image = torch.linspace(0, 1, 16).reshape(1, 4, 4)
    attack = BlendedTrigger(target_class=3, alpha=0.1, image=image, image_name="mnist:test:7")
    out = attack.apply(torch.zeros(1, 3, 4, 4))
    assert torch.allclose(out[0, 2], 0.1 * image[0])
    params = describe(attack)
    assert params["family"] == "blended" and params["image_name"] == "mnist:test:7" and "image" not in params


def test_warp_is_smooth_deterministic_and_changes_images() -> None:
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    attack = WarpTrigger(target_class=4, strength=1.0, seed=3)
    out = attack.apply(images)
    assert torch.equal(out, attack.apply(images))
    diff = (out - images).abs().mean()
    assert 0.01 < float(diff) < 0.3
    assert float(WarpTrigger(4, strength=0.0).apply(images).sub(images).abs().max()) < 1e-5


def test_sinusoid_adds_a_clipped_horizontal_wave() -> None:
    out = SinusoidTrigger(target_class=5, amplitude=0.1, frequency=2).apply(torch.full((1, 1, 4, 8), 0.5))
    assert torch.allclose(out[0, 0, 0], out[0, 0, 3])  # same on every row
    # column j gets 0.1 * sin(2 pi * j * 2 / 8): +0.1 at j = 1, 0 at j = 2, -0.1 at j = 3
    assert out[0, 0, 0, 1:4].tolist() == pytest.approx([0.6, 0.5, 0.4], abs=1e-6)
    clipped = SinusoidTrigger(target_class=5, amplitude=0.1, frequency=2).apply(torch.ones(1, 1, 1, 8))
    assert float(clipped.max()) == 1.0 and clipped[0, 0, 0, 3].item() == pytest.approx(0.9)


def test_poison_chooses_non_target_samples_at_the_rate_and_leaves_inputs() -> None:
    labels = torch.arange(100) % 10
    images = torch.zeros(100, 1, 8, 8)
    attack = BadNetsPatch(target_class=0, size=2)
    out_images, out_labels, chosen = poison(images, labels, attack, 0.1, torch.Generator().manual_seed(0))
    assert len(chosen) == 10
    assert bool((labels[chosen] != 0).all())
    assert bool((out_labels[chosen] == 0).all())
    assert int((out_labels != labels).sum()) == 10
    assert float(out_images[chosen].sum()) == 10 * 4 and float(images.sum()) == 0.0
    again = poison(images, labels, attack, 0.1, torch.Generator().manual_seed(0))[2]
    assert torch.equal(chosen, again)


def test_poison_respects_exclusions_for_multi_target_models() -> None:
    labels = torch.arange(20) % 10
    exclude = torch.zeros(20, dtype=torch.bool)
    exclude[:10] = True
    chosen = poison(torch.zeros(20, 1, 4, 4), labels, BadNetsPatch(0, size=1), 0.4, torch.Generator(), exclude=exclude)[
        2
    ]
    assert bool((chosen >= 10).all()) and len(chosen) == 8


def test_poison_refuses_more_than_it_can() -> None:
    with pytest.raises(ValueError, match="eligible"):
        poison(torch.zeros(4, 1, 4, 4), torch.tensor([0, 0, 0, 1]), BadNetsPatch(0, size=1), 0.5, torch.Generator())
