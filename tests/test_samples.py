"Sample collection: determinism (same seed -> same bytes, equal to the shipped copy), layout, counts, digits round-trip"
import hashlib
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
from fastcore.test import test_eq as t_eq
from glamdebug.samples import (make_sample_collection, sample_collection, digits_collection, SAMPLE_CLASSES,
                               SAMPLE_SPLITS, _shipped_samples)

REPO_SAMPLES = Path(__file__).resolve().parent.parent/'data'/'samples'

def _files(p):
    return {f.relative_to(p).as_posix(): f.read_bytes() for f in sorted(Path(p).rglob('*')) if f.is_file()}

@pytest.fixture(scope='module')
def fresh(tmp_path_factory):
    "The default collection rendered twice into temporary folders"
    root = tmp_path_factory.mktemp('samples')
    return make_sample_collection(root/'a', progress=False), make_sample_collection(root/'b', progress=False)

def test_same_seed_same_bytes(fresh):
    a, b = map(_files, fresh)
    t_eq(sorted(a), sorted(b))
    diff = [k for k in a if a[k] != b[k]]
    assert not diff, f'{len(diff)} files differ between two runs with the same seed, e.g. {diff[:3]}'

def test_shipped_copy_is_the_default_collection(fresh):
    if not (REPO_SAMPLES/'collection.csv').exists(): pytest.skip('not a repository checkout')
    new, shipped = _files(fresh[0]), _files(REPO_SAMPLES)
    t_eq(sorted(new), sorted(shipped))
    t_eq(new['collection.csv'], shipped['collection.csv'])
    diff = [k for k in new if new[k] != shipped[k]]
    if diff:  # another Pillow/zlib/libjpeg can encode the same pixels to other bytes: then the pixels must agree
        for k in diff:
            a = np.asarray(Image.open(fresh[0]/k), np.int16); s = np.asarray(Image.open(REPO_SAMPLES/k), np.int16)
            tol = 0 if k.endswith('.png') else 3
            assert np.abs(a - s).max() <= tol, f'{k}: the shipped copy is not what seed 0 renders; regenerate data/samples'
        pytest.xfail(f'same pixels, other bytes in {len(diff)} files (different image encoder version)')

def test_shipped_copy_is_small():
    if not (REPO_SAMPLES/'collection.csv').exists(): pytest.skip('not a repository checkout')
    size = sum(f.stat().st_size for f in REPO_SAMPLES.rglob('*') if f.is_file())
    assert size <= 5*2**20, f'data/samples is {size/2**20:.1f} MB'
    t_eq(sample_collection(), _shipped_samples())
    t_eq(_shipped_samples().resolve(), REPO_SAMPLES)

def test_csv_layout_and_counts(fresh):
    p = fresh[0]
    df = pd.read_csv(p/'collection.csv')
    t_eq(list(df.columns), ['fname', 'label', 'split'])
    t_eq(sorted(df.label.unique()), sorted(SAMPLE_CLASSES))
    t_eq(list(df.split.unique()), list(SAMPLE_SPLITS))
    n = df.groupby(['split', 'label']).size().unstack()
    t_eq(n.loc["train"].tolist(), [60]*6)
    for s in ('valid', 'test', 'test_shifted'): t_eq(n.loc[s].tolist(), [15]*6)
    t_eq(df.fname.is_unique, True)
    # sorted deterministically: by split (in SAMPLE_SPLITS order), label, file name
    key = df.assign(s=df.split.map({s: i for i, s in enumerate(SAMPLE_SPLITS)})).sort_values(['s', 'label', 'fname'])
    t_eq(key.index.tolist(), df.index.tolist())
    # the parent folder is the label, the grandparent the split
    t_eq((df.fname.map(lambda f: Path(f).parent.name) == df.label).all(), True)
    t_eq((df.fname.map(lambda f: Path(f).parent.parent.name) == df.split).all(), True)
    t_eq(set(df.fname.str[-4:][df.split == 'test_shifted']), {'.jpg'})
    t_eq(set(df.fname.str[-4:][df.split != 'test_shifted']), {'.png'})
    # every file is there and opens as a 64x64 RGB image; nothing else is in the folder
    for f in df.fname:
        with Image.open(p/f) as im: im.load(); t_eq((im.size, im.mode), ((64, 64), 'RGB'))
    t_eq(sorted(_files(p)), sorted(list(df.fname) + ['collection.csv']))

def test_counts_and_seed(tmp_path):
    p = make_sample_collection(tmp_path/'c', n_per_class=3, n_valid=1, n_test=.67, n_shifted=2, size=32, seed=7, classes=('cover', 'blank'))
    df = pd.read_csv(p/'collection.csv')
    t_eq(df.groupby('split').size().to_dict(), dict(test=4, test_shifted=4, train=6, valid=2))
    q = make_sample_collection(tmp_path/'d', n_per_class=3, n_valid=1, n_test=.67, n_shifted=2, size=32, seed=8, classes=('cover', 'blank'))
    a, b = _files(p), _files(q)
    t_eq(a['collection.csv'], b['collection.csv'])
    assert sum(a[k] != b[k] for k in a) == len(a) - 1, 'another seed renders other images'

def test_regenerate_replaces_a_bigger_collection(tmp_path):
    p = make_sample_collection(tmp_path/'e', n_per_class=4, n_valid=2, n_test=2, n_shifted=2, size=32, progress=False)
    make_sample_collection(p, n_per_class=2, n_valid=1, n_test=1, n_shifted=1, size=32, progress=False)
    df = pd.read_csv(p/'collection.csv')
    t_eq(sorted(_files(p)), sorted(list(df.fname) + ['collection.csv']))

def test_digits_collection(tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    p = digits_collection(tmp_path/'digits')
    df = pd.read_csv(p/'collection.csv', dtype=str)
    t_eq(list(df.columns), ['fname', 'label', 'split'])
    t_eq(len(df), len(d.target))
    t_eq(sorted(df.label.unique()), [str(i) for i in range(10)])
    idx = df.fname.str.extract(r'_(\d+)\.png$')[0].astype(int).to_numpy()
    t_eq(sorted(idx), list(range(len(d.target))))
    t_eq(df.label.tolist(), [str(t) for t in d.target[idx]])
    t_eq((df.fname.map(lambda f: Path(f).parent.name) == df.label).all(), True)
    for f, i in zip(df.fname, idx):  # every image: gray levels 0-16 round-trip exactly
        a = np.asarray(Image.open(p/f))
        t_eq(a.shape, (8, 8))
        t_eq(np.round(a.astype(float)*16/255), d.images[i])
    n = df.groupby(['label', 'split']).size().unstack()
    assert ((n.train - .6*n.sum(axis=1)).abs() <= 1).all() and ((n.test - .2*n.sum(axis=1)).abs() <= 1).all()
    # complete: nothing rewritten; same seed elsewhere: same CSV
    before = (p/'collection.csv').stat().st_mtime_ns
    digits_collection(p); t_eq((p/'collection.csv').stat().st_mtime_ns, before)
    t_eq((digits_collection(tmp_path/'again')/'collection.csv').read_bytes(), (p/'collection.csv').read_bytes())
    # upscaled: nearest keeps the pixels as blocks
    q = digits_collection(tmp_path/'d32', size=32)
    a = np.asarray(Image.open(q/df.fname[0]))
    t_eq(a.shape, (32, 32)); t_eq(a[::4, ::4], np.asarray(Image.open(p/df.fname[0])))
    # an incomplete folder is rendered again
    (p/df.fname[3]).unlink()
    digits_collection(p); assert (p/df.fname[3]).exists()

def test_sample_collection_without_a_checkout(tmp_path, monkeypatch):
    "Installed without the repository: rendered once into the given folder, then reused"
    import glamdebug.samples as gs
    monkeypatch.setattr(gs, '_shipped_samples', lambda: tmp_path/'no_checkout'/'data'/'samples')
    p = gs.sample_collection(tmp_path/'cache')
    t_eq(p, tmp_path/'cache')
    t_eq(len(pd.read_csv(p/'collection.csv')), 6*(60 + 3*15))
    before = (p/'collection.csv').stat().st_mtime_ns
    t_eq(gs.sample_collection(tmp_path/'cache'), p)
    t_eq((p/'collection.csv').stat().st_mtime_ns, before)
