"""CPU benchmark for the fast path (issue 7): glamdebug `cached_dls` vs plain fastai `ImageDataLoaders.from_df` + `Resize`.

Side by side in one run, with ratios: cache build time, epoch time and valid error, on the shipped sample collection
(630 small PNGs), on a generated set of large scan-like JPEGs, on half as many as LZW TIFFs, as many again as pyramid
LZW TIFFs (4 levels), as many as deflate TIFFs that keep their 4 levels as SubIFDs of one page (libvips' `--subifd`,
OME-TIFF; written with tifffile) and on a quarter as many as lossless JPEG 2000 (archival masters). Same model
(`defaults_learner`'s LeNet-like CNN), same size, same epochs.
`python benchmarks/bench_fastpath.py [n_scans] [sets] [width]`, sets a comma-separated choice of png,jpg,tif,pyr,sub,jp2
(all by default), width the scans' width in px (2000 by default; 3:4, as an A4 page scanned); writes
benchmarks/results/fastpath.txt (fastpath_SETS.txt for a choice, fastpath_SETS_WIDTH.txt for another width).
"""
import os, sys, time, tempfile, warnings, multiprocessing as mp
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image
warnings.filterwarnings('ignore')
from fastai.vision.all import ImageDataLoaders, Resize, ResizeMethod, set_seed
from glamdebug.data import read_collection, collection_dls
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner
import glamdebug.preds

N_SCANS = int(sys.argv[1]) if len(sys.argv) > 1 else 120
ALL = 'png,jpg,tif,pyr,sub,jp2'
SETS = sys.argv[2] if len(sys.argv) > 2 else ALL
W = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
SIZE, BS, EPOCHS = 64, 32, 6
ROOT = Path(__file__).parent.parent
tmp = Path(tempfile.mkdtemp(prefix='benchfast'))

def _scan(i, ext='jpg'):
    r = np.random.default_rng(i)
    w, h = W, W*3//4
    a = (r.random((17, 22, 3))*255).astype(np.uint8)   # the same picture at every width
    a = np.asarray(Image.fromarray(a).resize((w, h), Image.BICUBIC)).astype(np.int16)
    a = np.clip(a + r.normal(0, 5, (h, w, 1)), 0, 255).astype(np.uint8)
    fn = tmp/f'scans_{ext}'/f'scan{i:04d}.{"tif" if ext in ("pyr", "sub") else ext}'
    if ext == 'jpg': Image.fromarray(a).save(fn, quality=90)
    elif ext == 'pyr':   # a pyramid, as image servers keep a master: each page half the one before
        im = Image.fromarray(a)
        im.save(fn, compression='tiff_lzw', save_all=True, append_images=[im.resize((w >> k, h >> k), Image.BOX) for k in range(1, 5)])
    elif ext == 'sub':   # the same levels as SubIFDs of the one page (PIL sees one page)
        import tifffile
        with tifffile.TiffWriter(fn) as t:
            t.write(a, subifds=4, photometric='rgb', compression='zlib')
            for k in range(1, 5): t.write(np.asarray(Image.fromarray(a).resize((w >> k, h >> k), Image.BOX)), subfiletype=1, photometric='rgb', compression='zlib')
    elif ext == 'jp2': Image.fromarray(a).save(fn)   # lossless (reversible 5/3 wavelet), openjpeg's default 5 levels
    else: Image.fromarray(a).save(fn, compression='tiff_lzw')
    return dict(fname=fn.name, label='ab'[i % 2] if i % 3 else 'c', split='valid' if i % 5 == 0 else 'train')

INIT = {}
def fit_timed(dls, key):
    "Same initial weights and batch order for both pipelines, so the valid errors compare like for like"
    import random
    set_seed(0, reproducible=True)
    learn = defaults_learner(dls)
    if key in INIT: learn.model.load_state_dict(INIT[key])
    else: INIT[key] = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.dls.train.rng = random.Random(0)
    t = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fit(EPOCHS, 3e-3)
    return (time.perf_counter() - t)/EPOCHS, learn.get_split_preds('valid').error

def compare(name, df, path, draft):
    out = []
    t = time.perf_counter()
    fdls = ImageDataLoaders.from_df(df.assign(is_valid=df.split == 'valid')[lambda d: d.split.isin(['train', 'valid'])],
                                    path, fn_col='fname', label_col='label', valid_col='is_valid',
                                    item_tfms=Resize(SIZE, method=ResizeMethod.Squish), bs=BS)
    setup_f = time.perf_counter() - t
    ep_f, err_f = fit_timed(fdls, name)
    t = time.perf_counter()
    gdls = cached_dls(df, path=path, size=SIZE, bs=BS, cache_dir=tmp/'cache', draft=draft, n_workers=2, progress=False)
    build = time.perf_counter() - t
    t = time.perf_counter()
    cached_dls(df, path=path, size=SIZE, bs=BS, cache_dir=tmp/'cache', draft=draft, progress=False)
    reopen = time.perf_counter() - t
    ep_g, err_g = fit_timed(gdls, name)
    # the uncached path as a user gets it (`collection_dls` defaults: draft decoding of JPEGs, no worker processes), and without draft
    ep_u, err_u = fit_timed(collection_dls(df, path, size=SIZE, bs=BS), name)
    ep_n, err_n = fit_timed(collection_dls(df, path, size=SIZE, bs=BS, draft=False), name)
    n = int(df.split.isin(['train', 'valid']).sum())
    out += [dict(data=name, what='setup (s): fastai DataLoaders / glamdebug cache build (all splits, once)', fastai=setup_f, glamdebug=build),
            dict(data=name, what='setup (s) on a later run: fastai / glamdebug cache re-open', fastai=setup_f, glamdebug=reopen),
            dict(data=name, what=f'epoch time (s), {n} train+valid images, LeNet-like, {SIZE} px', fastai=ep_f, glamdebug=ep_g,
                 collection_dls=ep_u, collection_dls_nodraft=ep_n),
            dict(data=name, what=f'valid error after {EPOCHS} epochs (same init and batch order)', fastai=err_f, glamdebug=err_g,
                 collection_dls=err_u, collection_dls_nodraft=err_n),
            dict(data=name, what=f'first run total (setup + {EPOCHS} epochs), s', fastai=setup_f + EPOCHS*ep_f, glamdebug=build + EPOCHS*ep_g)]
    return out

if __name__ == '__main__':
    LOAD = os.getloadavg()[0]  # other work on the machine slows fastai's worker processes most
    t0 = time.perf_counter()
    rows = (compare('sample collection (630 PNGs)', read_collection(ROOT/'data'/'samples'/'collection.csv'), ROOT/'data'/'samples', draft=False)
            if 'png' in SETS.split(',') else [])
    gen = 0.
    for ext, n in (('jpg', N_SCANS), ('tif', N_SCANS//2), ('pyr', N_SCANS//2), ('sub', N_SCANS//2), ('jp2', N_SCANS//4)):
        if ext not in SETS.split(','): continue
        d = tmp/f'scans_{ext}'; d.mkdir()
        t = time.perf_counter()
        with mp.get_context('fork').Pool(2) as pool: recs = pool.starmap(_scan, [(i, ext) for i in range(n)])
        gen += time.perf_counter() - t
        df = pd.DataFrame(recs); df.attrs['path'] = str(d)
        mb = np.mean([(d/f).stat().st_size for f in df.fname])/1e6
        kind = dict(jpg='JPEG', tif='LZW TIFF', pyr='pyramid LZW TIFF', sub='SubIFD pyramid deflate TIFF', jp2='JPEG 2000')[ext]
        rows += compare(f'{n} scans, {W}x{W*3//4} {kind} ({mb:.1f} MB)', df, d, draft=True)
    res = pd.DataFrame(rows)
    res['ratio'] = res.fastai/res.glamdebug
    res['ratio_uncached'] = res.fastai/res.collection_dls
    res.loc[res.what.str.startswith('valid error'), ['ratio', 'ratio_uncached']] = np.nan
    res = res[['data', 'what', 'fastai', 'glamdebug', 'ratio', 'collection_dls', 'collection_dls_nodraft', 'ratio_uncached']]
    with pd.option_context('display.width', 200, 'display.max_colwidth', 80):
        txt = (f'glamdebug fast path vs plain fastai on the CPU ({os.cpu_count()} cores, load average {LOAD:.1f} at start; torch threads '
               f'{torch.get_num_threads()}); fastai: ImageDataLoaders.from_df + Resize({SIZE}, squish), default workers; '
               f'glamdebug: cached_dls (draft decoding for the JPEG scans, JPEG 2000 decoded at its smallest resolution level still twice the size, '
               f'a pyramid TIFF from its smallest page or SubIFD still twice the size, '
               f'TIFFs box-filtered to twice the size first). ratio = fastai / glamdebug (higher: glamdebug faster). '
               f'Uncached: collection_dls as a user gets it (the same reduced decoding, num_workers=0; fastai uses {os.cpu_count()} '
               f'workers), and with draft=False; ratio_uncached = fastai / collection_dls.\n'
               f'scan generation {gen:.0f} s (not counted); total {time.perf_counter()-t0:.0f} s\n'
               + res.to_string(index=False, float_format=lambda v: f'{v:.3g}'))
    print(txt)
    out = ROOT/'benchmarks'/'results'; out.mkdir(parents=True, exist_ok=True)
    name = 'fastpath' + ('' if SETS == ALL and W == 2000 else f'_{SETS.replace(",", "_")}') + ('' if W == 2000 else f'_{W}')
    (out/f'{name}.txt').write_text(txt + '\n')
