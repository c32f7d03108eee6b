"""Every shell command of README.md and docs/*.md is run by a test.

``COVERED`` names, for each command as ``doc_blocks.shell_commands`` reads it, the tests that
run it: tests that read it out of its page and run it as written (on generated data, with
options appended that shrink the run), or, for a usage line with placeholders (``CONFIG``,
``CKPT``, ``[options]``), the tests that run that tool with those options. A command added to
the pages without an entry fails ``test_every_documented_command_is_run_by_a_test``, and so does
an entry whose command left them. The commands that no other test runs are run here, read out
of their pages.
"""

import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import torch
from data_factory import make_coco_dataset
from doc_blocks import REPO, all_shell_commands, fenced_blocks, shell_commands
from mmdet.datasets import CocoDataset
from test_tools.tool_runner import load_tool, run

ME = 'tests/test_docs/test_doc_commands.py'
OWN_DATA = 'tests/test_tools/test_readme_own_data.py'
TRAIN_TEST = 'tests/test_tools/test_train_test.py'
EXPORT = 'tests/test_tools/test_export_onnx.py'
MIM = 'tests/test_tools/test_mim.py::test_mim_train_distributed_and_test'
DEMO = 'tests/test_tools/test_demo.py::test_run_demo_end_to_end'
AMP = 'tests/test_engine/test_amp.py'
COVERAGE = 'tests/test_tools/test_default_box_coverage.py'
CONVERTERS = 'tests/test_tools/test_model_converters'
DIST = 'tests/test_tools/test_dist_train.py'

COVERED = {
    # README.md
    'make demo': (f'{ME}::test_make_targets_run_the_documented_steps', DEMO),
    'make test': (f'{ME}::test_make_targets_run_the_documented_steps',),
    # docs/analysis.md
    'python tools/analysis/default_box_coverage.py CONFIG [--data-root DIR] [--optimize] '
    '[--out-dir D]': (f'{COVERAGE}::test_cli_writes_png_and_json_and_prints_the_snippet',
                      f'{OWN_DATA}::test_own_data_example_runs_as_written'),
    'python tools/analysis/default_box_coverage.py configs/ssd300_vgg16_8xb8-120e_coco.py '
    '--synthetic-coco 118287 860001 --optimize':
        (f'{COVERAGE}::test_synthetic_coco_replaces_the_training_annotations',),
    'python -c "import sys, torch; from ssd_plugin.engine.checkpoint import load_state_dict_file '
    "as f; sd, ck = f(sys.argv[1]); torch.save(dict(state_dict=sd, meta=ck['meta']), "
    'sys.argv[2])" iter_2000.pth weights.pth': (f'{ME}::test_weights_only_copy_runs_as_written',),
    # docs/caffe_models.md
    'python tools/model_converters/caffe_ssd_to_plugin.py deploy.prototxt model.caffemodel '
    '--out-dir work_dirs/caffe_ssd [--classes NAME ... | --labelmap labelmap.prototxt] '
    '[--mean B G R] [--std S S S] [--input-order bgr|rgb]':
        ('tests/test_caffe/test_cli.py::test_cli_writes_config_and_prints_assumptions',
         f'{ME}::test_converted_caffe_model_runs_in_the_tools_as_written'),
    'python tools/test.py work_dirs/caffe_ssd/config.py work_dirs/caffe_ssd/model.pth':
        (f'{ME}::test_converted_caffe_model_runs_in_the_tools_as_written',),
    "python tools/image_demo.py work_dirs/caffe_ssd/config.py work_dirs/caffe_ssd/model.pth "
    "'photos/*.jpg' --out-dir outputs":
        (f'{ME}::test_converted_caffe_model_runs_in_the_tools_as_written',),
    'python tools/deploy/export_onnx.py work_dirs/caffe_ssd/config.py '
    'work_dirs/caffe_ssd/model.pth model.onnx --with-nms':
        (f'{ME}::test_converted_caffe_model_runs_in_the_tools_as_written',),
    'python tools/model_converters/fetch_caffe_face_detector.py':
        ('tests/test_caffe/test_face_detector_files.py::test_fetch_tool_prints_the_paths',),
    'python tools/model_converters/caffe_ssd_to_plugin.py deploy.prototxt '
    'res10_300x300_ssd_iter_140000.caffemodel --out-dir work_dirs/face --classes face '
    '--mean 104 177 123':
        ('tests/test_caffe/test_opencv_parity.py::test_face_detector_matches_opencv',
         'tests/test_caffe/test_cli.py::test_cli_writes_config_and_prints_assumptions'),
    "python tools/image_demo.py work_dirs/face/config.py work_dirs/face/model.pth 'photos/*.jpg' "
    '--out-dir faces --score-thr 0.5':
        (f'{ME}::test_converted_caffe_model_runs_in_the_tools_as_written',
         'tests/test_tools/test_image_demo.py::test_demo_matches_python_api'),
    # docs/deploy.md
    "python tools/image_demo.py CONFIG CKPT 'photos/*.jpg' --out-dir outputs --score-thr 0.3":
        ('tests/test_tools/test_image_demo.py::test_demo_matches_python_api',),
    'python tools/deploy/export_onnx.py CONFIG CKPT ssd300.onnx --with-nms':
        (f'{EXPORT}::test_with_nms_matches_inference_detector',),
    'python tools/deploy/export_onnx.py CONFIG CKPT raw.onnx --dynamic-size':
        (f'{EXPORT}::test_raw_dynamic_size_matches_forward',),
    'python tools/deploy/export_onnx.py configs/ssd_demo_shapes.py work_dirs/demo/iter_2000.pth '
    'work_dirs/demo/model.onnx --with-nms': (f'{EXPORT}::test_quantize_int8_end_to_end',),
    'python tools/deploy/quantize_onnx.py configs/ssd_demo_shapes.py work_dirs/demo/model.onnx '
    'work_dirs/demo/model_int8.onnx --calib-images 200 --eval':
        (f'{EXPORT}::test_quantize_int8_end_to_end',),
    # docs/cpu_runtimes.md
    'python tools/deploy/quantize_onnx.py configs/ssd_demo_shapes.py work_dirs/demo/model.onnx '
    'work_dirs/demo/model_int8.onnx --calib-images 200 --target avx2 --eval':
        (f'{EXPORT}::test_quantize_int8_end_to_end',),
    'python tools/deploy/quantize_openvino.py configs/ssd_demo_shapes.py work_dirs/demo/model.onnx '
    'work_dirs/demo/model_ov_int8.xml --calib-images 200':
        (f'{EXPORT}::test_every_runtime_scored_next_to_pytorch',),
    'python tools/deploy/eval_runtimes.py configs/ssd_demo_shapes.py work_dirs/demo/iter_2000.pth '
    'work_dirs/demo/model.onnx work_dirs/demo/model_ov_int8.xml':
        (f'{EXPORT}::test_every_runtime_scored_next_to_pytorch',),
    'bash tools/benchmarks/cpu_report.sh':
        ('tests/test_tools/test_cpu_report.py::test_cpu_report_prints_the_flags_load_and_both_tables',),
    'bash tools/benchmarks/cpu_report.sh --quick':
        ('tests/test_tools/test_cpu_report.py::test_cpu_report_prints_the_flags_load_and_both_tables',),
    'make test-isa': (f'{ME}::test_make_test_runs_the_isa_tests_as_an_avx2_cpu',),
    'bash tools/cpu_kind/run_as.sh avx2 COMMAND [ARGS...]':
        ('tests/test_tools/test_cpu_kind.py::'
         'test_avx2_kind_reaches_onnx_runtime_openvino_torch_and_the_int8_target',),
    'bash tools/cpu_kind/run_as.sh avx512_core COMMAND [ARGS...]':
        ('tests/test_tools/test_cpu_kind.py::test_avx512_core_kind_keeps_avx512_but_not_vnni',),
    'bash tools/cpu_kind/run_as.sh avx2 bash tools/benchmarks/cpu_report.sh':
        ('tests/test_tools/test_cpu_report.py::test_cpu_report_prints_the_flags_load_and_both_tables',
         'tests/test_tools/test_cpu_kind.py::'
         'test_avx2_kind_reaches_onnx_runtime_openvino_torch_and_the_int8_target'),
    # docs/own_data.md
    'python tools/make_demo_dataset.py --out data/my_shapes':
        (f'{OWN_DATA}::test_own_data_example_runs_as_written',),
    'python tools/analysis/default_box_coverage.py configs/my_shapes.py --data-root data/my_shapes '
    '--optimize --out-dir work_dirs/my_shapes_coverage':
        (f'{OWN_DATA}::test_own_data_example_runs_as_written',),
    'python tools/train.py configs/my_shapes.py --data-root data/my_shapes '
    '--work-dir work_dirs/my_shapes': (f'{OWN_DATA}::test_own_data_example_runs_as_written',),
    'python tools/test.py configs/my_shapes.py work_dirs/my_shapes/iter_2000.pth '
    '--data-root data/my_shapes': (f'{OWN_DATA}::test_own_data_example_runs_as_written',),
    'python tools/analysis/check_dataset.py configs/my_voc.py --data-root data/my_voc '
    '--split train val': (f'{OWN_DATA}::test_dataset_check_command_runs_as_written',),
    # docs/pretrained.md
    'python tools/model_converters/torchvision_vgg16_to_reduced.py vgg16-397923af.pth '
    'checkpoints/vgg16_reducedfc_plugin.pth':
        (f'{CONVERTERS}/test_vgg_converters.py::'
         'test_torchvision_conv_layers_reproduce_torchvision_features',),
    'python tools/model_converters/caffe_vgg16_reducedfc_to_reduced.py vgg16_reducedfc.pth '
    'checkpoints/vgg16_reducedfc_plugin.pth':
        (f'{CONVERTERS}/test_vgg_converters.py::test_caffe_reducedfc_equals_the_sequential_layout',),
    'python tools/model_converters/mmdet_ssd_to_plugin.py '
    'ssd300_coco_20210803_015428-d231a06e.pth ssd300_plugin.pth':
        (f'{ME}::test_converted_checkpoints_test_as_written',
         f'{CONVERTERS}/test_mmdet_ssd_to_plugin.py::'
         'test_cli_converts_mmengine_checkpoint_and_keeps_meta'),
    'python tools/test.py configs/ssd300_vgg16_8xb8-120e_coco.py ssd300_plugin.pth':
        (f'{ME}::test_converted_checkpoints_test_as_written',),
    'python tools/model_converters/torchvision_ssd_to_plugin.py ssd300_vgg16_coco-b556d3b4.pth '
    'ssd300_vgg16_tv_plugin.pth': (f'{ME}::test_converted_checkpoints_test_as_written',
                                   f'{CONVERTERS}/test_torchvision_ssd_to_plugin.py::'
                                   'test_detections_equal_torchvision_without_na'),
    'python tools/test.py configs/ssd300_vgg16_torchvision_coco.py ssd300_vgg16_tv_plugin.pth':
        (f'{ME}::test_converted_checkpoints_test_as_written',),
    'python tools/model_converters/torchvision_ssd_to_plugin.py '
    'ssdlite320_mobilenet_v3_large_coco-a79551df.pth ssdlite320_tv_plugin.pth':
        (f'{ME}::test_converted_checkpoints_test_as_written',),
    'python tools/test.py configs/ssdlite320_mobilenetv3-large_torchvision_coco.py '
    'ssdlite320_tv_plugin.pth': (f'{ME}::test_converted_checkpoints_test_as_written',),
    # docs/train_test.md
    'mim train ssd_plugin ssd300_vgg16_8xb8-120e_coco.py': (MIM,),
    'mim train ssd_plugin ssd300_vgg16_8xb8-120e_coco.py --launcher pytorch --gpus 8': (MIM,),
    'mim test ssd_plugin ssd300_vgg16_8xb8-120e_coco.py --checkpoint ckpt.pth '
    '--launcher pytorch --gpus 8': (MIM,),
    'python tools/train.py CONFIG [--work-dir D] [--data-root DIR] [--resume [CKPT]] '
    '[--amp [--amp-dtype bfloat16|float16]] [--[no-]auto-scale-lr] [--cfg-options k=v ...]':
        (f'{TRAIN_TEST}::test_command_line_to_config',
         f'{TRAIN_TEST}::test_train_resume_test_and_rescore'),
    'python tools/test.py CONFIG CKPT [--data-root DIR] [--out results.pkl] [--show-dir vis] '
    '[--amp]': (f'{TRAIN_TEST}::test_train_resume_test_and_rescore',
                f'{TRAIN_TEST}::test_data_root_moves_the_data_of_every_tool'),
    'python tools/analysis/rescore_results.py CONFIG results.pkl':
        (f'{TRAIN_TEST}::test_train_resume_test_and_rescore',),
    'python tools/test.py configs/ssd300_vgg16_8xb8-120e_coco_test-dev.py CKPT':
        (f'{TRAIN_TEST}::test_coco_test_dev_submission',),
    'python tools/train.py CONFIG --amp':
        (f'{AMP}::test_train_amp_on_the_cpu_lowers_the_loss_and_saves_float32',
         f'{AMP}::test_train_amp_on_a_cpu_without_bf16_falls_back_and_says_so'),
    'python tools/train.py CONFIG --amp --amp-dtype float16':
        (f'{AMP}::test_float16_on_the_cpu_and_unknown_dtypes_are_refused',
         'tests/test_cli/test_amp_options.py::test_apply_amp_cfg_on_a_simulated_gpu'),
    'python tools/test.py CONFIG CKPT --amp':
        (f'{TRAIN_TEST}::test_test_amp_runs_the_network_in_the_logged_precision',),
    'python tools/image_demo.py CONFIG CKPT IMAGES --amp':
        (f'{AMP}::test_image_demo_amp_runs_the_network_in_bf16',),
    'mim train ssd_plugin CONFIG --amp': (DEMO,),
    # docs/distributed.md: the same launches on CPUs (gloo), a tiny config, 1-2 processes
    'python tools/train.py configs/ssd300_vgg16_8xb8-120e_coco.py':
        (f'{DIST}::test_each_launch_states_and_records_its_global_batch',),
    'bash tools/dist_train.sh configs/ssd300_vgg16_8xb8-120e_coco.py 8':
        (f'{DIST}::test_ranks_log_the_mean_loss_and_end_with_the_same_weights',),
    'NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.1.1 bash tools/dist_train.sh '
    'configs/ssd300_vgg16_8xb8-120e_coco.py 8':
        (f'{DIST}::test_the_global_batch_decides_the_model_not_the_process_count',),
    'NNODES=2 NODE_RANK=1 MASTER_ADDR=10.1.1.1 bash tools/dist_train.sh '
    'configs/ssd300_vgg16_8xb8-120e_coco.py 8':
        (f'{DIST}::test_the_global_batch_decides_the_model_not_the_process_count',),
    'GPUS=16 bash tools/slurm_train.sh PARTITION ssd300 configs/ssd300_vgg16_8xb8-120e_coco.py '
    'work_dirs/ssd300': (f'{DIST}::test_the_global_batch_decides_the_model_not_the_process_count',),
    'python tools/train.py CONFIG --no-auto-scale-lr':
        (f'{DIST}::test_scaling_off_warns_that_the_lr_does_not_follow_the_batch',),
    'python tools/train.py CONFIG --sync-bn': (f'{TRAIN_TEST}::test_command_line_to_config',
                                               f'{TRAIN_TEST}::test_sync_bn_on_cpus_stops_before_the_run'),
    'python tools/train.py CONFIG --seed 0 --deterministic':
        (f'{TRAIN_TEST}::test_seed_and_deterministic_give_identical_checkpoints',),
    'python tools/benchmarks/dist_memory.py --synthetic-coco 118287 860001 --processes 2 '
    '--workers 2':
        ('tests/test_tools/test_benchmarks.py::test_dist_memory_measures_both_datasets',),
}  # fmt: skip


def _evidence(command: str) -> str:
    """What a test file that runs ``command`` mentions: its script's name, or the docs reader."""
    words = shlex.split(command.replace('[', ' ').replace(']', ' '))
    scripts = [osp.basename(w) for w in words if w.startswith('tools/')]
    if scripts:
        return scripts[0]
    return {'mim': 'mim', 'make': 'make'}.get(words[0], 'doc_blocks')


def test_every_documented_command_is_run_by_a_test():
    documented = all_shell_commands()
    unmapped = [f'{c!r} ({", ".join(docs)})' for c, docs in documented.items() if c not in COVERED]
    assert not unmapped, f'commands no test is named for in {ME} COVERED: {unmapped}'
    stale = [c for c in COVERED if c not in documented]
    assert not stale, f'COVERED names commands that are no longer documented: {stale}'
    for command, tests in COVERED.items():
        texts = []
        for test in tests:
            path, _, name = test.partition('::')
            texts.append(open(osp.join(REPO, path)).read())
            assert re.search(rf'^def {name}\(', texts[-1], re.M), f'{command!r}: no {test}'
        run_by = 'run_demo.sh' if command == 'make demo' else _evidence(command)
        assert any(run_by in text for text in texts), f'{command!r}: {tests} never name {run_by!r}'


def _make_dry_run(target: str) -> str:
    make = shutil.which('make')
    assert make, 'make is not installed: `make demo` and `make test` need it'
    # as from a shell: not the variables of a `make test` this suite may be running under
    env = {k: v for k, v in os.environ.items() if k not in ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL')}
    proc = subprocess.run([make, '-n', target], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_make_targets_run_the_documented_steps():
    """README's two commands: the steps the Makefile runs for them (``make -n``, nothing runs)."""
    readme = [c for b in fenced_blocks('README.md', lang='bash') for c in shell_commands(b)]
    assert readme[:2] == ['make demo', 'make test']
    demo = _make_dry_run('demo')
    assert re.search(r'^DEMO_AMP=1 bash tools/run_demo.sh work_dirs/demo$', demo, re.M), demo
    test = _make_dry_run('test')
    for step in ('-m ruff format --check .', '-m ruff check .', '-m pytest -n 2 tests'):
        assert step in test, f'make test does not run {step!r}:\n{test}'


def test_make_test_runs_the_isa_tests_as_an_avx2_cpu():
    """docs/cpu_runtimes.md's `make test-isa`, which `make test` (and so CI) runs after the suite:
    the instruction-set-sensitive tests as an AVX2-only CPU (tools/cpu_kind/run_as.sh, whose
    effect on every library test_cpu_kind.py checks)."""
    isa = _make_dry_run('test-isa')
    capped = re.search(r'^bash tools/cpu_kind/run_as.sh avx2 \S+ -m pytest -n 2 (.+)$', isa, re.M)
    assert capped, isa
    for path in capped.group(1).split():
        assert osp.exists(osp.join(REPO, path)), path
    assert 'tests/test_engine/test_amp.py' in capped.group(1).split()
    assert capped.group(0) in _make_dry_run('test')


def _training_checkpoint(path: str) -> dict:
    """A checkpoint as mmengine's runner writes one: weights, meta and its MessageHub state."""
    from mmengine.logging import MessageHub
    from mmengine.runner import save_checkpoint

    hub = MessageHub.get_instance('doc_commands')
    hub.update_scalar('train/loss', 1.5)
    state = {'backbone.weight': torch.randn(4, 3), 'head.bias': torch.randn(4)}
    meta = dict(iter=2000, dataset_meta=dict(classes=('a', 'b')))
    save_checkpoint(dict(state_dict=state, meta=meta, message_hub=hub.state_dict()), path)
    return dict(state_dict=state, meta=meta)


def test_weights_only_copy_runs_as_written(tmp_path):
    """docs/analysis.md's one-liner makes a copy that torch's weights-only loader accepts."""
    (block,) = fenced_blocks('docs/analysis.md', "## mmdet's analysis tools", 'bash')
    (command,) = shell_commands(block)
    expected = _training_checkpoint(str(tmp_path / 'iter_2000.pth'))
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(tmp_path / 'iter_2000.pth', weights_only=True)  # why the one-liner exists
    argv = shlex.split(command)
    assert argv[0] == 'python'
    run([sys.executable, *argv[1:]], cwd=str(tmp_path))
    copy = torch.load(tmp_path / 'weights.pth', weights_only=True)
    assert copy['meta'] == expected['meta']
    assert copy['state_dict'].keys() == expected['state_dict'].keys()
    for key, value in expected['state_dict'].items():
        assert torch.equal(copy['state_dict'][key], value), key


def _tiny_val2017(root: str, classes) -> list:
    """A COCO-layout val split (``annotations/instances_val2017.json``, ``val2017/``) at ``root``.

    Returns the options that point a tool's config at it, one image per batch, no workers.
    """
    make_coco_dataset(
        root, classes, {'instances_val2017': [1000, 3]}, num_labels=min(3, len(classes))
    )
    os.rename(osp.join(root, 'instances_val2017'), osp.join(root, 'val2017'))
    loader = ('batch_size=1', 'num_workers=0', 'persistent_workers=False')
    return ['--data-root', root, '--cfg-options', *(f'test_dataloader.{o}' for o in loader)]


def _run_as_written(command: str, appended=()) -> None:
    """Run a documented ``python tools/...`` command in this process, ``appended`` added."""
    argv = shlex.split(command)
    assert argv[0] == 'python' and argv[1].startswith('tools/'), command
    status = load_tool(argv[1].removeprefix('tools/')).main([*argv[2:], *appended])
    assert status in (None, 0), f'{command}: exit status {status}'


def _confident(state_dict: dict, classifier_bias: str, num_scores: int, column: int) -> dict:
    """Raise one class's logit by 8 in every classifier bias matching ``classifier_bias``.

    A freshly initialised head scores near 1/num_scores (~0.012), around the configs'
    ``score_thr``, so whether any box survives would turn on float rounding; with the raised
    logit every default box scores e^8 / (e^8 + num_scores - 1) > 0.97 for that class on any CPU.
    """
    biases = [v for k, v in state_dict.items() if re.fullmatch(classifier_bias, k)]
    assert len(biases) == 6, (classifier_bias, len(biases))  # one per SSD level
    for bias in biases:
        bias.view(-1, num_scores)[:, column] += 8
    return state_dict


def _torchvision_checkpoint(builder, path: str) -> None:
    torch.manual_seed(0)
    model = builder(weights=None, weights_backbone=None, num_classes=91)
    # torchvision's final classifier conv per level; column 0 is the background, 1 a person
    bias = r'head\.classification_head\.module_list\.\d+(\.1)?\.bias'
    torch.save(_confident(model.state_dict(), bias, 91, 1), path)


def _mmdet_checkpoint(path: str) -> None:
    import mmdet
    from mmdet.registry import MODELS
    from mmengine.config import Config

    config = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'ssd', 'ssd300_coco.py')
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None  # no download
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    # as mmdet's runner does: building leaves some weights (the L2Norm's scale) as uninitialised
    # memory, whose garbage made the test's detections NaN in some processes
    model.init_weights()
    # mmdet's classifier conv per level; the background is the last of 81 columns
    state_dict = _confident(model.state_dict(), r'bbox_head\.cls_convs\.\d+\.0\.bias', 81, 0)
    torch.save(dict(state_dict=state_dict, meta=dict()), path)


@pytest.mark.parametrize(
    'heading', ["## mmdet's SSD checkpoints", "## torchvision's SSD checkpoints"]
)
def test_converted_checkpoints_test_as_written(heading, tmp_path, monkeypatch):
    """docs/pretrained.md: each converter's output tests in its config, every weight loaded.

    The published files stand in as freshly initialised models of the same architectures
    (nothing is downloaded), under the documented names; the configs test on a tiny COCO split.
    """
    from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

    monkeypatch.chdir(tmp_path)
    os.symlink(osp.join(REPO, 'configs'), tmp_path / 'configs')
    sources = {
        'ssd300_coco_20210803_015428-d231a06e.pth': _mmdet_checkpoint,
        'ssd300_vgg16_coco-b556d3b4.pth': lambda p: _torchvision_checkpoint(ssd300_vgg16, p),
        'ssdlite320_mobilenet_v3_large_coco-a79551df.pth':
            lambda p: _torchvision_checkpoint(ssdlite320_mobilenet_v3_large, p),
    }  # fmt: skip
    data = _tiny_val2017(str(tmp_path / 'coco'), CocoDataset.METAINFO['classes'])
    (block,) = fenced_blocks('docs/pretrained.md', heading, 'bash')
    commands = shell_commands(block)
    assert len(commands) in (2, 4)
    for command in commands:
        argv = shlex.split(command)
        if 'model_converters' in argv[1]:
            sources[argv[2]](argv[2])
            _run_as_written(command)
        else:
            work_dir = tmp_path / 'test' / argv[3]
            _run_as_written(command, [*data, f'work_dir={work_dir}'])
            (metrics,) = work_dir.glob('*/*.json')
            assert 'coco/bbox_mAP' in metrics.read_text()
            (log,) = work_dir.glob('*/*.log')
            log = log.read_text()
            assert f'Load checkpoint from {argv[3]}' in log
            assert 'do not match exactly' not in log  # every weight loaded, none left over


def test_converted_caffe_model_runs_in_the_tools_as_written(tmp_path, monkeypatch):
    """docs/caffe_models.md: a Caffe SSD, converted, tests, draws and exports as written.

    A random-weight Caffe net of every mapped layer kind (tests/test_caffe/tiny_ssd.py) stands in
    for ``deploy.prototxt`` + ``model.caffemodel``; the usage line runs with ``--classes``.
    """
    sys.path.insert(0, osp.join(REPO, 'tests', 'test_caffe'))
    from tiny_ssd import NUM_CLASSES, write_net

    monkeypatch.chdir(tmp_path)
    prototxt, caffemodel, _ = write_net(tmp_path)
    os.rename(prototxt, 'deploy.prototxt')
    os.rename(caffemodel, 'model.caffemodel')
    (block, face) = fenced_blocks('docs/caffe_models.md', '# Caffe SSD models', 'bash')
    convert, test, demo, export = shell_commands(block)
    classes = [f'c{i}' for i in range(NUM_CLASSES - 1)]  # NUM_CLASSES counts the background
    usage = convert.split(' [', 1)[0]  # the line without its optional parts
    _run_as_written(usage, ['--classes', *classes])
    _run_as_written(test, _tiny_val2017(str(tmp_path / 'coco'), classes))
    os.makedirs('photos')
    make_coco_dataset(str(tmp_path / 'images'), classes, {'photos': [5, 6]}, num_labels=2)
    for image in (tmp_path / 'images' / 'photos').iterdir():
        shutil.copy(image, tmp_path / 'photos' / image.name)
    _run_as_written(demo)
    assert len(list((tmp_path / 'outputs' / 'vis').glob('*.png'))) == 2
    _run_as_written(export)
    assert (tmp_path / 'model.onnx').stat().st_size > 0
    # the face detector's demo line, on this model in the face detector's folder
    *_, face_demo = shell_commands(face)
    shutil.copytree(tmp_path / 'work_dirs' / 'caffe_ssd', tmp_path / 'work_dirs' / 'face')
    _run_as_written(face_demo)
    assert len(list((tmp_path / 'faces' / 'vis').glob('*.png'))) == 2
