"""Benchmark `learn.troubleshoot()` on the sample collection.

1. Time of quick mode, full mode and each check (wall and CPU seconds), next to plain fastai's own yardsticks on the
   same learner: one epoch of `learn.fit(1)` and `learn.lr_find()`.
2. False alarms over ten clean seeds: a fresh version-zero learner per seed, every check (full mode); any status other
   than ok counts.
3. Planted bugs: which checks fail for each (quick mode, plus `lr` for lr = 10).

Usage: python benchmarks/bench_debug.py [--size 64] [--seeds 10] [--threads 2] [--out benchmarks/results/debug.txt]
"""
import argparse, os, sys, time, shutil, tempfile, platform
from pathlib import Path
import numpy as np, pandas as pd, torch, torch.nn as nn
from PIL import Image
from fastai.vision.all import set_seed, Transform, TensorImage
from glamdebug.core import atomic_write
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner, lenet_like
from glamdebug.samples import sample_collection
from glamdebug.debug import CHECKS, QUICK_CHECKS


class Times255(Transform):
    order = 99
    def encodes(self, x: TensorImage): return x*255


def timed(f, *a, **kw):
    t, c = time.perf_counter(), time.process_time()
    r = f(*a, **kw)
    return r, time.perf_counter() - t, time.process_time() - c


def learner(df, path, size, seed=0, **kw):
    set_seed(seed)
    bt = kw.pop('batch_tfms', None)
    return defaults_learner(collection_dls(df, path, size=size, batch_tfms=bt), **kw)


def leak_copies(df, path, n=10, seed=0):
    tr, extra = df[(df.split == 'train') & (df.label != 'blank')].sample(n, random_state=seed), []
    (path/'leak').mkdir(exist_ok=True)
    for i, r in enumerate(tr.itertuples()):
        dst = Path('leak')/f'copy{i}.{"png" if i < n//2 else "jpg"}'
        if i < n//2: shutil.copy(path/r.fname, path/dst)
        else:
            im = Image.open(path/r.fname).convert('RGB'); im.resize((im.width - 2, im.height - 2)).save(path/dst, quality=90)
        extra.append(dict(fname=str(dst), label=r.label, split='valid'))
    out = pd.concat([df, pd.DataFrame(extra)], ignore_index=True); out.attrs = dict(df.attrs)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', type=int, default=64)
    ap.add_argument('--seeds', type=int, default=10)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'debug.txt'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lines = []
    def out(s=''):
        print(s, flush=True); lines.append(str(s))
    tmp = Path(tempfile.mkdtemp())
    path = Path(shutil.copytree(sample_collection(), tmp/'samples'))
    df = read_collection(path/'collection.csv')
    la = os.getloadavg()
    out(f'bench_debug: sample collection ({len(df)} images, {df.label.nunique()} classes), size {a.size}px, lenet version zero, '
        f'torch threads {a.threads}, {os.cpu_count()} CPUs, load average at start {la[0]:.1f} (shared machine: wall times include contention; '
        f'CPU seconds do not)')
    out(f'python {platform.python_version()}, torch {torch.__version__}')

    # 1. timings
    out('\n## 1. Time per check (seed 0), next to plain fastai on the same learner')
    learn = learner(df, path, a.size)
    rep, wq, cq = timed(learn.troubleshoot, quick=True, show_progress=False)
    rows = [dict(check=c.name, status=c.status, wall_s=c.seconds) for c in rep.checks]
    rep_full, wf, cf = timed(learn.troubleshoot, quick=False, show_progress=False)
    for c in rep_full.checks:
        if c.name not in QUICK_CHECKS: rows.append(dict(check=c.name + ' (opt-in)', status=c.status, wall_s=c.seconds))
    per = pd.DataFrame(rows)
    out(per.to_string(index=False, float_format=lambda v: f'{v:.2f}'))
    l2 = learner(df, path, a.size)
    _, we, ce = timed(l2.fit, 1)
    l3 = learner(df, path, a.size)
    _, wl, cl = timed(l3.lr_find, show_plot=False)
    tab = pd.DataFrame([
        dict(what='troubleshoot(quick=True)', wall_s=wq, cpu_s=cq),
        dict(what='troubleshoot(quick=False)', wall_s=wf, cpu_s=cf),
        dict(what='plain fastai: learn.fit(1) (1 epoch)', wall_s=we, cpu_s=ce),
        dict(what='plain fastai: learn.lr_find()', wall_s=wl, cpu_s=cl)])
    tab['x_epoch_wall'] = tab.wall_s/we
    out(tab.to_string(index=False, float_format=lambda v: f'{v:.2f}'))
    out(f'quick mode: {wq:.1f} s wall, {cq:.1f} s CPU = {wq/we:.1f} epochs of plain fastai training (target < 30 s on 2 cores)')

    # 2. false alarms
    out(f'\n## 2. False alarms over {a.seeds} clean seeds (fresh learner per seed, all {len(CHECKS)} checks)')
    fa, t_quick = [], []
    for s in range(a.seeds):
        l = learner(df, path, a.size, seed=s)
        r, w, c = timed(l.troubleshoot, quick=False, show_progress=False)
        t_quick.append(sum(ch.seconds for ch in r.checks if ch.name in QUICK_CHECKS))
        bad = {ch.name: ch.status for ch in r.checks if ch.status not in ('ok',)}
        fa.append(dict(seed=s, n_alarms=len(bad), alarms=', '.join(f'{k}:{v}' for k, v in bad.items()) or '-', wall_s=w, quick_part_s=t_quick[-1]))
        print(f'  seed {s}: {bad or "no alarm"} ({w:.1f} s)', flush=True)
    fa = pd.DataFrame(fa)
    out(fa.to_string(index=False, float_format=lambda v: f'{v:.1f}'))
    n_runs = a.seeds*len(CHECKS)
    out(f'false alarms: {int(fa.n_alarms.sum())} of {n_runs} check runs ({int((fa.n_alarms > 0).sum())} of {a.seeds} seeds with any alarm); '
        f'quick-mode part per seed: median {np.median(t_quick):.1f} s, max {np.max(t_quick):.1f} s wall')

    # 3. planted bugs
    out('\n## 3. Planted bugs: checks that fail (quick mode; lr = 10 also runs `lr`)')
    k = df.label.nunique()
    glob = df.copy(); glob['label'] = np.random.default_rng(0).permutation(df.label.values)
    const = df.copy(); const['label'] = df.label.iloc[0]
    frozen = lenet_like(k)
    for p in frozen.parameters(): p.requires_grad_(False)
    bugs = dict(
        glob_order=lambda: learner(glob, path, a.size),
        softmax_before_CE=lambda: learner(df, path, a.size, arch=nn.Sequential(lenet_like(k), nn.Softmax(dim=1))),
        lr_10=lambda: learner(df, path, a.size, lr=10),
        inputs_0_255=lambda: learner(df, path, a.size, batch_tfms=Times255()),
        constant_label=lambda: learner(const, path, a.size),
        duplicates_train_valid=lambda: learner(leak_copies(df, path), path, a.size),
        frozen_model=lambda: learner(df, path, a.size, arch=frozen))
    rows = []
    for name, mk in bugs.items():
        l = mk()
        checks = QUICK_CHECKS + (['lr'] if name == 'lr_10' else [])
        r, w, c = timed(l.troubleshoot, checks=checks, show_progress=False)
        failed = [ch.name for ch in r.checks if ch.status == 'fail']
        warned = [ch.name for ch in r.checks if ch.status == 'warn']
        first = next((ch for ch in r.checks if ch.status == 'fail'), None)
        rows.append(dict(bug=name, verdict=r.verdict, failed=', '.join(failed), warned=', '.join(warned) or '-', wall_s=w))
        out(f'- {name}: {first.name if first else "-"}: {first.message[:160] if first else "not caught"}')
    out(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f'{v:.1f}'))
    out(f'load average at end {os.getloadavg()[0]:.1f}')
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write('\n'.join(lines) + '\n'))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__': main()
