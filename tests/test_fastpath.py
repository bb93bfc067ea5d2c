"Collection cache and cached DataLoaders: identical pixels, re-caching, corrupt files, same error as the uncached path"
import os, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from fastcore.test import test_eq as t_eq, test_close as t_close
from fastai.vision.all import Resize, set_seed
from glamdebug.data import read_collection, collection_dls, split_dl, GlamImage
from glamdebug.fastpath import ImageCache, cached_dls, decode_resized, load_rgb_draft
import glamdebug.preds  # Learner.get_split_preds

torch.set_num_threads(1)
SAMPLES = Path(__file__).parent.parent/'data'/'samples'

def _jpeg(fn, w, h, seed=0, noise=4, cell=100):
    "A scan-like JPEG: smooth colour regions `cell` px across plus grain"
    r = np.random.default_rng(seed)
    a = (r.random((h//cell + 2, w//cell + 2, 3))*255).astype(np.uint8)
    a = np.asarray(Image.fromarray(a).resize((w, h), Image.BICUBIC)).astype(np.int16)
    a = np.clip(a + r.normal(0, noise, (h, w, 1)), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(fn, quality=90)
    return fn

def _uncached(fn, size):
    "The reference: what `collection_dls` does to one file (`GlamImage` + `Resize(size, method='squish')`)"
    return np.asarray(Resize(size, method='squish')(GlamImage.create(fn), split_idx=1))

@pytest.fixture
def scans(tmp_path):
    fns = [_jpeg(tmp_path/f'scan{i}.jpg', 1200 + 160*i, 900 + 100*i, seed=i) for i in range(4)]
    fns += [_jpeg(tmp_path/'small.jpg', 90, 70, seed=7)]  # smaller than 2× the target: draft must not shrink it
    im = Image.open(fns[0]).convert('L'); im.save(tmp_path/'gray.png'); fns.append(tmp_path/'gray.png')
    Image.open(fns[1]).convert('RGBA').save(tmp_path/'rgba.png'); fns.append(tmp_path/'rgba.png')
    return fns

def test_pixel_identical_without_draft(scans, tmp_path):
    c = ImageCache(tmp_path/'cache', size=48, draft=False, progress=False)
    r = c.update(scans)
    t_eq(r.decoded, len(scans)); t_eq(r.bad, {})
    for fn in scans: t_eq(c[fn], _uncached(fn, 48))
    # a non-square size, (h, w)
    c2 = ImageCache(tmp_path/'cache', size=(40, 56), draft=False, progress=False)
    c2.update(scans)
    for fn in scans: t_eq(c2[fn], np.asarray(Resize((40, 56), method='squish')(GlamImage.create(fn), split_idx=1)))

def test_close_with_draft(scans, tmp_path):
    """Draft decoding: mean absolute difference < 2 (of 255) from the full decode, max difference < 40.
    (Colour detail right at the output pixel scale differs more: mean up to ~4 with 24 px cells on a 1,200 px scan.)"""
    c = ImageCache(tmp_path/'cache', size=48, draft=True, progress=False)
    c.update(scans)
    diffs = []
    for fn in scans:
        d = np.abs(c[fn].astype(int) - _uncached(fn, 48).astype(int))
        diffs.append((d.mean(), d.max()))
    assert max(m for m, _ in diffs) < 2, diffs
    assert max(x for _, x in diffs) < 40, diffs
    with Image.open(scans[3]) as im: full = im.size
    t_eq(load_rgb_draft(scans[3], (48, 48)).size, (full[0]//8, full[1]//8))  # 1/8 scale, still ≥ 96 px
    t_eq(load_rgb_draft(scans[4], (48, 48)).size, (90, 70))  # small: decoded at full size

def test_changed_and_added_files_are_recached(scans, tmp_path):
    c = ImageCache(tmp_path/'cache', size=32, draft=False, progress=False)
    c.update(scans[:3])
    before = c[scans[0]].copy()
    t_eq(c.update(scans[:3]).decoded, 0)
    _jpeg(scans[0], 1200, 900, seed=99)  # same name, new content
    st = os.stat(scans[0]); os.utime(scans[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    r = c.update(scans[:4])  # one changed, one added
    t_eq((r.decoded, r.reused), (2, 2))
    assert (c[scans[0]] != before).any()
    t_eq(c[scans[0]], _uncached(scans[0], 32))
    # a fresh object reads the index from disk and serves the new pixels
    c2 = ImageCache(tmp_path/'cache', size=32, draft=False, progress=False)
    t_eq(c2.update(scans[:4]).decoded, 0)
    t_eq(c2[scans[0]], _uncached(scans[0], 32))
    # a file that disappears is not served
    os.remove(scans[2])
    c2.update(scans[:4])
    t_eq(c2.rows([scans[2]])[0], -1)

def test_corrupt_file_reported_not_fatal(scans, tmp_path):
    bad = tmp_path/'bad.jpg'; bad.write_bytes(open(scans[0], 'rb').read()[:3000])  # truncated JPEG
    junk = tmp_path/'junk.png'; junk.write_bytes(b'not an image')
    c = ImageCache(tmp_path/'cache', size=32, draft=True, progress=False)
    r = c.update(scans + [bad, junk])
    t_eq(sorted(Path(f).name for f in r.bad), ['bad.jpg', 'junk.png'])
    assert 'bad.jpg' in r.summary and 'junk.png' in r.summary
    t_eq(len(r.table), 2)
    t_eq(c.rows([bad, junk]).tolist(), [-1, -1])
    # remembered: an unchanged corrupt file is reported again without decoding it again
    r2 = c.update(scans + [bad, junk])
    t_eq((r2.decoded, len(r2.bad)), (0, 2))
    # cached_dls leaves the corrupt rows out, naming them, and trains on the rest
    df = pd.DataFrame(dict(fname=[Path(f).name for f in scans + [bad, junk]], label=['a', 'b']*4 + ['a'],
                           split=['train']*5 + ['valid']*4))
    with pytest.warns(UserWarning, match='bad.jpg'):
        dls = cached_dls(df, path=tmp_path, size=32, bs=2, cache_dir=tmp_path/'cache', progress=False)
    t_eq(len(dls.train_ds) + len(dls.valid_ds), 7)
    assert 'bad.jpg' in dls.cache_report.summary

@pytest.fixture(scope='module')
def samples():
    if not (SAMPLES/'collection.csv').exists(): pytest.skip('no sample collection')
    return read_collection(SAMPLES/'collection.csv')

def test_sample_batches_identical(samples, tmp_path):
    "The whole valid split of the sample collection, batch for batch, equals `collection_dls`"
    cd = cached_dls(samples, size=32, bs=30, cache_dir=tmp_path, draft=False, progress=False)
    ud = collection_dls(samples, size=32, bs=30)
    t_eq(list(cd.vocab), list(ud.vocab)); t_eq(cd.c, ud.c)
    for (xc, yc), (xu, yu) in zip(cd.valid, ud.valid): t_eq(xc, xu); t_eq(yc, yu)
    for split in ('test', 'test_shifted'):
        xc, yc = split_dl(cd, split).one_batch(); xu, yu = split_dl(ud, split).one_batch()
        t_eq(xc, xu); t_eq(yc, yu)

def test_same_error_as_uncached(samples, tmp_path):
    """Training on the cache reaches the same valid error as the uncached path. Same initial weights, same batch order,
    pixel-identical batches in the same memory layout: on the CPU it is the same computation, so the same error"""
    import random
    from glamdebug.models import defaults_learner
    res, init = {}, None
    for name in ('uncached', 'cached'):
        dls = (collection_dls(samples, size=32, bs=32) if name == 'uncached' else
               cached_dls(samples, size=32, bs=32, cache_dir=tmp_path, draft=False, progress=False))
        set_seed(0, reproducible=True)
        learn = defaults_learner(dls).fast()  # `fast()` is a no-op on the CPU
        if init is None: init = {k: v.clone() for k, v in learn.model.state_dict().items()}
        else: learn.model.load_state_dict(init)
        learn.dls.train.rng = random.Random(0)  # same shuffling
        with learn.no_bar(), learn.no_logging(): learn.fit(4, 3e-3)
        p = learn.get_split_preds('valid')
        t_eq(p.n, 90)
        res[name] = (p.error, float(p.losses.mean()))
    print(res)
    assert res['cached'][0] < 0.5, res
    t_eq(res['cached'][0], res['uncached'][0])
    t_close(res['cached'][1], res['uncached'][1], eps=1e-5)
