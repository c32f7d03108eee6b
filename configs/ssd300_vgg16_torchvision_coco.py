# torchvision's ssd300_vgg16 (COCO val2017 box AP 25.1, torchvision's figure) rebuilt from the
# plugin's components, for its weights converted by
# tools/model_converters/torchvision_ssd_to_plugin.py (README "Pretrained weights"). Outputs equal
# torchvision's on the same pixels (tests/test_tools/test_model_converters/
# test_torchvision_ssd_to_plugin.py):
# - network: ReducedVGG16 (at 300 px its ceil-mode pools give torchvision's sizes, where only
#   pool3 is ceil-mode: 150, 75, 38, 19 either way), L2Norm(20) on conv4_3, SSD300's extra layers,
#   3x3 predictors;
# - input: torchvision's RGB mean (0.48235, 0.45882, 0.40784) x 255 and std 1/255 in 0-1 units,
#   i.e. std 1 in the 0-255 units of mmdet's data_preprocessor; fixed 300x300 resize;
# - default boxes: torchvision's scales (0.07, 0.15, ..., 1.05) and steps, widths and heights
#   clipped to the image;
# - decoding: the base's DeltaXYWHBBoxCoder stds (0.1, 0.1, 0.2, 0.2) are torchvision's weights
#   (10, 10, 5, 5); it also clamps the size offsets from below (boxes shrunk over 62.5x from their
#   default box), torchvision only from above;
# - post-processing: torchvision's (score > 0.01, top 400 per class, NMS 0.45, top 200, no
#   minimum box size).
# Classes: torchvision's 91 outputs are the background and COCO category ids 1..90, ten of which
# ("N/A") are unused. Converted, channel c - 1 is category id c and the background is last; the
# head keeps all 90 foreground channels (so the softmax is torchvision's) and reports mmdet's 80
# COCO classes, class i from channel class_channels[i] = (its category id) - 1. Detections of the
# N/A channels are dropped after the top-200 selection: the rest are exactly torchvision's, and
# COCO evaluation ignores the dropped ones (no ground truth has those category ids).
# Training follows torchvision's recipe (references/detection: 8 GPUs x 4 images, SGD lr 0.002,
# momentum 0.9, weight decay 5e-4, 1000-iteration warm-up, 120 epochs with steps at 80 and 110 =
# 24 epochs of the 5x repeated dataset, steps 16 and 22).
_base_ = './ssd300_vgg16_8xb8-120e_coco.py'

input_size = 300
# Output channel of each of mmdet's 80 COCO classes (sorted category ids): category id - 1.
coco_class_channels = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 26, 27,
    30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54,
    55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 66, 69, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 83,
    84, 85, 86, 87, 88, 89,
]  # fmt: skip
model = dict(
    data_preprocessor=dict(mean=[122.99925, 116.9991, 103.9992], std=[1, 1, 1], bgr_to_rgb=True),
    bbox_head=dict(
        num_classes=80,
        num_class_channels=90,
        class_channels=coco_class_channels,
        prior_generator=dict(
            _delete_=True,
            type='DefaultBoxGenerator',
            input_size=input_size,
            strides=(8, 16, 32, 64, 100, 300),
            ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2]),
            scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
            clip=True,
        ),
    ),
    test_cfg=dict(
        score_thr=0.01,
        nms_pre=400,
        nms=dict(type='nms', iou_threshold=0.45),
        min_bbox_size=-1,
        max_per_img=200,
    ),
)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    # torchvision's order: colour distortion, then zoom out onto its mean (BGR here), crop, flip.
    dict(type='PhotometricDistort'),
    dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=(103.9992, 116.9991, 122.99925)),
    dict(type='MinIoUCrop'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=4, dataset=dict(dataset=dict(pipeline=train_pipeline)))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1),
]
# base_batch_size = 8 GPUs x 4 images; --auto-scale-lr scales lr to the actual total batch
auto_scale_lr = dict(base_batch_size=32)
