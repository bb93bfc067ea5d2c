"""Per-epoch time: `defaults_learner(dls, 'resnet18')` against plain fastai `vision_learner(dls, 'resnet18', pretrained=False)`.

Same DataLoaders, same metrics, same plain `fit(1)` (no one-cycle), epochs interleaved A B A B … so that load from
other processes hits both alike; the median epoch of each is compared. What still differs (and is the point):
- head: timm's own (global average pool + one Linear, 512·c weights) vs fastai's (concat pool, BatchNorm, Dropout,
  Linear 1024→512, ReLU, BatchNorm, Dropout, Linear 512→c: ~0.5 M more weights);
- optimiser: Adam wd 0 vs fastai Adam wd 0.01 (decoupled decay: one more multiply per weight per step);
- lr: 3e-4 vs 1e-3 (no effect on time);
- normalisation: neither adds `Normalize` (vision_learner only does with pretrained weights), checked below.

    python benchmarks/bench_models.py [--size 64] [--n 480] [--bs 32] [--reps 3] [--threads 1] [--out benchmarks/results/models.txt]
"""
import argparse, os, sys, time, statistics, platform, tempfile
from pathlib import Path
import numpy as np, pandas as pd, torch


def digits_table(path, n):
    "A collection of `n` sklearn digits (PNG + table): `glamdebug.samples.digits_collection` when present"
    from glamdebug.data import read_collection
    try:
        from glamdebug.samples import digits_collection
        df = read_collection(Path(digits_collection(path))/'collection.csv')
    except ImportError:
        from PIL import Image
        from sklearn.datasets import load_digits
        d, rows = load_digits(), []
        for i, (im, y) in enumerate(zip(d.images, d.target)):
            fn = f'{i:04d}.png'
            Image.fromarray((im*255/16).astype(np.uint8)).save(Path(path)/fn)
            rows.append(dict(fname=fn, label=str(y), split='valid' if i % 5 == 0 else 'train'))
        pd.DataFrame(rows).to_csv(Path(path)/'collection.csv', index=False)
        df = read_collection(Path(path)/'collection.csv')
    tr, va = df[df.split == 'train'], df[df.split == 'valid']
    out = pd.concat([tr.sample(min(n, len(tr)), random_state=0), va.sample(min(n//4, len(va)), random_state=0)])
    out.attrs.update(df.attrs)
    return out


def epoch_time(learn):
    "(wall seconds, CPU seconds of this process) for one `learn.fit(1)`"
    if torch.cuda.is_available(): torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    learn.fit(1)
    if torch.cuda.is_available(): torch.cuda.synchronize()
    return time.perf_counter() - t, time.process_time() - c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--n', type=int, default=480, help='training images (validation: n/4)')
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--reps', type=int, default=3, help='timed epochs per learner (after one warm-up epoch each)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--out', default=None, help='also write the results table here')
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import defaults
    defaults.callbacks = [c for c in defaults.callbacks if c is not ProgressCallback]
    from fastai.vision.learner import vision_learner
    from fastai.metrics import error_rate, accuracy
    from fastai.data.transforms import Normalize
    from glamdebug.data import collection_dls
    from glamdebug.models import defaults_learner

    tmp = tempfile.mkdtemp()
    df = digits_table(tmp, a.n)
    dls = collection_dls(df, size=a.size, bs=a.bs)
    glam = defaults_learner(dls, 'resnet18')
    plain = vision_learner(dls, 'resnet18', pretrained=False, metrics=[error_rate, accuracy])
    has_norm = lambda d: any(isinstance(f, Normalize) for f in d.after_batch.fs)
    n_params = lambda l: sum(p.numel() for p in l.model.parameters())
    for l in (glam, plain): l.logger = lambda *a, **k: None; epoch_time(l)   # warm-up: allocator, first-batch costs
    times = {'glamdebug defaults_learner': [], 'fastai vision_learner': []}
    for _ in range(a.reps):
        times['glamdebug defaults_learner'].append(epoch_time(glam))
        times['fastai vision_learner'].append(epoch_time(plain))
    rows = []
    for (name, ts), l in zip(times.items(), (glam, plain)):
        wall, cpu = [t[0] for t in ts], [t[1] for t in ts]
        rows.append(dict(learner=name, wall_median_s=statistics.median(wall), wall_min_s=min(wall),
                         cpu_median_s=statistics.median(cpu), walls=' '.join(f'{t:.2f}' for t in wall),
                         params_M=n_params(l)/1e6, wd=l.opt.hypers[0]['wd'], lr=l.opt.hypers[0]['lr'],
                         normalize=has_norm(l.dls)))
    res = pd.DataFrame(rows).set_index('learner')
    ratio = res.wall_median_s.iloc[0]/res.wall_median_s.iloc[1]
    ratio_min = res.wall_min_s.iloc[0]/res.wall_min_s.iloc[1]
    ratio_cpu = res.cpu_median_s.iloc[0]/res.cpu_median_s.iloc[1]
    head = (f'bench_models: per-epoch time, resnet18, {len(dls.train_ds)} train + {len(dls.valid_ds)} valid images '
            f'{a.size}px, bs {a.bs}, torch threads {a.threads}, {os.cpu_count()} CPUs, device {dls.device} ({platform.processor() or platform.machine()}), '
            f'torch {torch.__version__}\n')
    with pd.option_context('display.width', 160, 'display.max_columns', 20):
        txt = head + res.to_string(float_format=lambda v: f'{v:.4g}') + \
              (f'\n\nratio glamdebug/fastai, median wall epoch = {ratio:.3f}; min wall epoch = {ratio_min:.3f}; '
                 f'median CPU-time epoch = {ratio_cpu:.3f}   (target <= 1.05)\n')
    print(txt)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(txt)
    return ratio


if __name__ == '__main__': main()
