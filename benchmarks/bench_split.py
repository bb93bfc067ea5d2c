"""Benchmark `split_collection`: a split drawn within classes, whole groups (volumes, albums, boxes) at a time.

Two parts, printed side by side in one run:

1. Scale and quality (100,000 rows in about 9,500 volumes of 1 to 20 pages, 50 classes of very different sizes, each volume
   mostly one class): `split_collection(group='volume')` against what a user reaches for, on the same table: fastai's
   `RandomSplitter` (rows, as `valid_pct=` does), scikit-learn's `GroupShuffleSplit` (whole groups, classes ignored) and
   `StratifiedGroupKFold` (whole groups and classes: its first of 5 folds). Time, volumes cut across train and valid,
   the valid share, how far each class's share of valid is from its share of train, classes left without a valid item.
2. Why it matters (synthetic, on this machine's CPU): `volume_collection`'s 96 volumes of 8 pages, each mostly (80 %) of
   one class and photographed its own way (the page on a cradle of the volume's colour, at its own size and place, through
   its own scanner settings), and 48 new volumes as the test split. The version-zero LeNet is trained on a split drawn
   page by page (fastai's `valid_pct`) and on one drawn by volume (`split_collection`), then tested on the new volumes;
   valid error against the error on the new volumes, over seeds. Volumes differ a lot in how hard they are, so the ~19
   validation volumes measure within several points: read the mean over seeds.

Usage: python benchmarks/bench_split.py [--rows 100000] [--seeds 10] [--epochs 10] [--out benchmarks/results/split.txt]
"""
import argparse, os, sys, time, platform, tempfile, shutil, warnings
from pathlib import Path
import numpy as np, pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from glamdebug.core import atomic_write
from glamdebug.data import split_collection, groups_across_splits, read_collection, collection_dls
from glamdebug.models import defaults_learner
import glamdebug.preds  # noqa: F401  (Learner.get_split_preds)
from glamdebug.samples import volume_collection


def med(f, reps=3):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); r = f(); ts.append(time.perf_counter() - t)
    return float(np.median(ts)), r


def catalogue(n, n_classes=50, seed=0):
    "A table of `n` pages in volumes of 1-20 pages; class sizes from a Zipf law; each volume 80 % its own class"
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 21, n)
    vol = np.repeat(np.arange(len(sizes)), sizes)[:n]
    p = 1 / np.arange(1, n_classes + 1); p /= p.sum()
    own = rng.choice(n_classes, vol.max() + 1, p=p)[vol]
    label = np.where(rng.random(n) < 0.8, own, rng.choice(n_classes, n, p=p))
    return pd.DataFrame(dict(fname=[f'v{v}/p{i}.tif' for i, v in enumerate(vol)], label=[f'c{k:02d}' for k in label], volume=vol))


def quality(df, valid):
    "Volumes cut, valid share, the largest gap between a class's share of valid and of train (points), classes with no valid item"
    s = np.where(valid, 'valid', 'train')
    cut = len(groups_across_splits(df.assign(split=s), 'volume'))
    share = pd.crosstab(df.label, s, normalize='columns')
    n_vol = df.groupby('label').volume.nunique()
    lost = int(((pd.Series(valid, index=df.index).groupby(df.label).sum() == 0) & (n_vol > 1)).sum())
    return dict(volumes_cut=cut, valid_share=valid.mean(), class_gap_pts=100*(share.valid - share.train).abs().max(), classes_without_valid=lost)


def scale(n, rows):
    from fastai.data.transforms import RandomSplitter
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold
    df = catalogue(n)
    idx = np.arange(len(df))
    def ours(): return split_collection(df, group='volume', verbose=False).split.eq('valid').to_numpy()
    def rand():
        v = np.zeros(len(df), bool); v[RandomSplitter(0.2, seed=0)(list(idx))[1]] = True; return v
    def gss():
        v = np.zeros(len(df), bool); v[next(GroupShuffleSplit(1, test_size=0.2, random_state=0).split(idx, groups=df.volume))[1]] = True; return v
    def sgkf():
        v = np.zeros(len(df), bool); v[next(StratifiedGroupKFold(5, shuffle=True, random_state=0).split(idx, df.label, df.volume))[1]] = True; return v
    t0, v0 = med(ours)
    for name, f, reps in (('split_collection(group=)', ours, 3), ("fastai RandomSplitter(0.2)", rand, 3),
                          ('sklearn GroupShuffleSplit(test_size=0.2)', gss, 3), ('sklearn StratifiedGroupKFold(5), 1st fold', sgkf, 1)):
        t, v = (t0, v0) if f is ours else med(f, reps)
        rows.append(dict(part='scale', rows=len(df), volumes=df.volume.nunique(), method=name, seconds=t, ratio_to_ours=t/t0, **quality(df, v)))
        print(rows[-1], flush=True)


def page_and_volume_splits(df, seed):
    """`volume_collection`'s split column drawn two ways, test kept: valid drawn page by page from the training pages
    (fastai's `RandomSplitter(0.2)`, as `valid_pct=0.2` draws it), and whole volumes at a time (`split_collection`)"""
    from fastai.data.transforms import RandomSplitter
    pool = (df.split == 'train').to_numpy()
    v = np.zeros(len(df), bool); v[np.flatnonzero(pool)[RandomSplitter(0.2, seed=seed)(list(range(pool.sum())))[1]]] = True
    return np.where(v, 'valid', df.split), split_collection(df, group='volume', seed=seed, verbose=False).split.to_numpy()


def trained_on(df, split, folder, seed, epochs):
    "`(table, learner)`: `df` with the split column `split`, read as a collection, and the version-zero LeNet trained on it at 32 px, seeded, quietly"
    from fastai.torch_core import set_seed
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); d = read_collection(df.assign(split=split), path=folder, progress=False)
    set_seed(seed, reproducible=True)
    learn = defaults_learner(collection_dls(d, size=32, bs=64), 'lenet')
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return d, learn


def learning(seeds, epochs, rows):
    tmp = Path(tempfile.mkdtemp(prefix='split_'))
    try:
        for seed in range(seeds):
            folder = volume_collection(tmp/f'{seed}', seed=seed)
            df = pd.read_csv(folder/'collection.csv')
            for name, split in zip(('pages at random (fastai valid_pct=0.2)', 'whole volumes (split_collection group=volume)'),
                                   page_and_volume_splits(df, seed)):
                d, learn = trained_on(df, split, folder, seed, epochs)
                with learn.no_bar(), learn.no_logging():
                    err = {s: float(learn.get_split_preds(s).error) for s in ('valid', 'test')}
                rows.append(dict(part='learning', seed=seed, method=name, volumes_cut=len(groups_across_splits(d[d.split != 'test'], 'volume')),
                                 valid_error=err['valid'], new_volumes_error=err['test'], flattered_by_pts=100*(err['test'] - err['valid'])))
                print(rows[-1], flush=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rows', type=int, default=100_000)
    ap.add_argument('--seeds', type=int, default=10)
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'split.txt'))
    a = ap.parse_args()
    t0, rows = time.perf_counter(), []
    scale(a.rows, rows)
    learning(a.seeds, a.epochs, rows)
    t = pd.DataFrame(rows)
    fmt = lambda v: f'{v:.3g}'
    s, l = t[t.part == 'scale'].dropna(axis=1, how='all'), t[t.part == 'learning'].dropna(axis=1, how='all')
    mean = l.groupby('method', sort=False)[['valid_error', 'new_volumes_error', 'flattered_by_pts']].mean()
    txt = (f'split_collection vs plain fastai / scikit-learn; {platform.machine()}, {os.cpu_count()} cores; total {time.perf_counter() - t0:.0f} s\n\n'
           f'1. {a.rows:,} rows (medians of 3 runs; StratifiedGroupKFold once); class_gap_pts: largest gap between a class\'s share of valid and of train\n'
           + s.drop(columns='part').to_string(index=False, float_format=fmt) + '\n\n'
           f'2. version-zero LeNet, 32 px, {a.epochs} epochs, 96 volumes of 8 pages to split, tested on 48 new volumes; {a.seeds} seeds\n'
           + l.drop(columns='part').to_string(index=False, float_format=fmt) + '\n\nmean over seeds\n' + mean.to_string(float_format=fmt) + '\n')
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
