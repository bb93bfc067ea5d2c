"Bad input at the edge: each kind of bad row gets its own clear message; images of any mode load as RGB; the glob mis-pairing is caught."
import warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
from glamdebug.core import GlamError
from glamdebug.data import read_collection, load_rgb, pair_by_stem, check_pairing, collection_dls, split_dl, check_collection, simplify


@pytest.fixture
def col(tmp_path):
    for i in range(6): Image.new('RGB', (12, 10), (30*i, 20, 10)).save(tmp_path/f'im{i}.png')
    df = pd.DataFrame(dict(fname=[f'im{i}.png' for i in range(6)], label=list('abbaba'),
                           split=['train', 'train', 'train', 'train', 'valid', 'valid']))
    df.to_csv(tmp_path/'c.csv', index=False)
    return tmp_path, df


def _err(src, **kw):
    with pytest.raises(GlamError) as e: read_collection(src, **kw)
    return str(e.value)


def test_clean_collection_reads(col):
    path, df = col
    out = read_collection(path/'c.csv')
    assert out.fname.tolist() == df.fname.tolist() and out.attrs['path'] == path.resolve() and out.attrs['dropped'] == []


@pytest.mark.parametrize('edit, expect', [
    (lambda d: d.assign(fname=d.fname.where(d.index != 2, 'gone.png')), ['1 missing file', 'gone.png']),
    (lambda d: d.assign(label=d.label.where(d.index != 3, None)), ['1 empty label', 'line 5 (im3.png)']),
    (lambda d: d.assign(label=d.label.where(d.index != 3, '  ')), ['1 empty label']),
    (lambda d: d.assign(split=d.split.where(d.index != 4, 'val')), ["1 unknown split: line 6: 'val'"]),
    (lambda d: pd.concat([d, d.iloc[[1]]]), ['1 duplicate row', 'im1.png']),
    (lambda d: d.assign(fname=d.fname.where(d.index != 0, None)), ['1 empty file name', 'line 2']),
])
def test_each_bad_input_named(col, edit, expect):
    path, df = col
    edit(df).to_csv(path/'bad.csv', index=False)
    msg = _err(path/'bad.csv')
    assert '1 bad row of' in msg and "on_bad='drop'" in msg
    for s in expect: assert s in msg, (s, msg)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        kept = read_collection(path/'bad.csv', on_bad='drop')
    assert len(kept.attrs['dropped']) == 1 and len(kept) == len(edit(df)) - 1
    assert any('dropped 1 bad row' in str(o.message) for o in w)


def test_unreadable_and_truncated_images(col):
    path, df = col
    (path/'junk.png').write_bytes(b'\x89PNG not really')
    Image.new('RGB', (200, 200), 'blue').save(path/'cut.jpg', quality=95)
    data = (path/'cut.jpg').read_bytes(); (path/'cut.jpg').write_bytes(data[:len(data)//2])
    Image.new('RGB', (40, 40), 'blue').save(path/'cut.png')
    data = (path/'cut.png').read_bytes(); (path/'cut.png').write_bytes(data[:len(data)-30])
    bad = pd.concat([df, pd.DataFrame(dict(fname=['junk.png', 'cut.jpg', 'cut.png'], label='a', split='train'))])
    bad.to_csv(path/'bad.csv', index=False)
    msg = _err(path/'bad.csv')
    assert '3 unreadable images' in msg and 'junk.png' in msg and 'cut.jpg' in msg and 'cut.png' in msg
    assert len(read_collection(path/'bad.csv', check_images=False)) == 9   # opt-out is explicit


def test_missing_columns_and_paths(col, tmp_path):
    path, df = col
    assert "no column 'label'" in _err(df.rename(columns={'label': 'class'}), path=path)
    assert "'class'" in _err(df.rename(columns={'label': 'class'}), path=path)   # names what is there
    assert 'not found' in _err(path/'nope.csv')
    assert 'is a folder' in _err(path)
    (path/'garbage.csv').write_bytes(b'\x00\xff\x00"unterminated\n')
    with pytest.raises(GlamError): read_collection(path/'garbage.csv')


def test_the_original_file_is_never_touched(col):
    path, df = col
    df.assign(split='nope').to_csv(path/'bad.csv', index=False)
    before = (path/'bad.csv').read_bytes()
    with pytest.raises(GlamError): read_collection(path/'bad.csv')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        read_collection(path/'bad.csv', on_bad='drop')
    assert (path/'bad.csv').read_bytes() == before


@pytest.mark.parametrize('mode', ['L', 'LA', 'P', 'RGBA', 'CMYK', 'I;16', '1', 'RGB'])
def test_any_mode_loads_as_rgb_and_trains(tmp_path, mode):
    rng = np.random.default_rng(0)
    for i in range(4):
        if mode == 'I;16': im = Image.fromarray((rng.random((10, 12))*65535).astype(np.uint16))
        else: im = Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).convert(mode)
        im.save(tmp_path/f'x{i}.{"tif" if mode in ("I;16", "CMYK") else "png"}')
    ext = 'tif' if mode in ('I;16', 'CMYK') else 'png'
    out = load_rgb(tmp_path/f'x0.{ext}')
    assert out.mode == 'RGB' and out.size == (12, 10)
    df = pd.DataFrame(dict(fname=[f'x{i}.{ext}' for i in range(4)], label=list('abab'), split=['train', 'train', 'valid', 'valid']))
    dls = collection_dls(read_collection(df, path=tmp_path), size=8, bs=2)
    xb, _ = dls.one_batch()
    assert xb.shape == (2, 3, 8, 8)


def test_16bit_is_scaled_not_clipped(tmp_path):
    a = np.full((4, 4), 32768, np.uint16)            # mid-grey in 16 bits
    Image.fromarray(a).save(tmp_path/'g.tif')
    assert np.asarray(Image.open(tmp_path/'g.tif').convert('RGB')).max() == 255   # PIL's convert saturates
    assert np.asarray(load_rgb(tmp_path/'g.tif')).max() == 128                   # ours scales


def test_glob_mispairing_caught(tmp_path):
    (tmp_path/'img').mkdir(); (tmp_path/'lab').mkdir()
    stems = ['b17', 'a02', 'c33', 'a10']
    for s in stems:
        (tmp_path/'img'/f'{s}.jpg').touch(); (tmp_path/'lab'/f'{s}.txt').write_text(s)
    images = sorted((tmp_path/'img').glob('*.jpg'))
    labels = sorted((tmp_path/'lab').glob('*.txt'), key=lambda p: p.stat().st_ino, reverse=True)   # another order
    if [p.stem for p in labels] == [p.stem for p in images]: labels = labels[::-1]
    with pytest.raises(GlamError, match='not paired'): check_pairing(images, labels)
    pairs = pair_by_stem(images, labels)
    assert all(a.stem == b.read_text() for a, b in pairs) and len(pairs) == 4
    with pytest.raises(GlamError, match='unpaired files'): pair_by_stem(images[:3], labels)
    with pytest.warns(UserWarning): assert len(pair_by_stem(images[:3], labels, strict=False)) == 3


def test_split_dl_and_unknown_labels(col):
    path, df = col
    df = pd.concat([df, pd.DataFrame(dict(fname=['im0.png', 'im1.png'], label=['a', 'z'], split=['test', 'test']))])
    dls = collection_dls(df, path=path, size=8, bs=4)
    assert dls.vocab == ['a', 'b', 'z']               # vocab from every split: test labels always map
    assert len(split_dl(dls, 'test').dataset) == 2
    dls2 = collection_dls(df[df.split != 'test'], path=path, size=8, bs=4)
    with pytest.raises(GlamError, match='labels not in the model vocab: z'): split_dl(dls2, 'test', df=df)


def test_check_collection_and_simplify(col):
    path, df = col
    rep = check_collection(read_collection(path/'c.csv'))
    assert rep.counts.loc['total', 'total'] == 6 and not rep.ok
    assert set(rep.tiny.index) == {'a', 'b'}
    s = simplify(df, n_per_class=1, verbose=False)
    assert s.groupby(['split', 'label']).size().max() == 1 and len(s) == 4


def test_predict_a_file_as_path_or_str(tmp_path):
    "fastai users predict a file as a `Path` (fastai's own `get_image_files` gives them); it failed deep in fastai's type inference"
    import torch
    from fastai.learner import load_learner
    from fastai.torch_core import set_seed
    from glamdebug.samples import sample_collection
    from glamdebug.models import defaults_learner
    torch.set_num_threads(1)
    root = sample_collection()
    df = read_collection(root/'collection.csv', check_images=False)
    set_seed(0)
    learn = defaults_learner(collection_dls(df, size=32))
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    fn = root/df.fname.iloc[-1]
    p_path, p_str = learn.predict(fn), learn.predict(str(fn))
    assert p_path[0] == p_str[0] and torch.equal(p_path[2], p_str[2])
    learn.export(tmp_path/'model.pkl')
    again = load_learner(tmp_path/'model.pkl')
    assert torch.allclose(again.predict(fn)[2], p_path[2])


def test_absolute_file_names_read(col, tmp_path_factory):
    "A catalogue often lists files by absolute path: they load as they are (fastai's `ColReader` prefix made 'root//abs/path')"
    path, df = col
    elsewhere = tmp_path_factory.mktemp('csv_elsewhere')
    absolute = df.assign(fname=[str((path/f).resolve()) for f in df.fname])
    absolute.to_csv(elsewhere/'c.csv', index=False)
    out = read_collection(elsewhere/'c.csv', progress=False)
    dls = collection_dls(out, size=8, bs=2)
    x, y = dls.one_batch()
    assert x.shape == (2, 3, 8, 8)
    xs = [b[0] for b in dls.valid]
    rel = collection_dls(read_collection(path/'c.csv', progress=False), size=8, bs=2)
    assert all((a == b).all() for a, b in zip(xs, [b[0] for b in rel.valid]))  # the same pixels as through the relative names
