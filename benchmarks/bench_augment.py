"""Benchmark the `augment` check of `learn.troubleshoot()`: what it finds, what it misses, what the bug costs, what the check costs.

Collections (version-zero LeNet at 32 px, Adam 3e-4), each with fastai's `aug_transforms()` and variants of it:

- `sample`: the sample collection's train/valid pages (6 classes): no augmentation changes their label;
- `oracle`: oracle-mnist's real scans (10 characters, 200 per class for training; skipped when absent);
- `gutter`: the sample's pages, each shaded along its left or its right edge like the binding of a left- or
  right-hand page, labelled `left`/`right`. A horizontal flip (on in `aug_transforms()`) turns one into the other;
- `updown`: freshly rendered text, cover, map and photo pages, upright or turned 180°, labelled
  `upright`/`upside_down`. A vertical flip (`flip_vert=True`: fastai's `Dihedral`) turns one into the other, a
  horizontal flip does not.

1. What it finds: `check_augment` per collection, augmentation and seed: verdict, the transform and classes named,
   seconds.
2. What the bug costs: the version-zero LeNet trained for `--epochs` on `gutter` with `aug_transforms()` and with
   `aug_transforms(do_flip=False)`, and on `updown` with `aug_transforms()` and `flip_vert=True` (same seeds): valid error.
3. What the check costs: its seconds next to one epoch of plain fastai training (`learn.fit(1)`) on the same learner.

Usage: python benchmarks/bench_augment.py [--seeds 3] [--epochs 10] [--out benchmarks/results/augment.txt]
"""
import argparse, os, time, tempfile, platform, contextlib, io, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image
from fastai.vision.all import set_seed, aug_transforms
from glamdebug.core import atomic_write
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
from glamdebug.samples import sample_collection, render_sample
from glamdebug.debug import check_augment

ROOT = Path(__file__).resolve().parent.parent
SIZE = 32


def gutter(src_df, src, dst):
    "The sample's train/valid pages shaded along the left or the right edge, labelled by the side"
    rng, rows = np.random.default_rng(0), []
    for i, r in enumerate(src_df.itertuples()):
        if r.split not in ('train', 'valid'): continue
        a = np.asarray(Image.open(src/r.fname).convert('RGB'), dtype=np.float32)
        side, w = int(rng.integers(2)), a.shape[1]
        shade = np.ones(w, np.float32); shade[:w//4] = np.linspace(0.35, 1, w//4)
        if side: shade = shade[::-1]
        fn = f'{i:04d}.png'; Image.fromarray((a*shade[None, :, None]).astype(np.uint8)).save(dst/fn)
        rows.append(dict(fname=fn, label=['left', 'right'][side], split=r.split))
    return read_collection(pd.DataFrame(rows), path=dst, check_images=False)


def updown(dst, n=400):
    "Text, cover, map and photo pages, upright or turned 180°"
    rng, rows = np.random.default_rng(0), []
    for i in range(n):
        im = render_sample(['text', 'cover', 'map', 'photo'][int(rng.integers(4))], rng, size=64)
        lbl = 'upright' if i % 2 == 0 else 'upside_down'
        fn = f'{i:04d}.png'; (im if lbl == 'upright' else im.rotate(180)).save(dst/fn)
        rows.append(dict(fname=fn, label=lbl, split='train' if i < 0.75*n else 'valid'))
    return read_collection(pd.DataFrame(rows), path=dst, check_images=False)


def oracle(dst):
    import importlib.util
    spec = importlib.util.spec_from_file_location('oracle_merge', ROOT/'benchmarks'/'oracle_merge.py')
    om = importlib.util.module_from_spec(spec); spec.loader.exec_module(om)
    if not om.ORACLE.exists(): return None
    return read_collection(om.oracle_collection(dst), check_images=False)


AUGS = {'aug_transforms()': dict(), 'do_flip=False': dict(do_flip=False), 'flip_vert=True': dict(flip_vert=True)}
PLAN = [('sample', 'aug_transforms()'), ('sample', 'flip_vert=True'), ('oracle', 'aug_transforms()'), ('oracle', 'flip_vert=True'),
        ('gutter', 'aug_transforms()'), ('gutter', 'do_flip=False'), ('gutter', 'flip_vert=True'),
        ('updown', 'aug_transforms()'), ('updown', 'flip_vert=True')]


def learner(df, aug, seed):
    set_seed(seed, reproducible=True)
    return defaults_learner(collection_dls(df, size=SIZE, batch_tfms=aug_transforms(**AUGS[aug]), seed=seed))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'augment.txt'))
    a = ap.parse_args()
    warnings.filterwarnings('ignore'); torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    src = sample_collection(); sdf = read_collection(src/'collection.csv', check_images=False)
    cols = dict(sample=sdf[sdf.split.isin(['train', 'valid'])].reset_index(drop=True), oracle=None, gutter=None, updown=None)
    cols['sample'].attrs['path'] = src
    for name, f in (('gutter', lambda d: gutter(sdf, src, d)), ('updown', updown), ('oracle', oracle)):
        (tmp/name).mkdir(); cols[name] = f(tmp/name)
    lines = [f'bench_augment: version-zero LeNet at {SIZE} px, torch threads 1, {os.cpu_count()} CPUs, load average at start '
             f'{os.getloadavg()[0]:.1f}', f'python {platform.python_version()}, torch {torch.__version__}', '']
    if cols['oracle'] is None: lines.append('oracle-mnist not found: its rows are skipped'); lines.append('')

    rows = []
    for cname, aug in PLAN:
        df = cols[cname]
        if df is None: continue
        for seed in range(a.seeds):
            learn = learner(df, aug, seed)
            c = check_augment(learn, seed=seed)
            d = c.details if c.details is not None else pd.DataFrame()
            top = d.iloc[0] if len(d) else None
            named = (f"{top['transform']}: {top['turns']} → {top['into']} {top['share']:.0%}" if top is not None and top['into'] else '-')
            tested = d[d['verdict'].notna()] if 'verdict' in d else d.iloc[:0]
            tried = '; '.join(f"{r['transform']} {r['acc_without']:.0%}→{r['acc_with']:.0%} acc, {r['conf_without']:.0%}→{r['conf_with']:.0%} conf"
                              for _, r in tested.iterrows()) or '-'
            with contextlib.redirect_stdout(io.StringIO()), learn.no_bar():
                t0 = time.perf_counter(); learn.fit(1); epoch = time.perf_counter() - t0
            rows.append(dict(collection=cname, augmentation=aug, seed=seed, status=c.status, probe_acc=c.evidence.get('probe_accuracy'),
                             most_moved=named, tried_with_it=tried, check_s=c.seconds, x_epoch=c.seconds/epoch))
            print(rows[-1], flush=True)
    res = pd.DataFrame(rows)
    lines += ['## 1. What the check finds (status per seed; the transform that moved most of one class to one other, at p=1, '
              'for a copy trained without augmentation; suspects tried: accuracy and true-class probability on the two '
              'classes without → with the transform in training)',
              res.to_string(index=False, float_format=lambda v: f'{v:.2f}'), '']
    summ = res.groupby(['collection', 'augmentation'], sort=False).agg(
        fail=('status', lambda s: int((s == 'fail').sum())), warn=('status', lambda s: int((s == 'warn').sum())),
        ok=('status', lambda s: int((s == 'ok').sum())), check_s=('check_s', 'median'), x_epoch=('x_epoch', 'median')).reset_index()
    lines += ['summary (runs per status; median seconds; median ratio to one plain fastai epoch):',
              summ.to_string(index=False, float_format=lambda v: f'{v:.2f}'), '']

    harm = []
    for cname, aug in (('gutter', 'aug_transforms()'), ('gutter', 'do_flip=False'), ('updown', 'aug_transforms()'), ('updown', 'flip_vert=True')):
        for seed in range(a.seeds):
            learn = learner(cols[cname], aug, seed)
            with contextlib.redirect_stdout(io.StringIO()), learn.no_bar(): learn.fit(a.epochs)
            harm.append(dict(collection=cname, augmentation=aug, seed=seed, valid_error=float(learn.validate()[1]) if learn.metrics else None))
            if harm[-1]['valid_error'] is None:
                with learn.no_bar(): p, t = learn.get_preds()
                harm[-1]['valid_error'] = float((p.argmax(1) != t).float().mean())
            print(harm[-1], flush=True)
    h = pd.DataFrame(harm)
    lines += [f'## 2. What the bug costs: version-zero LeNet, {a.epochs} epochs, valid error per seed',
              h.pivot(index='seed', columns=['collection', 'augmentation'], values='valid_error').to_string(float_format=lambda v: f'{v:.3f}'), '']
    text = '\n'.join(lines)
    print(text)
    atomic_write(a.out, lambda f: f.write(text + '\n'))


if __name__ == '__main__':
    main()
