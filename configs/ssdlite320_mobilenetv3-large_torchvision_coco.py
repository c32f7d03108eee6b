# torchvision's ssdlite320_mobilenet_v3_large (COCO val2017 box AP 21.3, torchvision's figure)
# rebuilt from the plugin's components, for its weights converted by
# tools/model_converters/torchvision_ssd_to_plugin.py (docs/pretrained.md). Outputs equal
# torchvision's on the same pixels (tests/test_tools/test_model_converters/
# test_torchvision_ssd_to_plugin.py):
# - network: torchvision's MobileNetV3-Large with the reduced tail (its builder's choice without
#   an ImageNet backbone, as the published weights were trained), C4 taken at the expansion layer
#   of the last stride-2 block (672 ch, 20x20) and C5 at the last layer (480 ch, 10x10); four
#   SSDLite extra levels (1x1, depthwise 3x3 stride 2, 1x1: 5, 3, 2, 1 cells); depthwise 3x3 +
#   1x1 predictors; BN(eps 0.001, momentum 0.03) + ReLU6; torchvision's normal(0.03) init;
# - input: (x / 255 - 0.5) / 0.5, i.e. mean = std = 127.5 in 0-255 units, RGB; fixed 320x320;
# - default boxes: scales 0.2 ... 0.95 evenly spaced, then 1.0; centres (i + 0.5) / f_k (no
#   steps); ratios 2 and 3 everywhere; widths and heights clipped to the image;
# - post-processing: score > 0.001, top 300 per class, NMS 0.55, top 300.
# Classes as in ssd300_vgg16_torchvision_coco.py (80 reported of 90 foreground channels).
# The SSDLite structure (extra layers, depthwise head, BN + ReLU6, 320 px pipelines, cosine
# schedule) is ssdlite_mobilenetv2_8xb24-600e_coco.py's; what differs from it is set here.
# Training follows torchvision's recipe (references/detection: 8 GPUs x 24 images, SGD lr 0.15,
# weight decay 4e-5, cosine schedule over 660 epochs = 132 epochs of the 5x repeated dataset;
# augmentation: IoU crop and flip only).
_base_ = ['./ssdlite_mobilenetv2_8xb24-600e_coco.py', './_base_/torchvision_coco_classes.py']

input_size = _base_.input_size  # 320
conv_init = dict(type='Normal', layer='Conv2d', std=0.03)
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='MobileNetV3',
        arch='large',
        reduced_tail=True,
        norm_cfg=_base_.norm_cfg,
        init_cfg=[conv_init, dict(type='Constant', layer='BatchNorm2d', val=1)],
    ),
    neck=dict(
        in_channels=(672, 480),
        out_channels=(672, 480, 512, 256, 256, 128),
        init_cfg=[conv_init, dict(type='Constant', layer='BatchNorm2d', val=1)],
    ),
    bbox_head=dict(
        num_classes=80,
        num_class_channels=90,
        class_channels=_base_.coco_class_channels,
        in_channels=(672, 480, 512, 256, 256, 128),
        prior_generator=dict(
            _delete_=True,
            type='DefaultBoxGenerator',
            input_size=input_size,
            strides=None,
            ratios=([2, 3], [2, 3], [2, 3], [2, 3], [2, 3], [2, 3]),
            # torchvision's min_ratio=0.2, max_ratio=0.95: scales computed as it does, + 1.0
            scale_mode='torchvision',
            scale_range=(0.2, 0.95),
            clip=True,
        ),
        init_cfg=conv_init,
    ),
    test_cfg=dict(
        score_thr=0.001,
        nms_pre=300,
        nms=dict(iou_threshold=0.55),
        min_bbox_size=-1,
        max_per_img=300,
    ),
)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    # torchvision's RandomIoUCrop: sides drawn apart, aspect ratio checked after, 40 trials
    dict(type='MinIoUCrop', patch_mode='torchvision', max_trials=40),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='PackDetInputs'),
]
# 2 loader workers, as the SSD300 configs (ssdlite_mobilenetv2 takes 4)
train_dataloader = dict(num_workers=2, dataset=dict(dataset=dict(pipeline=train_pipeline)))

max_epochs = 132
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True,
         eta_min=0, convert_to_iter_based=True),
]  # fmt: skip
optim_wrapper = dict(optimizer=dict(lr=0.15))
# The lr is tuned for 8 GPUs x 24 images = 192 images per step; tools/train.py scales it by
# (processes x batch_size) / 192 (--no-auto-scale-lr or enable=False: as written).
auto_scale_lr = dict(enable=True, base_batch_size=192)
