# SSD300 (Liu et al., ECCV 2016) on COCO with the ssd_plugin components: mmdet's SSD300-COCO
# recipe (8 GPUs x 8 images, SGD 2e-3, 24 epochs over the dataset repeated 5 times = 120 effective
# epochs) with the Caffe default boxes (scale_range (0.15, 0.9)) and the paper's inference settings.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_2x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['ssd_plugin'], allow_failed_imports=False)

input_size = 300
model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[1, 1, 1],
        bgr_to_rgb=True,
        pad_size_divisor=1,
    ),
    backbone=dict(
        type='ReducedVGG16',
        out_indices=('conv4_3', 'fc7'),
        # ImageNet VGG16 with subsampled fc6/fc7 (tools/model_converters/*_to_reduced.py); a
        # missing file is an error unless model.backbone.allow_scratch=True.
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vgg16_reducedfc_plugin.pth'),
    ),
    neck=dict(
        type='SSDExtraLayers',
        in_channels=(512, 1024),
        out_channels=(512, 1024, 512, 256, 256, 256),
        strides=(2, 2, 1, 1),
        paddings=(1, 1, 0, 0),
        kernel_sizes=3,
        l2_norm_levels=(0,),
        l2_norm_scale=20,
    ),
    bbox_head=dict(
        type='MultiBoxHead',
        num_classes=80,
        in_channels=(512, 1024, 512, 256, 256, 256),
        prior_generator=dict(
            type='DefaultBoxGenerator',
            input_size=input_size,
            strides=(8, 16, 32, 64, 100, 300),
            ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2]),
            scale_range=(0.15, 0.9),
            scale_mode='caffe',
        ),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[0.1, 0.1, 0.2, 0.2],
        ),
        matcher=dict(type='MultiBoxMatcher', pos_iou_thr=0.5),
        loss=dict(type='MultiBoxLoss', neg_pos_ratio=3, beta=1.0, alpha=1.0),
    ),
    train_cfg=None,
    # Paper / Caffe: confidence 0.01, top 400 per class before NMS, NMS 0.45, top 200.
    test_cfg=dict(
        score_thr=0.01,
        nms_pre=400,
        nms=dict(type='nms', iou_threshold=0.45),
        min_bbox_size=0,
        max_per_img=200,
    ),
)
env_cfg = dict(cudnn_benchmark=True)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    # Canvas filled with the dataset mean in BGR (images are BGR until the data preprocessor).
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
# mmdet's CocoDataset plus checks of the file against the config (classes, category ids, image
# files) and of every box (dropped or clipped with one warning per file; see ssd_plugin.datasets)
dataset_type = 'CheckedCocoDataset'
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    batch_sampler=None,
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=5,
        dataset=dict(
            type=dataset_type,
            data_root={{_base_.data_root}},
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=train_pipeline,
            backend_args={{_base_.backend_args}},
        ),
    ),
)
val_dataloader = dict(batch_size=8, dataset=dict(type=dataset_type, pipeline=test_pipeline))
test_dataloader = val_dataloader
# COCO leaderboard style: maxDets (1, 10, 100) make the logged summary the server's 12 numbers
# (mmdet's default (100, 300, 1000) scores AP50/75/s/m/l with up to 1000 detections per image).
val_evaluator = dict(proposal_nums=(1, 10, 100))
test_evaluator = dict(proposal_nums=(1, 10, 100), classwise=True)

# schedule_2x: 24 epochs (x5 repeats), 500-iteration linear warm-up, steps at epochs 16 and 22.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=2e-3, momentum=0.9, weight_decay=5e-4),
)
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='CheckpointGuardHook'),  # no checkpoint with non-finite weights
    dict(type='EvalProgressHook', interval_s=10),  # a progress line every 10 s of val/test
]

# The lr is tuned for 8 GPUs x 8 images = 64 images per step; tools/train.py scales it by
# (processes x batch_size) / 64 (--no-auto-scale-lr or enable=False: as written).
auto_scale_lr = dict(enable=True, base_batch_size=64)
