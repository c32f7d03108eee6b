# SSD512 on Pascal VOC07+12 (mmdet's pascal_voc/ssd512_voc0712.py: 79.5 mAP; paper 79.8): the
# SSD300 VOC recipe on the 7-level SSD512 with the Caffe SSD512-VOC default boxes (scale_range
# (0.15, 0.9), first level 7 % / 15 %).
_base_ = './ssd512_vgg16_8xb8-120e_coco.py'

model = dict(bbox_head=dict(num_classes=20, prior_generator=dict(scale_range=(0.15, 0.9))))

dataset_type = 'CheckedVOCDataset'  # mmdet's VOCDataset with box and class-name checks
data_root = 'data/VOCdevkit/'
voc_trainval = dict(
    type=dataset_type,
    data_root=data_root,
    filter_cfg=dict(filter_empty_gt=True, min_size=32),
    pipeline={{_base_.train_pipeline}},
)
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=10,
        dataset=dict(
            type='ConcatDataset',
            ignore_keys=['dataset_type'],
            datasets=[
                dict(
                    voc_trainval,
                    ann_file='VOC2007/ImageSets/Main/trainval.txt',
                    data_prefix=dict(sub_data_root='VOC2007/'),
                ),
                dict(
                    voc_trainval,
                    ann_file='VOC2012/ImageSets/Main/trainval.txt',
                    data_prefix=dict(sub_data_root='VOC2012/'),
                ),
            ],  # fmt: skip
        ),
    ),
)
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='VOC2007/ImageSets/Main/test.txt',
        data_prefix=dict(sub_data_root='VOC2007/'),
        test_mode=True,
        pipeline={{_base_.test_pipeline}},
    )
)
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='VOCMetric', metric='mAP', eval_mode='11points')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 20], gamma=0.1),
]
# The lr is tuned for 8 GPUs x 8 images = 64 images per step; tools/train.py scales it by
# (processes x batch_size) / 64 (--no-auto-scale-lr or enable=False: as written).
auto_scale_lr = dict(enable=True, base_batch_size=64)
