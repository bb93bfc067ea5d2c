"""CPU benchmark for error by slice: `learn.slice_report()` against what a user writes with plain fastai and pandas,
side by side in one run.

1. Detection on real training (version-zero LeNet, Adam 3e-4, 3 seeds): scikit-learn's digits at 16 px and, when
   ../shared/data/oracle-mnist is there, its real scans at 28 px. Planted bugs: a box of valid items scanned sideways
   (30 % of valid, rotated a quarter, none in training), and a phone delivery (25 % of valid and 2 % of training re-saved
   blurred, noisy, as JPEG quality 20). Control: the same box column, images untouched. Every run also has three noise
   columns (drawer: 3 values, donor: 6, year: numbers) and a class-mix column: `shelf` holds the three classes the model
   gets most wrong. Both analyses read the same predictions:
   - plain: `df.groupby(col)` error per value (years in quartiles, values of 10 items or more), a two-proportion z-test
     of each value against the rest, Benjamini-Hochberg at 5 % (what a careful user writes with pandas and scipy; fastai
     has no slice analysis);
   - glamdebug: `learn.slice_report()` (within classes, CMH; file headers read too).
   Counted: the planted slice flagged (found), noise slices flagged (false alarms), the shelf blamed as a slice.
2. Scale: 10,000 to 1,000,000 saved predictions, 50 classes, 6 columns, one planted slice (twice the error): `slice_errors`
   against the plain pandas groupby per column, and against a plain pandas stratified table (a crosstab of slice by
   class per column).
3. File headers: `file_table` (headers, 8 threads) against fastai's `PILImage.create` (a full decode) per file, on the
   sample collection, oracle's PNGs, and 40 generated 2,400 x 1,800 px JPEG scans.
`python benchmarks/bench_slices.py`; writes benchmarks/results/slices.txt.
"""
import sys, time, math, tempfile, warnings, platform, os
from pathlib import Path
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from PIL import Image, ImageFilter
from fastai.vision.all import PILImage, set_seed
from scipy.stats import false_discovery_control
from glamdebug.data import read_collection, collection_dls
from glamdebug.samples import digits_collection, sample_collection
from glamdebug.models import defaults_learner
from glamdebug.preds import Preds
from glamdebug.slices import slice_errors, file_table, _gap_pvalues

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from oracle_merge import ORACLE, oracle_collection
torch.set_num_threads(2)
SEEDS = (0, 1, 2)
OUT = []


def say(*a):
    s = ' '.join(str(o) for o in a); print(s, flush=True); OUT.append(s)


def plant(df, bug, seed, size):
    "`df` with the noise columns, a `box` column, and the bug planted in box B's files"
    rng = np.random.default_rng(seed); df = df.copy(); path = Path(df.attrs['path'])
    df['drawer'] = rng.choice(['left', 'middle', 'right'], len(df)); df['donor'] = rng.choice(list('pqrstu'), len(df))
    df['year'] = rng.integers(1850, 1950, len(df)).astype(str); df['box'] = 'A'
    shares = dict(sideways=(0.3, 0.), phone=(0.25, 0.02), clean=(0.3, 0.))[bug]
    for sp, share in zip(('valid', 'train'), shares):
        ix = df.index[df.split == sp]
        for i in rng.choice(ix, int(round(share*len(ix))), replace=False):
            df.at[i, 'box'] = 'B'
            if bug == 'clean': continue
            im = Image.open(path/df.at[i, 'fname']).convert('L')
            if bug == 'sideways':
                fn = df.at[i, 'fname'].replace('.png', f'_side{seed}.png'); im.transpose(Image.Transpose.ROTATE_90).save(path/fn)
            else:
                a = np.asarray(im.filter(ImageFilter.GaussianBlur(size/13)), float)*0.6 + 50 + rng.normal(0, 25, im.size[::-1])
                fn = df.at[i, 'fname'].replace('.png', f'_phone{seed}.jpg'); Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(path/fn, quality=20)
            df.at[i, 'fname'] = fn
    df.attrs = dict(df.attrs)
    return df


def plain_flags(t, cols, alpha=0.05, min_items=10):
    "Plain pandas + scipy: error per value of each column (years in quartiles), z-test against the rest, BH over all: the flagged worse (col, value)"
    keys, ps, sign = [], [], []
    n, e = len(t), int(t.wrong.sum())
    for c in cols:
        v = pd.qcut(pd.to_numeric(t[c]), 4).astype(str) if c == 'year' else t[c]
        g = t.wrong.groupby(v).agg(['size', 'sum'])
        for v, r in g[g['size'] >= min_items].iterrows():
            p = _gap_pvalues(np.array([r['sum']], float), np.array([r['size']], float), np.array([e - r['sum']], float), np.array([n - r['size']], float))[0]
            keys.append((c, str(v))); ps.append(1. if np.isnan(p) else p); sign.append(r['sum']/r['size'] > (e - r['sum'])/max(n - r['size'], 1))
    q = false_discovery_control(np.array(ps)) if ps else []
    return {k for k, qq, s in zip(keys, q, sign) if qq < alpha and s}


def detection():
    say('## 1. Planted slices on real training: found / false alarms / class mix blamed (same predictions for both analyses)')
    cols = dict(noise=['drawer', 'donor', 'year'])
    data = []
    tmp = Path(tempfile.mkdtemp())
    d = read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)
    data.append(('digits', d, 16, 6))
    if ORACLE.exists():
        o = oracle_collection(tmp/'oracle'); o.attrs['path'] = str(tmp/'oracle')
        data.append(('oracle', o, 28, 8))
    rows = []
    for name, df, size, epochs in data:
        for bug in ('sideways', 'phone', 'clean'):
            for seed in SEEDS:
                t = plant(df, bug, seed, size)
                set_seed(seed, reproducible=True)
                learn = defaults_learner(collection_dls(t, size=size, bs=32))
                t0 = time.perf_counter()
                with learn.no_bar(), learn.no_logging(): learn.fit(1)
                epoch_s = time.perf_counter() - t0
                with learn.no_bar(), learn.no_logging(): learn.fit(epochs - 1)
                with learn.no_bar(): p = learn.get_split_preds('valid')
                va = t[t.split == 'valid'].reset_index(drop=True)
                hard = list(p.per_class().sort_values('error', ascending=False).index[:3])
                shelves = t[['fname']].assign(shelf=np.where(t.label.isin(hard), 'top', 'bottom'))
                va = va.assign(wrong=(~p.correct).numpy(), shelf=np.where(va.label.isin(hard), 'top', 'bottom'))
                t1 = time.perf_counter(); pf = plain_flags(va, ['box', 'shelf'] + cols['noise']); plain_s = time.perf_counter() - t1
                t1 = time.perf_counter()
                rep = learn.slice_report(meta=shelves, progress=False)
                glam_s = time.perf_counter() - t1
                gw = set(rep.worse)
                planted = ('box', 'B') if bug != 'clean' else None
                file_worse = sorted({c for c, v in gw if c not in ('box', 'shelf') + tuple(cols['noise'])})
                rows.append(dict(collection=name, bug=bug, seed=seed, valid_error=p.error,
                                 box_B_error=float(va.wrong[va.box == 'B'].mean()), box_A_error=float(va.wrong[va.box == 'A'].mean()),
                                 plain_found=planted in pf if planted else None, glam_found=planted in gw if planted else None,
                                 plain_false=sum(c in cols['noise'] for c, _ in pf) + (('box', 'B') in pf and bug == 'clean'),
                                 glam_false=sum(c in cols['noise'] for c, _ in gw) + (('box', 'B') in gw and bug == 'clean') + (bug == 'clean')*len(file_worse),
                                 glam_explained=','.join(f'{c}={v}' for c, v in rep.flagged('explained')[['column', 'value']].itertuples(index=False, name=None)
                                                         if c != 'box') or '-',
                                 plain_blames_shelf=('shelf', 'top') in pf, glam_blames_shelf=('shelf', 'top') in gw,
                                 glam_says_mix=('shelf' in set(rep.flagged('class mix').column)),
                                 files_flagged=','.join(file_worse) or '-', plain_s=plain_s, glam_s=glam_s, x_epoch=glam_s/epoch_s))
                say(f'  {name} {bug} seed {seed}: valid {p.error:.1%}, box B {rows[-1]["box_B_error"]:.1%} vs A {rows[-1]["box_A_error"]:.1%}; '
                    f'plain flags {sorted(pf)}; glamdebug worse {sorted(gw)}, class mix {sorted(set(rep.flagged("class mix").column))}; {glam_s:.2f} s')
    r = pd.DataFrame(rows)
    with pd.option_context('display.width', 250, 'display.max_columns', 30):
        say(r.to_string(index=False, float_format=lambda v: f'{v:.3f}'))
        s = r.groupby(['collection', 'bug']).agg(found_plain=('plain_found', 'sum'), found_glam=('glam_found', 'sum'),
                                                  false_plain=('plain_false', 'sum'), false_glam=('glam_false', 'sum'),
                                                  shelf_blamed_plain=('plain_blames_shelf', 'sum'), shelf_blamed_glam=('glam_blames_shelf', 'sum'),
                                                  shelf_class_mix_glam=('glam_says_mix', 'sum'), runs=('seed', 'size'),
                                                  plain_s=('plain_s', 'median'), glam_s=('glam_s', 'median'), x_epoch=('x_epoch', 'median'))
        s['ratio_s'] = s.glam_s/s.plain_s
        say('\nsummary (counts over seeds; found: planted slice flagged; false: noise slices, or the untouched box, flagged; '
            'shelf: the 3 hardest classes; median seconds; x_epoch: slice_report against one training epoch):')
        say(s.to_string(float_format=lambda v: f'{v:.3f}'))


def scale():
    say('\n## 2. Scale: saved predictions, 50 classes, 6 columns (5 of 3-40 values, 1 numeric: quantile bins), col2=v0 planted at twice the error; seconds, best of 3')
    rows = []
    for n in (10_000, 100_000, 1_000_000):
        rng = np.random.default_rng(0)
        meta = pd.DataFrame({f'col{j}': rng.choice([f'v{i}' for i in range(m)], n) for j, m in enumerate((3, 5, 10, 20, 40))})
        meta['year'] = rng.integers(1800, 2000, n)
        targs = rng.integers(0, 50, n); wrong = rng.random(n) < np.where(meta.col2 == 'v0', 0.2, 0.1)   # one planted slice: the leader step runs
        probs = np.zeros((n, 50), np.float32); probs[np.arange(n), np.where(wrong, (targs + 1) % 50, targs)] = 1
        p = Preds.from_arrays(probs, targs, [f'c{i}' for i in range(50)])
        def best(f):
            ts = []
            for _ in range(3): t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
            return min(ts)
        t = meta.assign(wrong=wrong, label=targs)
        g = best(lambda: slice_errors(p, meta))
        assert ('col2', 'v0') in slice_errors(p, meta).worse
        pl = best(lambda: [t.groupby(c).wrong.agg(['size', 'mean']) for c in meta.columns])
        ps = best(lambda: [pd.crosstab(t[c], t.label, values=t.wrong, aggfunc=['size', 'sum']) for c in meta.columns])
        rows.append(dict(items=n, glamdebug_s=g, plain_groupby_s=pl, plain_stratified_s=ps, ratio_groupby=g/pl, ratio_stratified=g/ps))
        say(f'  {n:,}: glamdebug {g:.3f} s, plain groupby {pl:.3f} s, plain crosstab by class {ps:.3f} s')
    say(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f'{v:.3f}'))


def headers():
    say('\n## 3. File properties: headers (file_table, 8 threads) against a full decode per file (fastai PILImage.create), seconds')
    tmp = Path(tempfile.mkdtemp())
    sets = [('sample (64-256 px PNG/JPEG)', [sample_collection()/f for f in pd.read_csv(sample_collection()/'collection.csv').fname])]
    if ORACLE.exists():
        o = oracle_collection(tmp/'oracle'); sets.append(('oracle (28 px PNG)', [tmp/'oracle'/f for f in o.fname]))
    rng = np.random.default_rng(0); big = []
    for i in range(40):
        a = (rng.random((45, 60, 3))*255).astype(np.uint8)
        fn = tmp/f'scan_{i:02d}.jpg'; Image.fromarray(a).resize((2400, 1800), Image.BILINEAR).save(fn, quality=90); big.append(fn)
    sets.append(('scans (2,400 x 1,800 JPEG)', big))
    rows = []
    for name, fns in sets:
        t = time.perf_counter(); ft = file_table(fns, progress=False); h = time.perf_counter() - t
        t = time.perf_counter(); [np.asarray(PILImage.create(f)) for f in fns]; d = time.perf_counter() - t
        rows.append(dict(files=name, n=len(fns), headers_s=h, decode_s=d, ratio=h/d, per_file_ms=1000*h/len(fns), unreadable=int((ft.format == 'unreadable').sum())))
    say(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f'{v:.4f}'))


if __name__ == '__main__':
    say(f'bench_slices: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, torch {torch.__version__}, '
        f'load average at start {os.getloadavg()[0]:.1f}')
    t0 = time.perf_counter()
    detection(); scale(); headers()
    say(f'\ntotal {time.perf_counter() - t0:.0f} s')
    (ROOT/'benchmarks'/'results'/'slices.txt').write_text('\n'.join(OUT) + '\n')
