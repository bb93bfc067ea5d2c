"""Benchmark `data_curve`'s training-length check: a flat curve that is only short of training, told apart from one that is not.

Every run of a learning curve gets the same modest budget of steps. A model still learning from the items it has gains
little from more of them, so a curve drawn with runs that are too short looks flat, and "flat" reads as "do not label
more". A curve that is not falling (flat, rising, at chance) is therefore checked (`check_longer=True`): the largest
run again, twice as long, from the same start; if that alone lowers valid error (McNemar's paired test), the report
says the runs are short of training and to draw the curve again with longer runs. Measured here, for each case and seed:
  - the verdict (with "at chance": the largest run no better than always the commonest class, paired), whether the
    check ran and whether it called the runs short of training;
  - what following the advice gives: the curve drawn again with the check's epochs (its verdict);
  - what the check costs: its run's seconds over the curve's seconds without it (plain fastai has no learning curve
    to compare with; `bench_curve.py` compares the curve itself with one written by hand).
Cases: scikit-learn's digits at 16 px, LeNet-like, learning rate 1e-4 for 2 epochs' steps (runs too short: planted);
the same digits with shuffled training labels, 4 epochs (nothing to learn: the curve should be at chance, and
longer training cannot help: no "short of training" allowed); the digits with the defaults for 8 epochs (the notebook's curve); `volume_collection` (192 volumes of 8
pages, split by volume) drawn page by page at 10 epochs' steps, where `bench_curve_volumes.py` found the curve flat
in 5 of 8 collections while labelling twice the volumes did help.

Usage: python benchmarks/bench_curve_longer.py [--seeds 5] [--out benchmarks/results/curve_longer.txt]
"""
import argparse, os, sys, time, platform, tempfile, shutil, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings('ignore')
from fastai.torch_core import set_seed
from glamdebug.core import atomic_write
from glamdebug.data import read_collection, split_collection
from glamdebug.fastpath import cached_dls
from glamdebug.models import defaults_learner
from glamdebug.samples import digits_collection, volume_collection
import glamdebug.curve  # noqa: F401  (Learner.data_curve)

torch.set_num_threads(2)


def one(case, seed, make, fractions, epochs, settings=None):
    "A curve with the check; when the check called it short, the curve again with the check's epochs"
    set_seed(seed, reproducible=True)
    rep = defaults_learner(make()).data_curve(fractions, epochs=epochs, settings=settings, seed=seed, progress=False)
    r = dict(case=case, seed=seed, epochs=epochs, verdict=rep.verdict, errors=' '.join(f'{e:.3f}' for e in rep.runs.valid_error),
             constant_error=rep.constant_error, constant_p=rep.constant_p,
             checked=rep.longer is not None, short=bool(rep.undertrained), longer_error=rep.longer_error,
             fixed=rep.longer_fixed, broken=rep.longer_broken, p=rep.longer_p, curve_s=float(rep.runs.seconds.sum()),
             check_s=rep.longer['seconds'] if rep.longer else 0.)
    r['check_over_curve'] = r['check_s']/r['curve_s']
    if rep.undertrained:   # follow the advice
        set_seed(seed, reproducible=True)
        again = defaults_learner(make()).data_curve(fractions, epochs=rep.longer['epochs'], settings=settings, seed=seed, progress=False)
        r.update(again_verdict=again.verdict, again_errors=' '.join(f'{e:.3f}' for e in again.runs.valid_error),
                 again_short=again.undertrained)   # None: not checked (still falling)
    print(r, flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=5)
    ap.add_argument('--volume-seeds', type=int, default=4)
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'curve_longer.txt'))
    a = ap.parse_args()
    t0, rows, tmp = time.perf_counter(), [], Path(tempfile.mkdtemp(prefix='curvelong_'))
    try:
        df = read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)
        digits = lambda: cached_dls(df, size=16, bs=32, cache_dir=tmp/'cache', progress=False)
        bad = df.copy(); bad.attrs = dict(df.attrs); tr = bad.split == 'train'
        bad.loc[tr, 'label'] = np.random.default_rng(0).permutation(bad.loc[tr, 'label'].to_numpy())
        shuffled = lambda: cached_dls(bad, size=16, bs=32, cache_dir=tmp/'cache', progress=False)
        fr = (1/16, 1/8, 1/4, 1/2, 1)
        for s in range(a.seeds): rows.append(one('digits, lr 1e-4, 2 epochs (too short)', s, digits, fr, 2, {'lr': 1e-4}))
        for s in range(a.seeds): rows.append(one('digits, shuffled training labels, 4 epochs', s, shuffled, fr, 4))
        for s in range(a.seeds): rows.append(one('digits, defaults, 8 epochs', s, digits, fr, 8))
        for s in range(a.volume_seeds):
            folder = volume_collection(tmp/f'vol{s}', n_volumes=192, new_volumes=0, seed=s)
            vdf = read_collection(split_collection(pd.read_csv(folder/'collection.csv'), group='volume', seed=s, verbose=False),
                                  path=folder, progress=False)
            vols = lambda: cached_dls(vdf, size=32, bs=64, cache_dir=tmp/'cache', progress=False)
            rows.append(one('volumes, page by page, lenet 32 px, 10 epochs', s, vols, (1/8, 1/4, 1/2, 1), 10))
    finally: shutil.rmtree(tmp, ignore_errors=True)
    t = pd.DataFrame(rows)
    fmt = lambda v: f'{v:.3g}'
    g = t.groupby('case', sort=False)
    summ = pd.DataFrame({
        'seeds': g.size(),
        'flat': g.verdict.apply(lambda v: int((v == 'flat').sum())),
        'rising': g.verdict.apply(lambda v: int((v == 'rising').sum())),
        'at chance': g.verdict.apply(lambda v: int((v == 'at chance').sum())),
        'checked': g.checked.sum().astype(int),
        'called short': g.short.sum().astype(int),
        'again: still falling': g.apply(lambda d: int((d.get('again_verdict', pd.Series(dtype=object)) == 'still falling').sum())),
        'check / curve time (median)': g.apply(lambda d: d.check_over_curve[d.checked].median() if d.checked.any() else float('nan')),
    })
    txt = (f'data_curve check_longer; {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; total '
           f'{time.perf_counter() - t0:.0f} s\n\nper case: verdicts; how many curves the check ran on (not falling) and called short '
           'of training; of those, how many were still falling when drawn again with the check\'s epochs (the advice followed); '
           'the check\'s run time over the curve\'s\n' + summ.to_string(float_format=fmt)
           + '\n\nper curve (errors: valid error at each size; constant_error/p: always the commonest training class, and the paired test of the largest run against it; longer_error: the largest run trained twice as long; fixed/broken/p: '
           'its paired test against the largest run; again_*: the curve drawn again with twice the epochs)\n'
           + t.drop(columns=['curve_s', 'check_s']).to_string(index=False, float_format=fmt) + '\n')
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
