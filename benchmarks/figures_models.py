"""The figures issue 3 asks for, reproducibly: version zero (`defaults_learner`, plain `fit`) on real and sample data.

    python benchmarks/figures_models.py digits  [--size 16] [--bs 32] [--epochs 8] [--threads 1] [--seeds 0 1 2]
    python benchmarks/figures_models.py samples [--size 64] [--bs 32] [--epochs 20] [--archs lenet resnet18]

`digits`: LeNet-like on `digits_collection` (scikit-learn's 1,797 handwritten digits, 60/20/20 split): valid error
with its Wilson interval, wall time of `fit` and of the whole run, and the CPU time of the process (on a shared
machine wall time measures the neighbours too; CPU time with one thread is what an idle core would take).
`samples`: per-class valid errors of each arch on the sample collection (15 valid images per class: ±20 points).
"""
import argparse, os, sys, time, tempfile, platform
from pathlib import Path
import pandas as pd, torch


def _quiet():
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import defaults
    defaults.callbacks = [c for c in defaults.callbacks if c is not ProgressCallback]


def digits(a):
    from glamdebug.data import read_collection, collection_dls
    from glamdebug.samples import digits_collection
    from glamdebug.models import defaults_learner
    import glamdebug.preds
    from fastai.torch_core import set_seed
    p = digits_collection(Path(tempfile.mkdtemp()))   # writing the PNGs is set-up, not timed
    return ''.join(_digits_once(a, p, seed) for seed in a.seeds)


def _digits_once(a, p, seed):
    from glamdebug.data import read_collection, collection_dls
    from glamdebug.models import defaults_learner
    from fastai.torch_core import set_seed
    set_seed(seed, reproducible=True)
    t0, c0 = time.perf_counter(), time.process_time()
    df = read_collection(Path(p)/'collection.csv')
    dls = collection_dls(df, size=a.size, bs=a.bs)
    learn = defaults_learner(dls)
    learn.logger = lambda *x: None
    t1 = time.perf_counter()
    learn.fit(a.epochs)
    t2 = time.perf_counter()
    pr = learn.get_split_preds('valid')
    t3, c3 = time.perf_counter(), time.process_time()
    lo, hi = pr.error_ci()
    return (f'digits, seed {seed}, lenet, size {a.size}, bs {a.bs}, {a.epochs} epochs, plain fit at lr {learn.lr}, wd {learn.wd}: '
            f'{len(dls.train_ds)} train / {pr.n} valid\n'
            f'  valid error {pr.error:.2%} ({pr.n_err}/{pr.n}, 95% CI {lo:.1%}-{hi:.1%})\n'
            f'  wall: fit {t2-t1:.1f} s, read + dls + fit + valid preds {t3-t0:.1f} s; CPU time of that part {c3-c0:.1f} s\n')


def samples(a):
    from glamdebug.data import read_collection, collection_dls
    from glamdebug.samples import sample_collection
    from glamdebug.models import defaults_learner
    import glamdebug.preds
    df = read_collection(Path(sample_collection())/'collection.csv')
    dls = collection_dls(df, size=a.size, bs=a.bs)
    cols, lines = {}, []
    for arch in a.archs:
        torch.manual_seed(0)
        learn = defaults_learner(dls, arch)
        learn.logger = lambda *x: None
        t = time.perf_counter()
        learn.fit(a.epochs)
        t = time.perf_counter() - t
        va, tr = learn.get_split_preds('valid'), learn.get_split_preds('train')
        pc = va.per_class()
        cols[f'{arch} errors'], cols[f'{arch} error'] = pc['errors'], pc['error']
        lines.append(f'  {arch}: valid error {va.error:.1%} ({va.n_err}/{va.n}), train error {tr.error:.1%}, fit {t:.1f} s')
    tab = pd.DataFrame(cols)
    tab.insert(0, 'n valid', pc['n'])
    return (f'sample collection, size {a.size}, bs {a.bs}, {a.epochs} epochs each, plain fit, version-zero defaults\n'
            + '\n'.join(lines) + '\n' + tab.to_string(float_format=lambda v: f'{v:.3f}') + '\n')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('what', choices=['digits', 'samples'])
    p.add_argument('--size', type=int, default=None)
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--epochs', type=int, default=None)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='digits: one run per seed')
    p.add_argument('--archs', nargs='+', default=['lenet', 'resnet18'])
    p.add_argument('--out', default=None, help='append the result here')
    a = p.parse_args(argv)
    a.size = a.size or (16 if a.what == 'digits' else 64)
    a.epochs = a.epochs or (8 if a.what == 'digits' else 20)
    torch.set_num_threads(a.threads)
    _quiet()
    txt = globals()[a.what](a)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    txt += (f'  [{dev}, torch threads {a.threads}, os.cpu_count {os.cpu_count()}, '
            f'affinity {len(os.sched_getaffinity(0))} cores, load avg {os.getloadavg()[0]:.1f}]\n')
    print(txt)
    if a.out:
        with open(a.out, 'a') as f: f.write(txt + '\n')


if __name__ == '__main__': main()
