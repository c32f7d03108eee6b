# SSDLite (Sandler et al., MobileNetV2, 2018) at 320x320 on COCO, trained from scratch. Mirrors
# mmdet's ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py (COCO val2017 box AP 21.3) with the
# plugin's components: MobileNetV2's stage-4 output (C4, 96 ch, stride 16) and last 1x1 conv
# (1280 ch, stride 32), four depthwise-separable extra levels (20, 10, 5, 3, 2, 1 cells),
# depthwise predictors, BN + ReLU6, no L2Norm, explicit default-box sizes with six boxes at every
# level; 8 GPUs x 24 images, cosine schedule over 120 epochs x RepeatDataset 5 = 600 epochs.
_base_ = './ssd300_vgg16_8xb8-120e_coco.py'

input_size = 320
norm_cfg = dict(type='BN', eps=0.001, momentum=0.03)
model = dict(
    data_preprocessor=dict(std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        out_indices=(4, 7),
        norm_cfg=norm_cfg,
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03),
    ),
    neck=dict(
        _delete_=True,
        type='SSDExtraLayers',
        in_channels=(96, 1280),
        out_channels=(96, 1280, 512, 256, 256, 128),
        strides=(2, 2, 2, 2),
        paddings=(1, 1, 1, 1),
        l2_norm_scale=None,
        use_depthwise=True,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6'),
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03),
    ),
    bbox_head=dict(
        in_channels=(96, 1280, 512, 256, 256, 128),
        use_depthwise=True,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6'),
        prior_generator=dict(
            _delete_=True,
            type='DefaultBoxGenerator',
            input_size=input_size,
            strides=(16, 32, 64, 107, 160, 320),
            ratios=([2, 3], [2, 3], [2, 3], [2, 3], [2, 3], [2, 3]),
            min_sizes=(48, 100, 150, 202, 253, 304),
            max_sizes=(100, 150, 202, 253, 304, 320),
        ),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.001),
    ),
)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=(103.53, 116.28, 123.675)),
    dict(type='MinIoUCrop'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotometricDistort'),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
train_dataloader = dict(
    batch_size=24, num_workers=4, dataset=dict(dataset=dict(pipeline=train_pipeline))
)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 120
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True,
         eta_min=0),
]  # fmt: skip
optim_wrapper = dict(optimizer=dict(lr=0.015, weight_decay=4.0e-5))
# The lr is tuned for 8 GPUs x 24 images = 192 images per step; tools/train.py scales it by
# (processes x batch_size) / 192 (--no-auto-scale-lr or enable=False: as written).
auto_scale_lr = dict(enable=True, base_batch_size=192)
