# torchvision's ssd300_vgg16 (COCO val2017 box AP 25.1, torchvision's figure) rebuilt from the
# plugin's components, for its weights converted by
# tools/model_converters/torchvision_ssd_to_plugin.py (docs/pretrained.md). Outputs equal
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
# Classes: mmdet's 80 COCO classes read from 90 category channels
# (configs/_base_/torchvision_coco_classes.py).
# Detections of the ten N/A channels are dropped after the top-200 selection: the rest are exactly
# torchvision's, and COCO evaluation ignores the dropped ones (no ground truth has those ids).
# Training follows torchvision's recipe (references/detection: 8 GPUs x 4 images, SGD lr 0.002,
# momentum 0.9, weight decay 5e-4, 1000-iteration warm-up, 120 epochs with steps at 80 and 110 =
# 24 epochs of the 5x repeated dataset, steps 16 and 22).
_base_ = ['./ssd300_vgg16_8xb8-120e_coco.py', './_base_/torchvision_coco_classes.py']

input_size = 300
model = dict(
    data_preprocessor=dict(mean=[122.99925, 116.9991, 103.9992], std=[1, 1, 1], bgr_to_rgb=True),
    bbox_head=dict(
        num_classes=80,
        num_class_channels=90,
        class_channels=_base_.coco_class_channels,
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
    # the base's paper settings (score 0.01, top 400 per class, NMS 0.45, top 200) are
    # torchvision's too; torchvision keeps boxes of any size
    test_cfg=dict(min_bbox_size=-1),
)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    # torchvision's order: colour distortion, then zoom out onto its mean (BGR here), crop, flip.
    dict(type='PhotometricDistort'),
    dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=(103.9992, 116.9991, 122.99925)),
    # torchvision's RandomIoUCrop: sides drawn apart, aspect ratio checked after, 40 trials
    dict(type='MinIoUCrop', patch_mode='torchvision', max_trials=40),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=4, dataset=dict(dataset=dict(pipeline=train_pipeline)))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1),
]
# The lr is tuned for 8 GPUs x 4 images = 32 images per step; tools/train.py scales it by
# (processes x batch_size) / 32 (--no-auto-scale-lr or enable=False: as written).
auto_scale_lr = dict(enable=True, base_batch_size=32)
