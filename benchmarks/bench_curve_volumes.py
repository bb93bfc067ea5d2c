"""Benchmark `learn.data_curve(group=)`: a learning curve drawn whole volumes at a time, against one drawn page by page.

Would labelling more help? In a collection whose pages are bound in volumes (albums, registers, boxes), new labels come
a volume at a time, while a curve drawn page by page (what `data_curve` does without `group=`, and what a curve by hand
with `df.groupby('label').sample(frac=…)` does) keeps pages of nearly every volume at every size. Two parts, in one run:

1. Cost of drawing the nested subsets, 100,000 rows in about 9,500 volumes of 1 to 20 pages, 50 classes (the table of
   `bench_split.py`), 5 fractions: `nested_subsets(groups=)` against `nested_subsets` page by page and pandas'
   `groupby('label').sample(frac=)` (page by page, not nested: what a hand loop uses).
2. Does the curve tell the truth? `volume_collection`: 192 volumes of 8 pages (each mostly (80 %) of one sample class,
   photographed its own way) and 48 new ones; the split drawn by volume (`split_collection`); the "current" training set
   is half the training volumes (within classes). On it, `data_curve` (LeNet, 32 px, 1/8 … 1; 10 epochs of steps per run,
   and 30) page by page and by volume: the verdict, and the error the fitted trend gives for twice the items. The truth:
   the same model trained on all the training volumes (twice the volumes), for as many epochs (what a user would run)
   and for the steps the curve gave every size (half the epochs), its valid error (new volumes: the split is by volume).

Usage: python benchmarks/bench_curve_volumes.py [--seeds 8] [--epochs 10,30] [--out benchmarks/results/curve_volumes.txt]
"""
import argparse, os, sys, time, platform, tempfile, shutil, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/'benchmarks'))
warnings.filterwarnings('ignore')
from fastai.torch_core import set_seed
from glamdebug.core import atomic_write
from glamdebug.data import read_collection, split_collection
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner
from glamdebug.curve import nested_subsets
import glamdebug.preds  # noqa: F401  (Learner.get_split_preds)
from glamdebug.samples import volume_collection
from bench_split import catalogue, med

torch.set_num_threads(2)
FR = (1/8, 1/4, 1/2, 1)


def cost(rows):
    df = catalogue(100_000)
    codes, fr = pd.factorize(df.label)[0], (1/16, 1/8, 1/4, 1/2, 1)
    t0, subs = med(lambda: nested_subsets(codes, fr, groups=df.volume.to_numpy()))
    full = df.volume.value_counts()
    def cut(subsets):   # volumes with some but not all of their pages in a subset, over the partial subsets
        return sum(int((v < full.reindex(v.index)).sum()) for v in (df.volume.iloc[x].value_counts() for x in subsets[:-1]))
    for name, f in (('nested_subsets(groups=volume)', None), ('nested_subsets, page by page', lambda: nested_subsets(codes, fr)),
                    ("pandas groupby('label').sample(frac), page by page", lambda: [df.groupby('label').sample(frac=f, random_state=0).index.to_numpy() for f in fr])):
        t, s = (t0, subs) if f is None else med(f)
        rows.append(dict(part='cost', method=name, seconds=t, ratio_to_ours=t/t0, volumes_cut_in_subsets=cut(s)))
        print(rows[-1], flush=True)


def truth(seeds, epochs, rows):
    tmp = Path(tempfile.mkdtemp(prefix='curvevol_'))
    try:
        for seed in range(seeds):
            folder = volume_collection(tmp/str(seed), n_volumes=192, new_volumes=48, seed=seed)
            df = split_collection(pd.read_csv(folder/'collection.csv'), group='volume', seed=seed, verbose=False)
            rng, tr = np.random.default_rng(seed), df[df.split == 'train'].drop_duplicates('volume')
            later = {v for _, g in tr.groupby('label') for v in g.volume.to_numpy()[rng.permutation(len(g))][::2]}   # half of each class's volumes: labelled later
            now = df.assign(split=np.where(df.volume.isin(later) & (df.split == 'train'), 'test_later', df.split))
            r = dict(seed=seed, epochs=epochs)
            d = read_collection(now, path=folder, progress=False)
            dls = cached_dls(d, size=32, bs=64, cache_dir=tmp/'cache', progress=False)
            for how, group in (('page', None), ('volume', 'volume')):
                set_seed(seed, reproducible=True)
                rep = defaults_learner(dls, 'lenet').data_curve(FR, epochs=epochs, group=group, seed=seed, progress=False)
                r.update({f'{how}_verdict': rep.verdict, f'{how}_errors': ' '.join(f'{e:.3f}' for e in rep.runs.valid_error),
                          f'{how}_x2_trend': float(rep.runs.valid_error.iloc[-1]*2**rep.slope)})
            r['now_items'], r['now_error'] = int(rep.runs.n_train.iloc[-1]), float(rep.runs.valid_error.iloc[-1])
            d2 = read_collection(df, path=folder, progress=False)
            dls2 = cached_dls(d2, size=32, bs=64, cache_dir=tmp/'cache', progress=False)
            for what, ep in (('x2_same_epochs', epochs), ('x2_same_steps', epochs//2)):
                set_seed(seed, reproducible=True)
                learn = defaults_learner(dls2, 'lenet')
                with learn.no_bar(), learn.no_logging(): learn.fit(ep)
                r[f'true_{what}'] = float(learn.get_split_preds('valid').error)
            r['x2_items'] = len(dls2.train.dataset)
            rows.append(dict(part='truth', **r)); print(rows[-1], flush=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)


def summary(l, epochs, seeds):
    "The table of one training length: per seed, the verdicts, verdict counts, mean errors and gains per doubling, predicted and true"
    fmt = lambda v: f'{v:.3g}'
    verdicts = pd.DataFrame({h: l[f'{h}_verdict'].value_counts() for h in ('page', 'volume')}).fillna(0).astype(int)
    mean = l[['now_error', 'page_x2_trend', 'volume_x2_trend', 'true_x2_same_steps', 'true_x2_same_epochs']].mean()
    gain = pd.DataFrame({h: 100*(l.now_error - l[c]) for h, c in (('page trend', 'page_x2_trend'), ('volume trend', 'volume_x2_trend'),
                         ('truth, same steps', 'true_x2_same_steps'), ('truth, same epochs', 'true_x2_same_epochs'))})
    off = pd.DataFrame({f'{h} trend': [(gain[f'{h} trend'] - gain[f'truth, same {s}']).abs().mean() for s in ('steps', 'epochs')]
                        for h in ('page', 'volume')}, index=['vs same steps', 'vs same epochs'])
    l = l.astype({'seed': int, 'now_items': int, 'x2_items': int})
    return (f'LeNet, 32 px, {epochs} epochs of steps per run; the current training set: half the training volumes of 192; '
            f'valid: new volumes; {seeds} seeds\n' + l.drop(columns=['part', 'epochs']).to_string(index=False, float_format=fmt)
            + '\n\nverdicts (how many seeds)\n' + verdicts.to_string()
            + '\n\nmean valid error over seeds: now, each trend for twice the items, the truth with twice the volumes\n' + mean.to_string(float_format=fmt)
            + '\n\ngain from twice the items (points), per seed: each trend\'s promise and the truth\n' + gain.assign(seed=l.seed.to_numpy()).set_index('seed').to_string(float_format=fmt)
            + '\nmean\n' + gain.mean().to_string(float_format=fmt)
            + '\n\nmean absolute gap between a trend\'s promised gain and the true gain (points)\n' + off.to_string(float_format=fmt) + '\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=8)
    ap.add_argument('--epochs', default='10,30', help='training lengths, comma-separated (epochs of steps per run)')
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'curve_volumes.txt'))
    a = ap.parse_args()
    t0, rows = time.perf_counter(), []
    cost(rows)
    eps = [int(e) for e in a.epochs.split(',')]
    for e in eps: truth(a.seeds, e, rows)
    t = pd.DataFrame(rows)
    fmt = lambda v: f'{v:.3g}'
    c = t[t.part == 'cost'].dropna(axis=1, how='all')
    txt = (f'data_curve(group=) vs page by page; {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; total {time.perf_counter() - t0:.0f} s\n\n'
           '1. drawing 5 nested subsets of 100,000 rows in 9,535 volumes, 50 classes (medians of 3 runs); volumes_cut_in_subsets: '
           'volumes with some but not all pages in a subset, summed over the 4 partial subsets\n'
           + c.drop(columns='part').to_string(index=False, float_format=fmt) + '\n\n'
           + '\n\n'.join(f'{i + 2}. ' + summary(t[(t.part == 'truth') & (t.epochs == e)].dropna(axis=1, how='all'), e, a.seeds) for i, e in enumerate(eps)))
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
