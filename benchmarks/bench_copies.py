"""Benchmark `keep_copies_together` (and `duplicate_groups`, which the leakage check's hashing shares) at collection scale.

For each collection: distinct images plus planted copies (half byte-identical, half resized and re-encoded as JPEG),
random train/valid/test splits. Printed side by side in one run:
- plain fastai's one pass over the same files, `verify_images` (its parallel check that every image opens), as the yardstick;
- `keep_copies_together` (hashing in a thread pool, grouping, moving), and the same hashing done serially;
- `keep_copies_together` a second time in the session, as after a fix: the hashes are remembered by file, size and mtime;
- planted copies found (recall) and rows grouped that were not planted (false groups);
- copies with different labels: half the planted copies carry another class than their original (one image catalogued
  twice), found by `copies_with_labels` as the leakage check and `keep_copies_together` report them, and false ones
  (rows of such groups that were not planted), with the time the grouping adds once the images are hashed.

Collections: the sample pages rendered at 64 px PNG (many small files: the Python overhead and the O(n) grouping), the
same pages as 2,400 x 1,800 px JPEG scans (decoding dominates), and ../shared/data/oracle-mnist's 3,000 real scans
when present.

Usage: python benchmarks/bench_copies.py [--small 10000] [--scans 600] [--out benchmarks/results/copies.txt]
"""
import argparse, os, sys, time, shutil, tempfile, platform
from multiprocessing import Pool
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image
from fastai.vision.utils import verify_images
from glamdebug.core import atomic_write
from glamdebug.samples import render_sample, SAMPLE_CLASSES
from glamdebug.debug import keep_copies_together, duplicate_groups, image_hashes, copies_with_labels, _hash_images, _HASHES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'benchmarks'))


def _render(job):
    "One distinct page: `(path, label, i, size, scan)`; a scan is upscaled to 2,400 x 1,800 with paper grain"
    fn, lbl, i, size, scan = job
    im = render_sample(lbl, 1000 + i, size=size, supersample=1)
    if scan:
        im = im.resize((2400, 1800), Image.BICUBIC)
        a = np.asarray(im).astype(np.int16) + np.random.default_rng(i).integers(-6, 7, (1800, 2400, 1), dtype=np.int16)
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(fn, quality=85)
    else: im.save(fn)
    return fn


def _copy(job):
    "A planted copy of `src`: byte-identical, or resized by 1 % and re-encoded as JPEG"
    src, dst, exact = job
    if exact: shutil.copy(src, dst)
    else:
        im = Image.open(src).convert('RGB'); d = max(2, im.width//100)
        im.resize((im.width - d, im.height - d), Image.BILINEAR).save(dst, quality=88)
    return dst


def collection(folder, names, n_copies, seed=0, make=None, labels=None):
    "`names`: distinct image files (made by `make` if given) of class `labels`; plant `n_copies` copies, every other pair of them under another class; random 70/15/15 splits"
    rng = np.random.default_rng(seed)
    if make is not None:
        with Pool(2) as p: p.map(make, names, chunksize=8)
        names = [j[0] for j in names]
    labels = list(labels) if labels is not None else ['x']*len(names)
    classes = sorted(set(labels))
    src = rng.choice(len(names), n_copies, replace=False)
    jobs = [(names[s], str(Path(folder)/f'copy_{k}{Path(names[s]).suffix if k % 2 == 0 else ".jpg"}'), k % 2 == 0)
            for k, s in enumerate(src)]
    with Pool(2) as p: copies = p.map(_copy, jobs)
    relabel = [k % 4 >= 2 and len(classes) > 1 for k in range(n_copies)]   # exact and near copies alike
    other = lambda l: classes[(classes.index(l) + 1) % len(classes)]
    copy_labels = [other(labels[s]) if r else labels[s] for s, r in zip(src, relabel)]
    files = list(names) + copies
    df = pd.DataFrame(dict(fname=[os.path.relpath(f, folder) for f in files], label=labels + copy_labels,
                           split=rng.choice(['train', 'valid', 'test'], len(files), p=[.7, .15, .15])))
    df.attrs['path'] = Path(folder)
    planted = [(int(s), len(names) + k, r) for k, (s, r) in enumerate(zip(src, relabel))]
    return df, planted


def timed(f, *a, **kw):
    t = time.perf_counter(); r = f(*a, **kw); return r, time.perf_counter() - t


def measure(name, df, planted, lines, kind=None):
    "`kind(i)`: the class of distinct image `i`, to tell blank pages (near-uniform: exact comparison only) from the rest"
    folder = Path(df.attrs['path']); files = [folder/f for f in df.fname]
    old = time.time_ns() - 60*10**9
    for f in files: os.utime(f, ns=(old, old))   # a collection on disk (files written in the last 2 s are not remembered)
    bad, t_fastai = timed(verify_images, files)
    assert not len(bad), bad
    _HASHES.clear()
    out, t_ours = timed(keep_copies_together, df, progress=False, verbose=False)
    _, t_again = timed(keep_copies_together, df, progress=False, verbose=False)   # the hashes remembered: a second check
    _HASHES.clear()
    _, t_serial = timed(lambda: [image_hashes(f) for f in files])
    hs = _hash_images(files, progress=False)
    _HASHES.clear()
    (g, conf), t_group = timed(lambda: (lambda g: (g, copies_with_labels(g, files, df.label)))(duplicate_groups(files, hashes=hs)))
    missed = [a for a, b, _ in planted if g[a] != g[b]]
    in_planted = {i for a, b, _ in planted for i in (a, b)}
    sizes = pd.Series(g).value_counts()
    false = [i for i in range(len(g)) if sizes[g[i]] > 1 and i not in in_planted]
    blank = lambda idx: f' ({sum(kind(i) == "blank" for i in idx)} blank)' if kind and idx else ''
    relab = [(a, b) for a, b, r in planted if r]
    in_relab = {str(files[i]) for p in relab for i in p}
    in_conf = set(conf.item.map(str))
    found_conf = sum(str(files[a]) in in_conf and str(files[b]) in in_conf for a, b in relab)
    lines.append(dict(collection=name, files=len(files), planted=len(planted), found=len(planted) - len(missed),
                      missed=f'{len(missed)}{blank(missed)}', false_grouped=f'{len(false)}{blank(false)}', moved=len(out.attrs['moved']),
                      relabelled=len(relab), conflicts_found=found_conf,
                      false_conflicts=int((~conf.assign(p=conf.item.map(str).isin(in_relab)).groupby('group').p.any()).sum()),
                      fastai_verify_s=t_fastai, ours_s=t_ours, serial_hash_s=t_serial, group_s=t_group, ours_vs_fastai=t_ours/t_fastai,
                      again_s=t_again, again_vs_fastai=t_again/t_fastai))
    print(lines[-1], flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--small', type=int, default=10000, help='64 px PNG pages')
    ap.add_argument('--scans', type=int, default=600, help='2,400 x 1,800 JPEG scans')
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'copies.txt'))
    a = ap.parse_args()
    t0 = time.perf_counter(); rows = []
    tmp = Path(tempfile.mkdtemp(prefix='copies_'))
    try:
        cls = sorted(SAMPLE_CLASSES)
        for name, n, size, scan, ext in ((f'sample pages, 64 px PNG', a.small, 64, False, 'png'),
                                         (f'sample pages as 2,400 x 1,800 px JPEG scans', a.scans, 300, True, 'jpg')):
            d = tmp/ext; d.mkdir()
            jobs = [(str(d/f'p{i}.{ext}'), cls[i % len(cls)], i, size, scan) for i in range(n)]
            df, planted = collection(d, jobs, max(20, n//100), make=_render, labels=[j[1] for j in jobs])
            measure(name, df, planted, rows, kind=lambda i: cls[i % len(cls)])
        from oracle_merge import ORACLE, oracle_collection
        if ORACLE.exists():
            d = tmp/'oracle'; d.mkdir()
            odf = oracle_collection(d)
            df, planted = collection(d, [str(d/f) for f in odf.fname], 100, labels=odf.label.tolist())
            measure('oracle-mnist real scans, 28 px PNG', df, planted, rows)
        else: print(f'{ORACLE} is absent: oracle-mnist part skipped')
    finally: shutil.rmtree(tmp, ignore_errors=True)
    t = pd.DataFrame(rows)
    head = (f'keep_copies_together vs plain fastai verify_images (one parallel pass over the same files); '
            f'{platform.machine()}, {os.cpu_count()} cores; found = planted copies grouped with their original '
            f'(half byte-identical, half resized 1 % + JPEG; near-uniform pages take part in the exact comparison only, so their '
            f're-encoded copies are missed); false_grouped = rows grouped that were not planted (faintly textured blank pages that '
            f'differ from each other less than a re-encoded copy does); serial_hash_s = the hashing alone, one thread '
            f'(keep_copies_together uses threads for files over 64 KB); relabelled = planted copies under another class than their '
            f'original, conflicts_found = those reported as copies with different labels, false_conflicts = reported groups without a planted one; '
            f'group_s = grouping and copies_with_labels once hashed (what the leakage check adds); again_s = keep_copies_together '
            f'a second time in the session: the hashes remembered by file, size and mtime (files set 60 s old first); total {time.perf_counter() - t0:.0f} s')
    txt = head + '\n' + t.to_string(index=False, float_format=lambda v: f'{v:.3g}') + '\n'
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
