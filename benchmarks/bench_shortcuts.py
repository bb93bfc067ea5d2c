"""Benchmark the `shortcuts` check of `learn.troubleshoot()`: why it matters, what it finds, what it costs.

1. Why: the sample collection as two digitisation projects would leave it: every train and valid page greyscale
   except the maps (scanned in colour), the test pages in colour. The version-zero LeNet is trained on it and on the
   clean collection (same seeds); valid and test error, and the test error of the covers (colourful pages that the
   greyscale training never showed in colour).
2. What it finds: `check_shortcuts` on the clean collection and on that one.
3. Cost at collection scale: `check_shortcuts` (header reads in threads) on 630 and 10,080 files, next to plain
   fastai's `verify_images` (one parallel pass that opens every image) over the same files.

Usage: python benchmarks/bench_shortcuts.py [--seeds 3] [--epochs 8] [--copies 16] [--out benchmarks/results/shortcuts.txt]
"""
import argparse, os, time, shutil, tempfile, platform, warnings, contextlib, io
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image
from fastai.vision.all import set_seed
from fastai.vision.utils import verify_images
from glamdebug.core import atomic_write
from glamdebug.data import read_collection, collection_dls, split_dl
from glamdebug.models import defaults_learner
from glamdebug.samples import sample_collection
from glamdebug.debug import check_shortcuts

ROOT = Path(__file__).resolve().parent.parent


def errors(df, path, seed, epochs):
    "Valid and test error of the version-zero LeNet, and the test error per class"
    set_seed(seed, reproducible=True)
    learn = defaults_learner(collection_dls(df, path, size=64, bs=32, seed=seed))
    with contextlib.redirect_stdout(io.StringIO()), learn.no_bar(): learn.fit(epochs)
    out = {}
    for s in ('valid', 'test'):
        with learn.no_bar(): p, t = learn.get_preds(dl=split_dl(learn.dls, s, df))
        wrong = (p.argmax(1) != t).numpy(); lab = np.array(learn.dls.vocab)[t.numpy()]
        out[s] = wrong.mean()
        if s == 'test': out.update({f'test_{c}': wrong[lab == c].mean() for c in ('cover', 'map')})
    return out, learn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--epochs', type=int, default=8)
    ap.add_argument('--copies', type=int, default=16, help='the 630 sample files copied this many times for the cost part')
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'shortcuts.txt'))
    a = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1)); warnings.filterwarnings('ignore')
    t0 = time.perf_counter(); tmp = Path(tempfile.mkdtemp(prefix='shortcuts_')); lines = []
    try:
        src = sample_collection(); df = read_collection(src/'collection.csv', progress=False)
        made = tmp/'made'; shutil.copytree(src, made)
        for f in df[(df.label != 'map') & df.split.isin(['train', 'valid'])].fname: Image.open(made/f).convert('L').save(made/f)
        rows = []
        for seed in range(a.seeds):
            for name, path in (('clean', src), ('grey but the maps', made)):
                r, learn = errors(df, path, seed, a.epochs)
                rows.append(dict(collection=name, seed=seed, **r))
                print(rows[-1], flush=True)
        t = pd.DataFrame(rows)
        m = t.groupby('collection', sort=False)[['valid', 'test', 'test_cover', 'test_map']].mean()
        lines += [f'## 1. Why: version-zero LeNet, 64 px, {a.epochs} epochs, seeds 0-{a.seeds - 1}; train and valid greyscale except the maps, test in colour',
                  t.to_string(index=False, float_format=lambda v: f'{v:.3f}'), '', 'mean:', m.to_string(float_format=lambda v: f'{v:.3f}'), '']
        lines.append('## 2. What it finds')
        for name, path in (('clean', src), ('grey but the maps', made)):
            c = check_shortcuts(defaults_learner(collection_dls(df, path, size=32)))
            lines.append(f'{name}: {c.status}: {c.message}')
        lines.append('')
        big = tmp/'big'; rows_big = []
        for k in range(a.copies):
            for r in df.itertuples():
                dst = big/f'{k}'/r.fname; dst.parent.mkdir(parents=True, exist_ok=True); shutil.copy(made/r.fname, dst)
                rows_big.append(dict(fname=f'{k}/{r.fname}', label=r.label, split=r.split))
        dbig = pd.DataFrame(rows_big)
        cost = []
        for name, d, path in (('630 files', df, made), (f'{len(dbig):,} files', dbig, big)):
            learn = defaults_learner(collection_dls(d, path, size=32))
            files = [path/f for f in d.fname]
            tf = time.perf_counter(); bad = verify_images(files); tf = time.perf_counter() - tf
            assert not len(bad)
            n_train = int((d.split == 'train').sum())
            for n in ((5000, n_train) if n_train > 5000 else (n_train,)):
                c = check_shortcuts(learn, n=n)
                cost.append(dict(collection=name, n=n, status=c.status, check_s=c.seconds,
                                 fastai_verify_images_s=tf, check_vs_fastai=c.seconds/tf))
                print(cost[-1], flush=True)
        lines += ['## 3. Cost: check_shortcuts (train items read, header only) vs plain fastai verify_images over all the files',
                  pd.DataFrame(cost).to_string(index=False, float_format=lambda v: f'{v:.3g}')]
    finally: shutil.rmtree(tmp, ignore_errors=True)
    head = (f'bench_shortcuts: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, total {time.perf_counter() - t0:.0f} s')
    txt = head + '\n\n' + '\n'.join(lines) + '\n'
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
