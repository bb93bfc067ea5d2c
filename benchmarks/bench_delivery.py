"""CPU benchmark for checking a new, unlabelled delivery: `learn.delivery_report(files)` against what plain fastai gives
(predictions, and the validation error taken to hold), side by side in one run.

1. Detection and estimates. Real training (version-zero LeNet, Adam 3e-4, 8 epochs, 3 seeds): scikit-learn's digits at
   16 px, and when ../shared/data/oracle-mnist is there its real scans at 28 px (200 training scans per class; the
   1,000 held out split in two: `valid`, and the items deliveries are made of). Deliveries are the held-out items written
   again with one planted change each (blur, noise, darker, flatter, rotated, low resolution, inverted as microfilm
   scanners save them, half of them inverted, JPEG at quality 20), or only three of the classes (label shift), and, for
   false alarms, 10 random halves of the unchanged items per model. For each: the true error (the labels are known
   here, not to the report), the report's verdict, and the error estimates:
   - plain: the validation error, taken to hold (fastai has no estimate without labels);
   - glamdebug's estimates table: ATC, 1 − mean confidence (temperature-scaled), and valid's error per class at the
     estimated class shares ('class mix only').
2. Cost: `delivery_report` on 10,000 image files (64 px scans) beside plain fastai `get_preds` over a `test_dl` of the
   same files, LeNet at 32 px.
`python benchmarks/bench_delivery.py`; writes benchmarks/results/delivery.txt. The verdict's thresholds were set after a
first run with seeds 0–2; `python benchmarks/bench_delivery.py --seeds 3 4 5` checks them on models they were not set on
(writes results/delivery_seeds_3-5.txt).
"""
import time, tempfile, warnings
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image, ImageOps, ImageFilter, ImageEnhance
warnings.filterwarnings('ignore')
from glamdebug.data import read_collection
from glamdebug.samples import digits_collection
import glamdebug.delivery  # noqa: F401  (Learner.delivery_report)

from common import say, header, save, train, cost_pool, plain_preds_seconds
from oracle_merge import ORACLE, oracle_collection


def _noise(im, s=60):
    a = np.asarray(im).astype(float)
    a = a + np.random.default_rng(int(a.sum()) % 2**32).normal(0, s, a.shape)
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))

SHIFTS = {'blur': lambda im: im.filter(ImageFilter.GaussianBlur(max(1, im.size[0]/14))),
          'noise': _noise,
          'darker': lambda im: ImageEnhance.Brightness(im).enhance(0.5),
          'flatter': lambda im: ImageEnhance.Contrast(im).enhance(0.4),
          'rotated 20°': lambda im: im.rotate(20),
          'low resolution': lambda im: im.resize((im.size[0]//3,)*2, Image.BILINEAR).resize(im.size, Image.BILINEAR),
          'inverted': ImageOps.invert}


def write(root, name, rows, f, ext='.png', **save):
    "The images of `rows` after `f`, written under root/name: `(files, labels)`"
    (root/name).mkdir(parents=True, exist_ok=True)
    fs = []
    for i, fn in enumerate(rows.fname):
        dst = root/name/f'{i:05d}{ext}'
        if not dst.exists(): f(Image.open(Path(rows.attrs['path'])/fn).convert('L')).save(dst, **save)
        fs.append(dst)
    return fs, rows.label.tolist()


def cases(tmp, rows, seed):
    "Every delivery of one model: (case, files, labels)"
    out = [(k, *write(tmp, k, rows, f)) for k, f in SHIFTS.items()]
    inv, same = write(tmp, 'inverted', rows, SHIFTS['inverted']), write(tmp, 'same', rows, lambda im: im)
    h = np.random.default_rng(0).permutation(len(rows)) < len(rows)//2
    out.append(('half inverted', [a if m else b for a, b, m in zip(inv[0], same[0], h)], same[1]))
    out.append(('JPEG quality 20', *write(tmp, 'jpeg20', rows, lambda im: im, ext='.jpg', quality=20)))
    three = sorted(rows.label.unique())[:3]
    sub = rows[rows.label.isin(three)]; sub.attrs = rows.attrs
    out.append(('three classes only', *write(tmp, 'three', sub, lambda im: im)))
    rng = np.random.default_rng(seed)
    for i in range(10):
        k = rng.permutation(len(rows))[:len(rows)//2]
        out.append(('unchanged (random half)', [same[0][j] for j in k], [same[1][j] for j in k]))
    return out


def run_set(name, df, size, tmp, path=None, seeds=(0, 1, 2)):
    rows = df[df.split == 'test'].copy(); rows.attrs['path'] = str(path or df.attrs['path'])
    res = []
    for seed in seeds:
        learn = train(df, size, seed, 8, path)
        with learn.no_bar(): verr = learn.get_split_preds('valid').error
        for case, fs, labels in cases(tmp/('deliveries_' + name.split()[0]), rows, seed):
            rep = learn.delivery_report(fs, progress=False)
            true = float((rep.items.prediction.to_numpy() != np.asarray(labels)).mean())
            res.append(dict(set=name, seed=seed, case=case, n=len(fs), true=true, valid=verr, atc=rep.atc, mix=rep.estimates.loc['class mix only', 'error'],
                            avg=rep.estimates.loc['average confidence', 'error'], verdict=rep.verdict, auc=rep.auc))
        r = pd.DataFrame([x for x in res if x['seed'] == seed])
        say(f'{name} seed {seed}: valid error {verr:.1%}; ' + '; '.join(f'{c} {g.true.mean():.0%} ({"/".join(sorted(set(g.verdict)))})'
                                                                    for c, g in r.groupby('case', sort=False)))
    return res


def part1(tmp, seeds):
    say(f'## 1. Detection and estimates (per delivery; {len(seeds)} models per set, seeds {seeds})')
    res = []
    d = read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)
    res += run_set('digits 16 px', d, 16, tmp, seeds=seeds)
    if ORACLE.exists():
        (tmp/'oracle').mkdir()
        o = oracle_collection(tmp/'oracle', n_train=200)
        rng = np.random.default_rng(0)
        v = o.index[o.split == 'valid']
        o.loc[rng.permutation(v)[:len(v)//2], 'split'] = 'test'   # half of the held-out scans are what deliveries are made of
        res += run_set('oracle-mnist 28 px', o, 28, tmp, path=tmp/'oracle', seeds=seeds)
    else: say('(oracle-mnist absent: digits only)')
    t = pd.DataFrame(res)
    t['flagged'] = ~t.verdict.str.startswith('like')
    for m in ('valid', 'atc', 'avg', 'mix'): t[f'ae_{m}'] = (t[m] - t.true).abs()
    g = t.groupby(['set', 'case'], sort=False)
    out = pd.DataFrame({'deliveries': g.size(), 'true error': g.true.mean().map('{:.1%}'.format),
                        'flagged by glamdebug': g.flagged.mean().map('{:.0%}'.format), 'feature AUC': g.auc.mean().round(2),
                        'plain (valid error)': g.valid.mean().map('{:.1%}'.format), 'ATC': g.atc.mean().map('{:.1%}'.format),
                        '1 − mean conf.': g.avg.mean().map('{:.1%}'.format), 'class mix only': g.mix.mean().map('{:.1%}'.format),
                        'verdicts': g.verdict.agg(lambda v: ', '.join(f'{k} {n}' for k, n in v.value_counts().items()))})
    say(''); say(out.to_string()); say('')
    say('Mean absolute error of the estimates (each delivery once; unchanged halves averaged per model first):')
    t['w'] = np.where(t.case.str.startswith('unchanged'), 1/10, 1.)
    rows = []
    for (s, changed), gg in t.groupby(['set', t.case.str.startswith('unchanged').map({True: 'unchanged', False: 'changed'})], sort=False):
        w = gg.w
        e = {m: float(np.average(gg[f'ae_{m}'], weights=w)) for m in ('valid', 'atc', 'avg', 'mix')}
        rows.append(dict(set=s, deliveries=changed, plain=e['valid'], ATC=e['atc'], avg_conf=e['avg'], class_mix=e['mix'], **{'ATC / plain': e['atc']/e['valid']},
                         flagged=float(np.average(gg.flagged, weights=w))))
    say(pd.DataFrame(rows).round(3).to_string(index=False)); say('')
    fa = t[t.case.str.startswith('unchanged')]
    say(f'False alarms on unchanged random halves: {int(fa.flagged.sum())} of {len(fa)} '
        f'({", ".join(f"{v} {n}" for v, n in fa.verdict.value_counts().items())})')
    say('')


def part2(tmp):
    say('## 2. Cost: 10,000 image files (64 px), LeNet at 32 px (seconds; best of 2)')
    learn, fs = cost_pool(tmp/'many')
    tp, tg = [], []
    for _ in range(2):
        tp.append(plain_preds_seconds(learn, fs))
        learn.clear_split_preds()
        t0 = time.perf_counter()
        with learn.no_bar(): rep = learn.delivery_report(tmp/'many', progress=False)
        tg.append(time.perf_counter() - t0)
    say(f'plain get_preds (test_dl) {min(tp):.2f} s, delivery_report {min(tg):.2f} s: {min(tg)/min(tp):.2f}× '
        f'(it also reads every file once to check it, reads the headers, passes over valid, fits the feature classifier); verdict {rep.verdict}')


if __name__ == '__main__':
    import argparse
    ap = argparse.ArgumentParser(); ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    seeds = ap.parse_args().seeds
    header('bench_delivery' + ('' if seeds == [0, 1, 2] else f' (seeds {", ".join(map(str, seeds))})'))
    with tempfile.TemporaryDirectory() as d:
        part1(Path(d), seeds)
        if seeds == [0, 1, 2]: part2(Path(d))
    save('delivery' if seeds == [0, 1, 2] else f'delivery_seeds_{seeds[0]}-{seeds[-1]}')
