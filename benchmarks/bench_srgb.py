"""What decoding into sRGB (`srgb=True`) costs, at collection scale, next to plain fastai.

Scans carry an embedded Adobe RGB (1998) profile (as masters often do): sample pages rendered at 2,000 x 1,500 px and
saved as JPEG, quality 90. One pass over the training items (decode, resize to 64 px, collate; no model, so that the
decoding is what is measured), and the cache build, for:
- plain fastai: `ImageDataLoaders.from_df` + `Resize(64)` (the file's numbers; the profile ignored);
- `collection_dls(srgb=False)` and `collection_dls(srgb=True)` (JPEG draft decoding in both);
- `ImageCache.update` without and with `srgb` (a cache of its own each).
Also how far the colours move: the mean absolute difference between the two decodes at 64 px, in grey levels.

Usage: python benchmarks/bench_srgb.py [--n 120] [--out benchmarks/results/srgb.txt]
"""
import argparse, os, time, shutil, tempfile, platform, warnings
from multiprocessing import Pool
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image
from fastai.vision.all import ImageDataLoaders, Resize, ResizeMethod
from glamdebug.core import atomic_write
from glamdebug.data import collection_dls, load_rgb
from glamdebug.fastpath import ImageCache
from glamdebug.samples import render_sample, SAMPLE_CLASSES, matrix_icc_profile, ADOBE_RGB

ROOT = Path(__file__).resolve().parent.parent
SIZE, BS = 64, 32


def _scan(job):
    fn, label, i = job
    page = render_sample(label, i, size=300, supersample=1).resize((2000, 1500), Image.BICUBIC)
    page.save(fn, quality=90, icc_profile=matrix_icc_profile(**ADOBE_RGB))


def one_pass(dls):
    t = time.perf_counter()
    for xb, yb in dls.train: pass
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=120, help='scans')
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'srgb.txt'))
    a = ap.parse_args()
    warnings.filterwarnings('ignore'); torch.set_num_threads(2)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix='srgb_'))
    try:
        cls = sorted(SAMPLE_CLASSES)
        jobs = [(str(tmp/f'p{i:04d}.jpg'), cls[i % len(cls)], i) for i in range(a.n)]
        with Pool(2) as p: p.map(_scan, jobs, chunksize=4)
        df = pd.DataFrame(dict(fname=[Path(j[0]).name for j in jobs], label=[j[1] for j in jobs], split='train'))
        df.loc[df.index % 5 == 0, 'split'] = 'valid'
        df.attrs['path'] = tmp
        plain = ImageDataLoaders.from_df(df.assign(is_valid=df.split == 'valid'), tmp, fn_col='fname', label_col='label', valid_col='is_valid',
                                         item_tfms=Resize(SIZE, ResizeMethod.Squish), bs=BS, num_workers=0)
        ours = {s: collection_dls(df, size=SIZE, bs=BS, srgb=s) for s in (False, True)}
        for d in (plain, *ours.values()): one_pass(d)   # warm the file cache
        rows = []
        t_plain = min(one_pass(plain) for _ in range(2))
        t = {s: min(one_pass(d) for _ in range(2)) for s, d in ours.items()}
        rows.append(dict(what=f'one pass over {len(df[df.split == "train"])} training scans, {SIZE} px', plain_fastai=t_plain,
                         glamdebug=t[False], glamdebug_srgb=t[True], srgb_cost=t[True]/t[False], fastai_over_srgb=t_plain/t[True]))
        c = {}
        for s in (False, True):
            cache = ImageCache(tmp/'cache', size=SIZE, srgb=s, n_workers=2, progress=False)
            tt = time.perf_counter(); cache.update([tmp/f for f in df.fname]); c[s] = time.perf_counter() - tt
        rows.append(dict(what=f'cache build, {len(df)} scans', plain_fastai=float('nan'), glamdebug=c[False], glamdebug_srgb=c[True],
                         srgb_cost=c[True]/c[False], fastai_over_srgb=float('nan')))
        diff = np.mean([np.abs(np.asarray(load_rgb(tmp/f, draft=(SIZE, SIZE), srgb=True), np.float32)
                               - np.asarray(load_rgb(tmp/f, draft=(SIZE, SIZE)), np.float32)).mean() for f in df.fname[:20]])
    finally: shutil.rmtree(tmp, ignore_errors=True)
    res = pd.DataFrame(rows)
    txt = (f'bench_srgb: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; {a.n} JPEG scans of 2,000 x 1,500 px '
           f'with an embedded Adobe RGB (1998) profile; times in s (best of 2 passes); srgb_cost = srgb / not; fastai_over_srgb = '
           f'plain fastai / glamdebug with srgb (above 1: glamdebug faster); total {time.perf_counter() - t0:.0f} s\n'
           + res.to_string(index=False, float_format=lambda v: f'{v:.3g}')
           + f'\nmean |sRGB - as stored| over 20 scans at {SIZE} px: {diff:.1f} grey levels (of 255)\n')
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
