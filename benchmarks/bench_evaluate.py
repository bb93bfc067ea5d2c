"""Benchmark: `learn.error_report` against the plain fastai inference passes it needs.

The report needs one inference pass per split (train with validation transforms, valid, test). The plain-fastai
baseline builds the same labelled DataLoaders (`dls.test_dl(rows, with_labels=True)` / `dls.valid`) and calls
`learn.get_preds` once per split. Target: report time <= 1.1x the baseline. Both run in the same process, alternating,
cold cache for the report (`learn.clear_split_preds()`); the warm (cached) report time is shown too.

Usage: python benchmarks/bench_evaluate.py [--reps 3] [--epochs 2] [--size 64] [--out benchmarks/results/evaluate.txt]
"""
import argparse, os, sys, time, tempfile, platform, statistics
from pathlib import Path
import torch, pandas as pd
from fastai.vision.all import set_seed
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
from glamdebug.samples import sample_collection, digits_collection
from glamdebug.evaluate import *

def plain_passes(learn, test):
    "What a fastai user writes: one labelled DataLoader and one `get_preds` per split"
    dls, col = learn.dls, learn.dls.collection
    out = []
    for s in ('train', 'valid', test):
        dl = dls.valid if s == 'valid' else dls.test_dl(col.rows(s).reset_index(drop=True), with_labels=True)
        probs, targs = learn.get_preds(dl=dl)
        out.append(int((probs.argmax(1) != targs).sum()) / len(targs))
    return out

def report(learn, test):
    learn.clear_split_preds()
    return learn.error_report(goal=0.02, test=test)

def timeit(f, *args):
    t = time.perf_counter(); r = f(*args); return time.perf_counter() - t, r

def bench(name, csv, test, args, lines):
    df = read_collection(csv, check_images=False)
    set_seed(0, reproducible=True)
    dls = collection_dls(df, size=args.size, bs=64)
    learn = defaults_learner(dls)
    with learn.no_bar(), learn.no_logging(): learn.fit(args.epochs)
    with learn.no_bar(), learn.no_logging():
        plain_passes(learn, test); report(learn, test)          # warm-up: imports, first-call allocations, OS file cache
        tp, tr = [], []
        for i in range(args.reps):
            a, errs = timeit(plain_passes, learn, test)
            b, rep = timeit(report, learn, test)
            tp.append(a); tr.append(b)
        warm, _ = timeit(learn.error_report, 0.02, test)
    got = [rep.errors.loc[s, 'error'] for s in ('train', 'valid', 'test')]
    assert all(abs(x - y) < 1e-9 for x, y in zip(got, errs)), (got, errs)   # same numbers both ways
    n = {s: int(rep.errors.loc[s, 'n']) for s in ('train', 'valid', 'test')}
    mp, mr = statistics.median(tp), statistics.median(tr)
    lines.append(f'{name:<26} {n["train"]:>6} {n["valid"]:>6} {n["test"]:>6}  {mp:9.3f}  {mr:9.3f}  {mr/mp:6.3f}x  {min(tr)/min(tp):6.3f}x  {warm*1000:8.1f}  {warm/mp:7.2%}')
    lines.append(f'{"":<26} plain runs {", ".join(f"{x:.3f}" for x in tp)} | report runs {", ".join(f"{x:.3f}" for x in tr)}')
    lines.append(f'{"":<26} diagnosis: {rep.diagnosis}')
    print('\n'.join(lines[-3:]), flush=True)
    return mr/mp

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--reps', type=int, default=3); p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--size', type=int, default=64); p.add_argument('--threads', type=int, default=0)
    p.add_argument('--out', default=None)
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    lines = [f'bench_evaluate: learn.error_report vs plain fastai get_preds per split (median of {args.reps}, lenet, {args.size}px, bs 64)',
             f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} threads {torch.get_num_threads()}, '
             f'device {torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}',
             '', f'{"collection":<26} {"train":>6} {"valid":>6} {"test":>6}  {"plain s":>9}  {"report s":>9}  {"ratio":>7}  {"min/min":>7}  {"warm ms":>8}  {"overhead":>8}']
    print('\n'.join(lines), flush=True)
    ratios = [bench('samples (test_shifted)', sample_collection()/'collection.csv', 'test_shifted', args, lines)]
    with tempfile.TemporaryDirectory() as d:
        csv = digits_collection(Path(d)/'digits')
        csv = csv/'collection.csv' if Path(csv).is_dir() else csv
        ratios.append(bench('digits_collection (test)', csv, 'test', args, lines))
    lines += ['', 'ratio: median report / median plain; min/min: fastest report / fastest plain (least disturbed by other load);',
              'warm ms: the report again with the passes cached = all the work it adds to the inference; overhead: warm / plain.',
              f'target <= 1.1x: {"met" if max(ratios) <= 1.1 else "NOT met"} (worst median ratio {max(ratios):.3f}x)']
    print('\n'.join(lines[-3:]))
    if args.out: Path(args.out).write_text('\n'.join(lines) + '\n')

if __name__ == '__main__': main()
