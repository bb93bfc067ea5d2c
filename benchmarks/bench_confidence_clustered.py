"""Benchmark: a confidence certificate that counts volumes, not pages.

`learn.confidence_report(goal)` certifies the confidence above which the model errs on at most `goal` of the items, 95 %
sure. Its exact binomial bound treats the certifying items as independent; pages of one volume (album, box) are not: they
err together. The report now finds a column that looks like volumes and counts the items as Korn and Graubard (1998) count
a survey sample drawn in clusters (design effect per row of the risk-coverage curve, degrees of freedom of the volumes'
count). This measures both bounds on the same predictions, side by side in one run:

1. Simulation, no model: a population of volumes, each with its own difficulty (a logit shift of sd `s`, 0: pages
   independent), item confidences as a calibrated model's; 1,000 draws of 1,000 items in volumes of 8 or 25 pages
   certify a goal of 5 %; the share of certificates whose true error (over 20,000 other volumes) is above the goal
   ("missed": a 95 % certificate promises at most 5 %) and the mean share sorted.
2. Trained models: `volume_collection` (192 volumes of 8 pages to split, 240 new volumes as the test split), the
   version-zero LeNet, 32 px, 10 epochs, valid drawn whole volumes at a time (`split_collection(group='volume')`) and page
   by page (fastai's `RandomSplitter(0.2)`); goals of 10 % and 20 %; per seed, the threshold each bound certifies on
   valid, the share it sorts and the error of the sorted new volumes (1,920 items), missed when above the goal.
3. Cost: `risk_coverage` on a million items in volumes of 1-20 pages, with and without groups; the whole report with
   predictions cached beside fastai's `get_preds` on valid.

Usage: python benchmarks/bench_confidence_clustered.py [--seeds 20] [--epochs 10] [--reps 1000] [--out benchmarks/results/confidence_clustered.txt]
"""
import argparse, os, sys, time, platform, tempfile, shutil, warnings
from pathlib import Path
import numpy as np, pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/'benchmarks'))
import torch
from glamdebug.core import atomic_write
from glamdebug.samples import volume_collection
from glamdebug.confidence import risk_coverage, certify, confidence_report
from bench_split import med, page_and_volume_splits, trained_on

GOALS = (0.1, 0.2)


def population(rng, volumes, pages, s):
    "Confidence, wrong, volume of `volumes` volumes of `pages` items: a calibrated model's confidences, each volume's errors shifted by its own logit"
    c = 1 - 0.5*rng.uniform(size=volumes*pages)**3
    d = np.repeat(rng.normal(0, s, volumes), pages) - s*s/2
    with np.errstate(divide='ignore'): lw = np.log1p(-c) - np.log(c) + d
    return c, rng.uniform(size=len(c)) < 1/(1 + np.exp(-lw)), np.repeat(np.arange(volumes), pages)


def simulation(reps, rows, goal=0.05, n=1000):
    for s in (0, 0.5, 1, 1.5, 2):
        for pages in (8, 25):
            rng = np.random.default_rng(0)
            pc, pw, _ = population(rng, 20_000, pages, s)
            o = np.argsort(-pc); cs = pc[o]; err = np.cumsum(pw[o])/np.arange(1, len(o) + 1)
            true = lambda t: err[np.searchsorted(-cs, -t, side='right') - 1]
            res = {'pages': [], 'volumes': []}
            for _ in range(reps):
                c, w, g = population(rng, n//pages, pages, s)
                for name, gr in (('pages', None), ('volumes', g)):
                    cur = risk_coverage(c, ~w, groups=gr, upper=False); i = certify(cur, goal)
                    if i is not None: res[name].append((true(cur.threshold[i]) > goal, cur.coverage[i]))
            r = dict(volume_sd=s, pages=pages)
            for name, v in res.items():
                v = np.array(v)
                r |= {f'certified_{name}': len(v), f'missed_{name}': v[:, 0].mean() if len(v) else np.nan, f'sorted_{name}': v[:, 1].mean() if len(v) else np.nan}
            rows.append(r); print(r, flush=True)


def learning(seeds, epochs, rows, timing):
    tmp = Path(tempfile.mkdtemp(prefix='confcl_'))
    try:
        for seed in range(seeds):
            folder = volume_collection(tmp/f'{seed}', n_volumes=192, new_volumes=240, seed=seed)
            df = pd.read_csv(folder/'collection.csv')
            page, vol = page_and_volume_splits(df, seed)
            for name, split in (('volumes (split_collection)', vol), ('pages (fastai valid_pct)', page)):
                d, learn = trained_on(df, split, folder, seed, epochs)
                with learn.no_bar(), learn.no_logging():
                    pt = learn.get_split_preds('test')
                    for goal in GOALS:
                        r = learn.confidence_report(goal=goal, others=[], progress=False)
                        ind = confidence_report(r.preds, goal=goal)   # the same predictions, items counted as independent
                        row = dict(seed=seed, valid=name, goal=goal, volumes=r.groups, test_error=pt.error)
                        for b, rep in (('pages', ind), ('volumes', r)):
                            conf, ok = pt.probs.max(1).values.numpy(), (pt.probs.argmax(1) == pt.targs).numpy()
                            a = conf >= rep.threshold if rep.threshold is not None else np.zeros(len(conf), bool)
                            e = float((~ok[a]).mean()) if a.any() else np.nan
                            row |= {f'certified_{b}': rep.threshold is not None, f'valid_sorted_{b}': rep.coverage, f'test_sorted_{b}': a.mean(),
                                    f'test_error_sorted_{b}': e, f'missed_{b}': bool(a.any() and e > goal)}
                        row['deff'] = r.to_dict()['deff']
                        rows.append(row); print(row, flush=True)
                    if seed == 0 and name.startswith('volumes'):
                        learn.dls.valid.bs = 64
                        timing['get_preds (plain fastai, valid)'] = med(lambda: learn.get_preds(ds_idx=1))[0]
                        timing['confidence_report, predictions cached, counting volumes'] = med(lambda: learn.confidence_report(goal=0.1, others=[], progress=False))[0]
                        timing['confidence_report, predictions cached, items independent'] = med(lambda: confidence_report(r.preds, goal=0.1))[0]
    finally: shutil.rmtree(tmp, ignore_errors=True)


def scale(n, timing):
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 21, n)
    g = np.repeat(np.arange(n), sizes)[:n]
    c, w = rng.uniform(size=n), rng.uniform(size=n) < 0.1
    timing[f'risk_coverage, {n:,} items, independent'] = med(lambda: risk_coverage(c, ~w, upper=False))[0]
    timing[f'risk_coverage, {n:,} items, in {g.max() + 1:,} volumes'] = med(lambda: risk_coverage(c, ~w, groups=g, upper=False))[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=20)
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--reps', type=int, default=1000)
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'confidence_clustered.txt'))
    a = ap.parse_args()
    torch.set_num_threads(2); warnings.simplefilter('ignore')
    t0, sim, rows, timing = time.perf_counter(), [], [], {}
    simulation(a.reps, sim)
    scale(1_000_000, timing)
    learning(a.seeds, a.epochs, rows, timing)
    fmt = lambda v: f'{v:.3g}'
    t = pd.DataFrame(rows)
    agg = t.groupby(['goal', 'valid'], sort=False).agg(
        **{f'{k}_{b}': (f'{k}_{b}', 'sum' if k in ('certified', 'missed') else 'mean') for b in ('pages', 'volumes')
           for k in ('certified', 'missed', 'valid_sorted', 'test_sorted', 'test_error_sorted')}, deff=('deff', 'mean'), test_error=('test_error', 'mean'))
    gp = timing.get('get_preds (plain fastai, valid)')
    tm = '\n'.join(f'  {k}: {v:.4f} s' + (f' ({v/gp:.3g}× get_preds)' if gp and k.startswith('confidence_report') else '') for k, v in timing.items())
    txt = (f'confidence certificate counting pages (independent, exact binomial) vs counting volumes (Korn–Graubard); {platform.machine()}, '
           f'{os.cpu_count()} cores, torch {torch.__version__}; total {time.perf_counter() - t0:.0f} s\n\n'
           f'1. simulation: 1,000 items in volumes of `pages`, a volume difficulty of sd `volume_sd` (logit), goal 5 %, {a.reps} draws; '
           'missed: share of certificates whose true error is above the goal (a 95 % certificate promises at most 5 %); sorted: mean share sorted\n'
           + pd.DataFrame(sim).to_string(index=False, float_format=fmt) +
           f'\n\n2. version-zero LeNet, 32 px, {a.epochs} epochs; 192 volumes of 8 pages to split, tested on 240 new volumes (1,920 items); {a.seeds} seeds\n'
           'missed: certified, and the error among the sorted new-volume items is above the goal; deff: the design effect at the volume bound\'s threshold\n'
           + t.to_string(index=False, float_format=fmt) + f'\n\nper goal and split (counts of {a.seeds} seeds; means)\n' + agg.T.to_string(float_format=fmt) +
           '\n\n3. cost (median of 3)\n' + tm + '\n')
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
