"""tools/analysis/default_box_coverage.py end to end on a tiny config (subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / 'test_analysis'))
from synthetic_coco import tiny_config, write_config, write_synthetic_coco  # noqa: E402

ROOT = TESTS.parent
TOOL = ROOT / 'tools' / 'analysis' / 'default_box_coverage.py'


def _run(*args):
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )


def test_cli_writes_png_and_json_and_prints_the_snippet(tmp_path):
    ann = tmp_path / 'tiny.json'
    write_synthetic_coco(str(ann), 20, 120, side_range=(3, 40), image_size=(300, 300), seed=5)
    config = write_config(str(tmp_path / 'tiny_cfg.py'), tiny_config(str(ann)))
    out = tmp_path / 'out'
    result = _run(config, '--out-dir', out, '--optimize', '--search-gts', 100)
    assert result.returncode == 0, result.stderr
    assert (out / 'coverage.png').stat().st_size > 10_000
    data = json.loads((out / 'coverage.json').read_text())
    report, optimized = data['report'], data['optimized']
    assert report['overall']['num_gts'] == 120 and report['num_priors'] == 8732
    assert data['search']['search_gts'] == 100
    assert optimized['prior_generator']['scale_range'] == list(
        data['search']['overrides']['scale_range']
    )
    assert optimized['by_size']['small']['coverage'] > report['by_size']['small']['coverage']
    assert 'model = dict(bbox_head=dict(prior_generator=dict(scale_range=(' in result.stdout
    assert f'coverage@0.5 {report["overall"]["coverage"]:.3f}' in result.stdout


def test_cli_names_a_missing_annotation_file(tmp_path):
    config = write_config(str(tmp_path / 'cfg.py'), tiny_config(str(tmp_path / 'missing.json')))
    result = _run(config, '--out-dir', tmp_path / 'out')
    assert result.returncode != 0
    assert 'missing.json does not exist' in result.stderr
    assert not (tmp_path / 'out').exists()


def test_synthetic_coco_replaces_the_training_annotations(tmp_path):
    """--synthetic-coco (the COCO-sized figures of docs/analysis.md): a file of that size."""
    config = write_config(str(tmp_path / 'cfg.py'), tiny_config(str(tmp_path / 'missing.json')))
    out = tmp_path / 'out'
    result = _run(config, '--out-dir', out, '--synthetic-coco', 40, 500)
    assert result.returncode == 0, result.stderr
    coco = json.loads((out / 'synthetic_coco.json').read_text())
    assert len(coco['images']) == 40 and len(coco['annotations']) == 500
    assert [c['name'] for c in coco['categories']] == ['a', 'b', 'c']  # the config's classes
    crowd = sum(a['iscrowd'] for a in coco['annotations'])
    assert 0 < crowd < 20  # 1 %
    report = json.loads((out / 'coverage.json').read_text())['report']
    assert report['num_images'] == 40 and report['overall']['num_gts'] == 500 - crowd
    assert f'{500 - crowd:>8} gts' in result.stdout
    again = _run(config, '--out-dir', tmp_path / 'again', '--synthetic-coco', 40, 500)
    assert again.returncode == 0, again.stderr
    written = (out / 'synthetic_coco.json').read_bytes()
    assert (tmp_path / 'again' / 'synthetic_coco.json').read_bytes() == written  # seeded
