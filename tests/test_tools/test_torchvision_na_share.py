"""The N/A share of torchvision's detections (docs/pretrained.md) against 10 / 90."""

import pytest
from tool_runner import load_tool

na_tool = load_tool('analysis/torchvision_na_share.py')
na_channels, torchvision_na_share = na_tool.na_channels, na_tool.torchvision_na_share

# COCO's category ids 1..90 without an annotated class (torchvision labels them 'N/A')
COCO_UNUSED_IDS = [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]


@pytest.mark.parametrize('model', ['ssd300_vgg16', 'ssdlite320_mobilenet_v3_large'])
def test_na_channels_are_cocos_unused_category_ids(model):
    assert na_channels(model).tolist() == COCO_UNUSED_IDS


@pytest.mark.parametrize(
    'model, images, cap', [('ssdlite320_mobilenet_v3_large', 8, 300), ('ssd300_vgg16', 3, 200)]
)
def test_na_share_of_random_logits_is_ten_of_ninety(model, images, cap):
    fig = torchvision_na_share(model, num_images=images, seed=0)
    assert fig['expected_share'] == 10 / 90
    # i.i.d. logits give far more candidates than the per-image cap: every image is full
    assert fig['num_images'] == images and fig['detections_per_image'] == cap
    assert fig['share'] == fig['na_per_image'] / cap
    # exchangeable channels: 10 of the 90 foreground channels hold 1/9 of the slots on average;
    # binomial sd over images * cap detections is 0.64 % (SSDLite) and 1.3 % (VGG): 3.5 sd
    sd = (1 / 9 * 8 / 9 / (images * cap)) ** 0.5
    assert abs(fig['share'] - 1 / 9) < 3.5 * sd, fig
    assert torchvision_na_share(model, num_images=images, seed=0) == fig  # seeded


def test_unknown_model_is_named():
    with pytest.raises(KeyError, match='ssd512'):
        torchvision_na_share('ssd512')


def test_command_line_prints_the_share(capsys):
    na_tool.main(['--images', '2', '--models', 'ssdlite320_mobilenet_v3_large'])
    fig = torchvision_na_share('ssdlite320_mobilenet_v3_large', num_images=2, seed=0)
    line = capsys.readouterr().out.strip()
    assert line == (
        f'ssdlite320_mobilenet_v3_large: 2 images, {fig["detections_per_image"]:.1f} detections '
        f'per image, {fig["na_per_image"]:.1f} with an N/A label: {100 * fig["share"]:.1f} % '
        '(expected 11.1 % = 10 / 90 for an untrained head)'
    )
