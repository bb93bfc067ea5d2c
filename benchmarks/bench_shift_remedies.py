"""Which of the remedies `shift_report` names for the sample's "different scanner" actually help?

The sample collection's `test_shifted` pages went through another scanner: darker, blurred, saved as JPEG at qualities
30-59 (`shift_report` names lighting, sharpness and the files' format and quality). With the settings `learn.tune()`
finds (as in the tutorial *A different scanner*), the same model is retrained from the same seed with each remedy as a
training-only batch transform, alone and combined:
- lighting: fastai `aug_transforms(max_lighting=0.4, do_flip=False)`;
- focus: torchvision `v2.GaussianBlur` at a random sigma (the remedy "augment focus"), through glamdebug's `train_only`;
- compression: torchvision `v2.JPEG` at the qualities the report names (the remedy "match the compression").
Printed: valid, test and test_shifted error per variant, next to the tuned model without augmentation (plain fastai
training, no remedy). Usage: python benchmarks/bench_shift_remedies.py [--seeds 2] [--out benchmarks/results/shift_remedies.txt]
"""
import argparse, os, time, tempfile, platform, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
from torchvision.transforms import v2
from fastai.vision.all import aug_transforms
from glamdebug.core import atomic_write
from glamdebug.data import read_collection
from glamdebug.samples import sample_collection
from glamdebug.models import defaults_learner
from glamdebug.fastpath import cached_dls
import glamdebug.tune  # Learner.tune
from glamdebug.shift import train_only  # and Learner.shift_report

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=15)
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'shift_remedies.txt'))
    a = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1)); warnings.filterwarnings('ignore')
    t0 = time.perf_counter(); cache = Path(tempfile.mkdtemp(prefix='remedies_'))
    df = read_collection(sample_collection()/'collection.csv', progress=False)
    dls = cached_dls(df, size=64, bs=32, cache_dir=cache, progress=False)
    rep = defaults_learner(dls).tune(n_trials=8, rounds=2, epochs=3, progress=False)
    shift = rep.train(a.epochs, seed=0, progress=False).shift_report('test_shifted')
    q = shift._qualities()
    qs = tuple(int(v) for v in q.strip('()').split(', ')) if q.startswith('(') else int(q)
    light = lambda: aug_transforms(max_lighting=0.4, do_flip=False)
    focus = lambda: [train_only(v2.GaussianBlur(5, sigma=(0.1, 1.5)))]
    jpeg = lambda: [train_only(v2.JPEG(qs))]
    variants = {'none (tuned, plain fastai training)': lambda: None, 'lighting': light, 'focus': focus, 'compression': jpeg,
                'lighting + focus': lambda: light() + focus(), 'lighting + focus + compression': lambda: light() + focus() + jpeg()}
    rows = []
    for seed in range(a.seeds):
        for name, tf in variants.items():
            aug = cached_dls(df, size=64, bs=32, cache_dir=cache, progress=False, batch_tfms=tf())
            l = rep.train(a.epochs, seed=seed, dls=aug, progress=False)
            with l.no_bar(): err = {s: l.get_split_preds(s).error for s in ('valid', 'test', 'test_shifted')}
            rows.append(dict(remedy=name, seed=seed, **err)); print(rows[-1], flush=True)
    t = pd.DataFrame(rows)
    m = t.groupby('remedy', sort=False)[['valid', 'test', 'test_shifted']].mean()
    txt = (f'bench_shift_remedies: sample collection, tuned settings ({rep.best}), {a.epochs} epochs at 64 px, seeds 0-{a.seeds - 1}; '
           f'{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; total {time.perf_counter() - t0:.0f} s\n'
           f'shift_report on the tuned model: {shift.summary}\n\n'
           + t.to_string(index=False, float_format=lambda v: f'{v:.3f}') + '\n\nmean:\n' + m.to_string(float_format=lambda v: f'{v:.3f}') + '\n')
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
