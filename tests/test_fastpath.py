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

def _glam_formats(folder, w=400, h=300):
    "One image saved as the formats archives hold: 16-bit grey, LZW, two-page and bilevel G4 TIFF; CMYK, grey, progressive and EXIF-rotated JPEG; palette and RGBA PNG"
    r = np.random.default_rng(0)
    a = np.asarray(Image.fromarray((r.random((h//10, w//10, 3))*255).astype(np.uint8)).resize((w, h), Image.BICUBIC)).copy()
    a[:h//8, -w//6:] = 255  # a white corner at the top right: shows the orientation
    im, out = Image.fromarray(a), {}
    def save(name, img, **kw): img.save(folder/name, **kw); out[name] = folder/name
    save('g16.tif', Image.fromarray(a[..., 0].astype(np.uint16)*257))
    save('lzw.tif', im, compression='tiff_lzw')
    save('pages.tif', im, save_all=True, append_images=[Image.fromarray(255 - a)])
    save('g4.tif', Image.fromarray(a[..., 0] > 128), compression='group4')
    save('cmyk.jpg', im.convert('CMYK'), quality=90)
    save('grey.jpg', im.convert('L'), quality=90)
    save('prog.jpg', im, quality=90, progressive=True)
    ex = im.getexif(); ex[0x0112] = 6  # rotated 90° on display
    save('exif.jpg', im, quality=90, exif=ex)
    save('pal.png', im.convert('P'))
    save('rgba.png', Image.fromarray(np.dstack([a, np.full((h, w), 128, np.uint8)])))
    return out

def test_glam_formats_as_uncached(tmp_path):
    "The cache reads every format as the uncached path does: pixel-identical without draft, close with it, orientation kept"
    fns = _glam_formats(tmp_path)
    c = ImageCache(tmp_path/'cache', size=32, draft=False, progress=False)
    r = c.update(list(fns.values()))
    t_eq(r.decoded, len(fns)); t_eq(r.bad, {})
    for name, fn in fns.items(): t_eq(c[fn], _uncached(fn, 32))
    assert (c[fns['g16.tif']] == 255).mean() < 0.1  # 16-bit scaled to 8 bits; PIL's convert saturates almost every pixel
    # the white top-right corner: turned to the bottom right by the EXIF orientation (90° clockwise), where it was in a TIFF
    assert c[fns['exif.jpg']][-3:, -3:].min() > 240 and c[fns['exif.jpg']][:3, -3:].min() < 200
    assert c[fns['lzw.tif']][:3, -3:].min() > 240
    (tmp_path/'big').mkdir()
    big = _glam_formats(tmp_path/'big', w=2000, h=1500)
    jpegs = [fn for n, fn in big.items() if n.endswith('.jpg')]
    cd = ImageCache(tmp_path/'cache', size=64, draft=True, progress=False)
    cd.update(jpegs)
    for fn in jpegs:
        d = np.abs(cd[fn].astype(int) - _uncached(fn, 64).astype(int))
        assert d.mean() < 4 and d.max() < 40, (fn.name, d.mean(), d.max())

def test_draft_cache_equals_draft_uncached(tmp_path):
    """Both paths decode JPEGs in draft mode and box-reduce other large scans by default: the cache and `collection_dls`
    give the same batches for large scans (RGB, CMYK, grey, progressive, EXIF-rotated JPEG, LZW TIFF), and `draft=False`
    on both gives the full decode's"""
    big = _glam_formats(tmp_path, w=2000, h=1500)
    names = [n for n in big if n.endswith('.jpg')] + ['lzw.tif']
    df = pd.DataFrame(dict(fname=names*2, label=['a', 'b']*len(names), split=['train']*len(names) + ['valid']*len(names)))
    df.attrs['path'] = str(tmp_path)
    got = {}
    for draft in (True, False):
        u = split_dl(collection_dls(df, size=64, bs=len(names), draft=draft), 'valid').one_batch()[0]
        c = split_dl(cached_dls(df, size=64, bs=len(names), draft=draft, cache_dir=tmp_path/'cache', progress=False), 'valid').one_batch()[0]
        t_eq(c, u); got[draft] = u
    d = (got[True] - got[False]).abs()
    # the TIFF is box-reduced by 11 (1,500 // 128) before the resize: close to the full decode's, as the JPEGs' drafts
    # are (its 10 px colour cells are right at the output pixel scale, where filters differ most)
    assert 0 < d[-1].mean() < 4/255, d[-1].mean()
    assert 0 < d.mean() < 4/255, d.mean()

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
        learn = defaults_learner(dls).fast()  # both paths the same: channels_last, fused AdamW on the CPU too
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

# ---------------------------------------------------------------- several processes on one cache
def _update_in_child(folder, fns, q):
    "A child process: update the cache at `folder` with `fns`, send back what it serves"
    import warnings as w
    with w.catch_warnings(record=True) as got:
        w.simplefilter('always')
        c = ImageCache(folder, size=32, draft=False, progress=False, n_workers=0)
        r = c.update(fns)
    q.put((r.decoded, {str(f): c[f].tobytes() for f in fns}, [str(g.message) for g in got]))

def test_update_waits_for_another_process(scans, tmp_path):
    "While one process holds the cache's lock, another's update waits (and says so), then finds the work done"
    import multiprocessing as mp, queue as q_
    from glamdebug.fastpath import _cache_lock
    ctx = mp.get_context('fork')
    folder, key = tmp_path/'cache', ImageCache(tmp_path/'cache', size=32, draft=False).key
    q = ctx.Queue()
    with _cache_lock(folder, key):
        # holding the lock: cache everything here, as another process would
        c = ImageCache(folder, size=32, draft=False, progress=False, n_workers=0)
        p = ctx.Process(target=_update_in_child, args=(folder, scans, q)); p.start()
        with pytest.raises(q_.Empty): q.get(timeout=1.5)  # the child is blocked on the lock
        c._decode(*c._plan([c._name(f) for f in scans])[:3])
    decoded, served, msgs = q.get(timeout=60); p.join(10)
    t_eq(decoded, 0)  # it re-read the index under the lock: nothing left to decode
    assert any('waiting for another process' in m for m in msgs), msgs
    for f in scans: t_eq(np.frombuffer(served[str(f)], np.uint8).reshape(32, 32, 3), _uncached(f, 32))

def test_two_processes_update_at_once(scans, tmp_path):
    "Two processes caching overlapping sets at the same time: both serve the right pixels, the index holds every file"
    import multiprocessing as mp
    ctx = mp.get_context('fork')
    folder, q = tmp_path/'cache', ctx.Queue()
    ps = [ctx.Process(target=_update_in_child, args=(folder, fs, q)) for fs in (scans[:5], scans[2:])]
    for p in ps: p.start()
    out = [q.get(timeout=120) for _ in ps]
    for p in ps: p.join(10)
    t_eq(sum(o[0] for o in out), len(scans))  # each file decoded once, by one of them
    for _, served, _ in out:
        for f, b in served.items(): t_eq(np.frombuffer(b, np.uint8).reshape(32, 32, 3), _uncached(f, 32))
    c = ImageCache(folder, size=32, draft=False, progress=False)
    t_eq(c.update(scans).decoded, 0)
    for f in scans: t_eq(c[f], _uncached(f, 32))

# ---------------------------------------------------------------- export
def test_export_predicts_without_the_cache(samples, tmp_path):
    "`learn.export` of a learner on cached DataLoaders: no cache or table in the pickle; `load_learner(...).predict` gives the same answer"
    from fastai.vision.all import load_learner, DataLoaders
    from glamdebug.models import defaults_learner
    dls = cached_dls(samples, size=32, bs=32, cache_dir=tmp_path/'cache', progress=False)
    set_seed(0)
    learn = defaults_learner(dls).fast()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 3e-3)
    learn.export(tmp_path/'model.pkl')
    data = (tmp_path/'model.pkl').read_bytes()
    assert b'index-' not in data and b'blank_0000' not in data  # neither the cache index nor the table
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); l2 = load_learner(tmp_path/'model.pkl')
    assert type(l2.dls) is DataLoaders
    rows = samples[samples.split == 'test'].iloc[::15]
    for f in rows.fname:
        a, b = learn.predict(SAMPLES/f), l2.predict(SAMPLES/f)
        t_eq(a[0], b[0]); t_close(a[2], b[2], eps=1e-5)
    # an image the collection never had, as a string path
    lab, _, probs = l2.predict(str(_jpeg(tmp_path/'new.jpg', 300, 200)))
    assert lab in dls.vocab and abs(float(probs.sum()) - 1) < 1e-5
    # a batch of files through test_dl
    t_eq(len(l2.get_preds(dl=l2.dls.test_dl([SAMPLES/f for f in rows.fname]))[0]), len(rows))

# ---------------------------------------------------------------- host syncs
def test_host_sync_kinds():
    "What counts as a sync when auditing a device (the meta device stands in for CUDA here)"
    from glamdebug.fastpath import HostSyncs
    h, m, t = HostSyncs('meta'), torch.zeros(3, device='meta'), torch.zeros(3)
    k = lambda f, *a, **kw: h._kind(f, a, kw)
    t_eq(k(torch.Tensor.item, m), 'read to host (item)')
    t_eq(k(torch.Tensor.__format__, m, '.3f'), 'read to host (__format__)')
    t_eq(k(torch.Tensor.cpu, m), 'read to host (cpu)')
    t_eq(k(torch.Tensor.to, m, 'cpu'), 'read to host (to)')
    t_eq(k(torch.Tensor.to, m, 'cpu', non_blocking=True), None)  # pinned output, no wait
    t_eq(k(torch.Tensor.copy_, t, m), 'read to host (copy_)')
    t_eq(k(torch.Tensor.copy_, t, m, True), 'read to host (copy_)')  # non-blocking into pageable memory still waits
    t_eq(k(torch.Tensor.to, t, 'meta'), 'blocking copy to device (to)')
    t_eq(k(torch.Tensor.to, t, 'meta', non_blocking=True), None)
    t_eq(k(torch.Tensor.to, m, torch.float16), None)  # dtype only
    t_eq(k(torch.Tensor.__getitem__, m, m > 0), 'data-sized output (boolean mask)')
    t_eq(k(torch.Tensor.__getitem__, m, 0), None)
    t_eq(k(torch.nonzero, m), 'data-sized output (nonzero)')
    t_eq(k(torch.empty, 3, pin_memory=True), 'pinned allocation')
    t_eq(k(torch.Tensor.item, t), None)  # host tensors are not audited on a device

def test_sync_audit_on_samples(samples, tmp_path):
    "Plain fastai reads the loss on every training batch; `fast()` does not, and leaves the learner as it was"
    from glamdebug.models import defaults_learner
    dls = cached_dls(samples, size=32, bs=16, cache_dir=tmp_path/'cache', progress=False)
    set_seed(0)
    learn = defaults_learner(dls)
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    r = learn.sync_audit(n_batches=5, device='cpu')
    t_eq((r.n_train, r.n_valid), (5, 5))
    t_eq(r.per_batch('training'), 1.0)
    assert 'AvgSmoothLoss.accumulate' in r.table[r.table.phase == 'training']['where'].iloc[0]
    for p, q in zip(learn.model.parameters(), w0): t_eq(p, q)  # weights restored
    from glamdebug.evaluate import ErrorCurves
    learn.fast(cpu=True).add_cb(ErrorCurves(n_train=64))
    r2 = learn.sync_audit(n_batches=5, device='cpu')
    t_eq(r2.per_batch('training'), 0)
    t_eq(r2.per_batch('validation'), 0)  # the loss, error_rate and ErrorCurves' count are summed on the device during fit
    assert 'None inside training batches' in r2.summary and r2.to_dict()['per_train_batch'] == 0
    # ... but only during fit: get_preds' callers get host tensors, as from fastai
    from fastai.vision.all import Callback
    class Spy(Callback):
        def before_fit(self): self.seen = []
        def before_batch(self):
            if not self.training: self.seen.append(self.dl.keep_on_device)
    spy = Spy()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=spy)
    assert spy.seen and all(spy.seen)
    learn.get_preds(cbs=spy)
    assert spy.seen and not any(spy.seen)
    with pytest.raises(Exception, match='at least 1'): learn.sync_audit(0)

def test_sync_audit_sees_the_loader_thread(samples, tmp_path):
    "fastai's `aug_transforms` read to the host on every batch; the audit finds them in the main thread or in the prefetch thread"
    from fastai.vision.all import aug_transforms, Learner, CrossEntropyLossFlat, nn
    def learner(prefetch):
        dls = cached_dls(samples, size=32, bs=16, cache_dir=tmp_path/'cache', progress=False, batch_tfms=aug_transforms(),
                         prefetch=prefetch)
        m = nn.Sequential(nn.Flatten(), nn.Linear(3*32*32, dls.c))
        return Learner(dls, m, loss_func=CrossEntropyLossFlat()).fast(cpu=True)
    main = learner(0).sync_audit(4, device='cpu')
    where = ' '.join(main.table[main.table.phase == 'training']['where'])
    assert main.per_batch('training') >= 1 and 'fastai/vision/augment.py' in where, main.table
    thread = learner(2).sync_audit(4, device='cpu')
    t_eq(thread.per_batch('training'), 0)  # the loop itself: nothing
    # the thread runs up to `prefetch` batches ahead of the loop, so it may count a few more
    assert thread.per_batch('training (loader thread)') >= main.per_batch('training')
    assert 'loader thread' in thread.summary
