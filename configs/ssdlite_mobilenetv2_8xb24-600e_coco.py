# SSDLite (Sandler et al., MobileNetV2, 2018) at 320x320 on COCO, trained from scratch:
# MobileNetV2 features after stage 4 (C4, 96 ch, stride 16) and the last 1x1 conv (1280 ch,
# stride 32), four depthwise-separable extra levels, depthwise predictors, BN + ReLU6.
# Mirrors mmdet's ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py (COCO val2017 box AP 21.3)
# with the SSD plugin's components: 120 epochs x RepeatDataset 5 = 600 effective epochs.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['ssd_plugin'], allow_failed_imports=False)

input_size = 320
norm_cfg = dict(type='BN', eps=0.001, momentum=0.03)
data_preprocessor = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=1,
)
model = dict(
    type='SingleStageDetector',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MobileNetV2',
        out_indices=(4, 7),
        norm_cfg=norm_cfg,
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03),
    ),
    neck=dict(
        type='SSDExtraLayers',
        in_channels=(96, 1280),
        out_channels=(96, 1280, 512, 256, 256, 128),
        strides=(2, 2, 2, 2),
        paddings=(1, 1, 1, 1),
        l2_norm_scale=None,  # BN-normalised features need no conv4_3-style L2Norm
        use_depthwise=True,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6'),
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03),
    ),
    bbox_head=dict(
        type='MultiBoxHead',
        num_classes=80,
        in_channels=(96, 1280, 512, 256, 256, 128),
        use_depthwise=True,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6'),
        # 20, 10, 5, 3, 2, 1 cells at 320; sizes set explicitly, 6 boxes at every level
        prior_generator=dict(
            type='DefaultBoxGenerator',
            input_size=input_size,
            strides=(16, 32, 64, 107, 160, 320),
            ratios=([2, 3], [2, 3], [2, 3], [2, 3], [2, 3], [2, 3]),
            min_sizes=(48, 100, 150, 202, 253, 304),
            max_sizes=(100, 150, 202, 253, 304, 320),
        ),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.001),
    ),
    test_cfg=dict(
        nms_pre=1000,
        nms=dict(type='nms', iou_threshold=0.45),
        min_bbox_size=0,
        score_thr=0.02,
        max_per_img=200,
    ),
)
env_cfg = dict(cudnn_benchmark=True)

# dataset settings: SSD's augmentation, the fill is the mean in BGR (images are BGR here)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=(103.53, 116.28, 123.675)),
    dict(type='MinIoUCrop'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotometricDistort'),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),  # after Resize: ground truth stays unscaled
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]  # fmt: skip
train_dataloader = dict(
    batch_size=24,
    num_workers=4,
    batch_sampler=None,
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=5,
        dataset=dict(
            type={{_base_.dataset_type}},
            data_root={{_base_.data_root}},
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=train_pipeline,
        ),
    ),
)
val_dataloader = dict(batch_size=8, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# COCO's official 12 numbers: AP at maxDets=100 (mmdet's default proposal_nums make AP50/75/
# s/m/l count up to 1000 detections) and AR at 1, 10 and 100 detections, in the log summary
val_evaluator = dict(proposal_nums=(1, 10, 100))
test_evaluator = dict(proposal_nums=(1, 10, 100), classwise=True)

# training schedule: 120 epochs of the 5x repeated train set
max_epochs = 120
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True,
         eta_min=0),
]  # fmt: skip
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.015, momentum=0.9, weight_decay=4.0e-5),
)
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
]
# base_batch_size = 8 GPUs x 24 images; --auto-scale-lr scales lr to the actual total batch
auto_scale_lr = dict(base_batch_size=192)
