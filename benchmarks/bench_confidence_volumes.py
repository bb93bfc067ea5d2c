"""Benchmark: does a confidence threshold certified on valid hold for new volumes, when valid is drawn page by page?

`learn.confidence_report(goal)` certifies the confidence above which the model errs on at most `goal` of the items (95 %
sure, binomial tests on valid that count its volumes: `bench_confidence_clustered.py`) and checks it on the other splits. Valid drawn page by page (fastai's `valid_pct`)
holds pages of the volumes training holds; the report now says so (`seen_items`). This measures what that costs a user
and whether the warning is right, side by side in one run:

1. `volume_collection`: 192 volumes of 8 pages to split (each mostly (80 %) of one class, photographed its own way) and 48
   new volumes as the test split (the next delivery). The version-zero LeNet, 32 px, 10 epochs, trained on valid drawn
   page by page (fastai's `RandomSplitter(0.2)`, as `valid_pct=0.2` draws it) and on valid drawn whole volumes at a time
   (`split_collection(group='volume')`); each report certifies goals of 10 % and 20 % on valid and checks them on the
   new volumes: the error among the items it sorts there, whether that is above the goal ("missed"), the share sorted,
   and whether the report warned. Seeded; one model per seed and split.
2. The same models' `delivery_report` on the new volumes as an unlabelled delivery: does it look like valid (its features'
   classifier takes whole volumes per fold, its image statistics are tested volume by volume), and does it offer valid's
   error to expect (flattering, when valid was drawn page by page) and warn?
3. Cost: `_seen_groups` (the check the report adds) against fastai's `get_preds` on valid and the whole report, on one
   of the learners above; and `_seen_groups` alone on a 100,000-row table of 9,500 volumes (`bench_split.catalogue`).

Usage: python benchmarks/bench_confidence_volumes.py [--seeds 10] [--epochs 10] [--out benchmarks/results/confidence_volumes.txt]
"""
import argparse, os, sys, time, platform, tempfile, shutil
from pathlib import Path
import numpy as np, pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/'benchmarks'))
import torch
from glamdebug.core import atomic_write
from glamdebug.samples import volume_collection
from glamdebug.debug import _seen_groups
import glamdebug.confidence, glamdebug.delivery  # noqa: F401  (Learner.confidence_report, Learner.delivery_report)
from bench_split import med, catalogue, page_and_volume_splits, trained_on

GOALS = (0.1, 0.2)


def learning(seeds, epochs, rows, deliveries, timing, n_rows):
    tmp = Path(tempfile.mkdtemp(prefix='confvol_'))
    try:
        for seed in range(seeds):
            folder = volume_collection(tmp/f'{seed}', n_volumes=192, new_volumes=48, seed=seed)
            df = pd.read_csv(folder/'collection.csv')
            for name, split in zip(('pages (fastai valid_pct)', 'volumes (split_collection)'), page_and_volume_splits(df, seed)):
                d, learn = trained_on(df, split, folder, seed, epochs)
                with learn.no_bar(), learn.no_logging():
                    for goal in GOALS:
                        r = learn.confidence_report(goal=goal, progress=False)
                        va, te = r.splits.iloc[0], r.splits.loc['test']
                        rows.append(dict(seed=seed, valid=name, goal=goal, valid_error=va.error, test_error=te.error,
                                         certified=r.threshold is not None, valid_sorted=va['share sorted'], valid_error_sorted=va['error sorted'],
                                         test_sorted=te['share sorted'], test_error_sorted=te['error sorted'],
                                         missed=bool(r.threshold is not None and te['error sorted'] > goal), verdict=te.verdict,
                                         warned=bool(r.seen), seen_items=r.to_dict()['seen_items'], valid_items=int(va['items'])))
                        print(rows[-1], flush=True)
                    dr = learn.delivery_report(d[d.split == 'test'].assign(fname=lambda t: [str(folder/f) for f in t.fname]), progress=False)
                    deliveries.append(dict(seed=seed, valid=name, verdict=dr.verdict, auc=dr.auc, expect_valid_error=dr.ref.error,
                                           atc=dr.atc, true_error=learn.get_split_preds('test').error, warned='share their' in dr.summary))
                    print(deliveries[-1], flush=True)
                    if seed == 0 and name.startswith('pages'):
                        learn.dls.valid.bs = 64
                        timing['get_preds (plain fastai, valid)'] = med(lambda: learn.get_preds(ds_idx=1))[0]
                        timing['_seen_groups (valid)'] = med(lambda: _seen_groups(learn, 'valid'))[0]
                        learn.confidence_report(goal=0.1, progress=False)   # predictions cached: what is left is the report
                        timing['confidence_report, predictions cached'] = med(lambda: learn.confidence_report(goal=0.1, progress=False))[0]
                        scale(learn, n_rows, timing)
    finally: shutil.rmtree(tmp, ignore_errors=True)


def scale(learn, n, timing):
    "`_seen_groups` on a collection table of `n` rows split page by page (`learn`'s own table swapped for it: no image is read)"
    from fastai.data.transforms import RandomSplitter
    from glamdebug.data import Collection
    df = catalogue(n)
    v = np.zeros(len(df), bool); v[RandomSplitter(0.2, seed=0)(list(range(len(df))))[1]] = True
    df['split'] = np.where(v, 'valid', 'train')
    own, learn.dls.collection = learn.dls.collection, Collection(df, Path(tempfile.gettempdir()), 'fname', 'label', 'split', 'train', 'valid')
    try: t, s = med(lambda: _seen_groups(learn, 'valid'))
    finally: learn.dls.collection = own
    timing[f'_seen_groups on {n:,} rows ({df.volume.nunique():,} volumes; {s["items"]:,} of {s["n"]:,} valid rows share one)'] = t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=10)
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--rows', type=int, default=100_000)
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'confidence_volumes.txt'))
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0, rows, deliveries, timing = time.perf_counter(), [], [], {}
    learning(a.seeds, a.epochs, rows, deliveries, timing, a.rows)
    t = pd.DataFrame(rows)
    fmt = lambda v: f'{v:.3g}'
    agg = t.groupby(['goal', 'valid'], sort=False).agg(
        certified=('certified', 'sum'), missed=('missed', 'sum'), above_goal_significant=('verdict', lambda s: int((s == 'above goal').sum())),
        warned=('warned', 'sum'), valid_error=('valid_error', 'mean'), test_error=('test_error', 'mean'),
        valid_sorted=('valid_sorted', 'mean'), test_sorted=('test_sorted', 'mean'), test_error_sorted=('test_error_sorted', 'mean'))
    dv = pd.DataFrame(deliveries)
    gp = timing['get_preds (plain fastai, valid)']
    tm = '\n'.join(f'  {k}: {v:.4f} s' + (f' ({v/gp:.3g}× get_preds)' if 'rows' not in k and not k.startswith('get_preds') else '') for k, v in timing.items())
    txt = (f'confidence_report on valid drawn page by page vs whole volumes; {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; '
           f'total {time.perf_counter() - t0:.0f} s\n\n'
           f'1. version-zero LeNet, 32 px, {a.epochs} epochs; 192 volumes of 8 pages to split, tested on 48 new volumes; {a.seeds} seeds\n'
           'missed: certified, and the error among the new volumes\' sorted items is above the goal; above_goal_significant: its 95 % interval too\n'
           + t.to_string(index=False, float_format=fmt) + f'\n\nper goal and split (counts of {a.seeds} seeds; means)\n' + agg.to_string(float_format=fmt) +
           '\n\n2. the same models, `delivery_report` on the new volumes (unlabelled): its verdict, the error it offers to expect when the delivery '
           'looks like valid (valid\'s), ATC, the true error, whether it warned\n' + dv.to_string(index=False, float_format=fmt) +
           '\n\nper split (counts of seeds; means)\n' + dv.groupby('valid', sort=False).agg(
               like_valid=('verdict', lambda v: int((v != 'differs').sum())), warned=('warned', 'sum'), expect_valid_error=('expect_valid_error', 'mean'),
               atc=('atc', 'mean'), true_error=('true_error', 'mean')).to_string(float_format=fmt) +
           '\n\n3. cost (median of 3)\n' + tm + '\n')
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
