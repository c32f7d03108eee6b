"""The converters' shared command line: wrapper and meta kept or not, the printed line, errors."""

import pytest
import torch

from ssd_plugin.cli.checkpoint_conversion import convert_checkpoint_file, converter_main
from ssd_plugin_cli.options import converter_parser


def _args(argv):
    return converter_parser('test converter', 'in', 'out').parse_args(argv)


def _rename(state_dict, source):
    if 'w' not in state_dict:
        raise KeyError(f'{source}: no w')
    return {'renamed.w': state_dict['w'] * 2}


def test_wrapped_checkpoint_stays_wrapped_with_its_meta(tmp_path, capsys):
    src, dst = str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth')
    meta = dict(epoch=3, dataset_meta=dict(classes=('a',)))
    torch.save(dict(state_dict={'w': torch.ones(2)}, meta=meta, optimizer={'lr': 1}), src)
    converter_main(_rename, _args([src, dst]))
    saved = torch.load(dst, map_location='cpu')
    assert set(saved) == {'state_dict', 'meta'} and saved['meta'] == meta  # optimizer dropped
    assert torch.equal(saved['state_dict']['renamed.w'], torch.full((2,), 2.0))
    assert capsys.readouterr().out == f'converted 1 tensors from {src} to {dst}\n'


def test_bare_input_or_keep_wrapper_false_gives_a_bare_state_dict(tmp_path, capsys):
    bare, wrapped = str(tmp_path / 'bare.pth'), str(tmp_path / 'wrapped.pth')
    torch.save({'w': torch.ones(1)}, bare)
    torch.save(dict(state_dict={'w': torch.ones(1)}, meta={}), wrapped)
    for src in (bare, wrapped):
        dst = str(tmp_path / 'out.pth')
        read, converted = convert_checkpoint_file(src, dst, _rename, keep_wrapper=src == bare)
        assert list(read) == ['w']
        assert list(torch.load(dst, map_location='cpu')) == ['renamed.w'] == list(converted)
    converter_main(_rename, _args([bare, dst]), describe=lambda sd, src: f'{len(sd)}-key model')
    assert capsys.readouterr().out == f'converted 1 tensors of 1-key model from {bare} to {dst}\n'


def test_errors_name_the_file(tmp_path):
    src = str(tmp_path / 'other.pth')
    torch.save({'x': torch.ones(1)}, src)
    with pytest.raises(KeyError, match='other.pth: no w'):
        converter_main(_rename, _args([src, str(tmp_path / 'out.pth')]))
    assert not (tmp_path / 'out.pth').exists()
