"""Training-loop overhead per batch on the CPU: a plain torch loop vs fastai's `Learner` vs `Learner.fast()`.

On a GPU the host must queue batch n+1 while the device works on batch n; that only happens when the loop has no host
sync per batch and its Python time per batch is below the GPU's. This measures, on the CPU, the two things that decide
it: milliseconds of loop time per batch with a model so small that the loop dominates (and with the LeNet-like
default), and host syncs per training batch (`learn.sync_audit`, counted as if the CPU were the GPU). Same cached
DataLoaders (the sample collection at 32 px) for every row. `python benchmarks/bench_loop.py`; writes
benchmarks/results/loop.txt.
"""
import os, time, random, warnings
from pathlib import Path
import pandas as pd, torch
warnings.filterwarnings('ignore')
torch.set_num_threads(1)
from fastai.vision.all import Learner, CrossEntropyLossFlat, nn
from glamdebug.data import read_collection
from glamdebug.fastpath import cached_dls, fused_adam
from glamdebug.models import lenet_like
import tempfile

ROOT = Path(__file__).parent.parent
REPS, EPOCHS = 5, 3

def tiny(c): return nn.Sequential(nn.Flatten(), nn.Linear(3*32*32, c))

def torch_loop(dls, model):
    "The reference: plain tensors, torch AdamW, no callbacks, no per-batch host read"
    opt, lf, n = torch.optim.AdamW(model.parameters(), lr=1e-3), nn.CrossEntropyLoss(), 0
    t = time.perf_counter()
    for _ in range(EPOCHS):
        model.train()
        for xb, yb in dls.train:
            loss = lf(model(xb.as_subclass(torch.Tensor)), yb.as_subclass(torch.Tensor))
            loss.backward(); opt.step(); opt.zero_grad(); n += 1
        model.eval()
        with torch.no_grad():
            for xb, yb in dls.valid: model(xb.as_subclass(torch.Tensor))
    return (time.perf_counter() - t)/n

def learner_loop(dls, model, fast):
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat())
    if fast: learn.fast()
    n = EPOCHS*len(dls.train)
    t = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fit(EPOCHS, 1e-3)
    return (time.perf_counter() - t)/n, learn

if __name__ == '__main__':
    t0 = time.perf_counter()
    df = read_collection(ROOT/'data'/'samples'/'collection.csv', progress=False)
    dls = cached_dls(df, size=32, bs=16, cache_dir=Path(tempfile.mkdtemp()), progress=False)
    rows = []
    for mname, mk in (('linear (loop-bound)', lambda: tiny(dls.c)), ('LeNet-like', lambda: lenet_like(dls.c, 3))):
        ts = {k: [] for k in ('torch', 'fastai', 'fast')}
        for _ in range(REPS):  # interleaved, median: the machine is shared
            dls.train.rng = random.Random(0); ts['torch'].append(torch_loop(dls, mk()))
            dls.train.rng = random.Random(0); ts['fastai'].append(learner_loop(dls, mk(), False)[0])
            dls.train.rng = random.Random(0); ts['fast'].append(learner_loop(dls, mk(), True)[0])
        med = {k: sorted(v)[len(v)//2]*1e3 for k, v in ts.items()}
        def audit(fast):
            l = Learner(dls, mk(), loss_func=CrossEntropyLossFlat())
            return (l.fast() if fast else l).sync_audit(8, device='cpu').per_batch('training')
        syncs = {'fastai': audit(False), 'fast': audit(True)}
        rows += [dict(model=mname, loop='plain torch loop', ms_per_batch=med['torch'], syncs_per_train_batch=0.),
                 dict(model=mname, loop='fastai Learner', ms_per_batch=med['fastai'], syncs_per_train_batch=syncs['fastai']),
                 dict(model=mname, loop='fastai Learner + fast()', ms_per_batch=med['fast'], syncs_per_train_batch=syncs['fast'])]
    # whole epochs on the CPU at 64 px, 2 threads: plain fastai vs fast() (fused AdamW, channels_last, plain tensors)
    torch.set_num_threads(2)
    from glamdebug.models import defaults_learner
    from fastai.vision.all import set_seed
    dls64 = cached_dls(df, size=64, bs=32, cache_dir=Path(tempfile.mkdtemp()), progress=False)
    for arch, reps in (('lenet', 6), ('resnet18', 4)):
        ts = {False: [], True: []}
        for _ in range(reps):
            for fast in (False, True):
                set_seed(0); l = defaults_learner(dls64, arch)
                if fast: l.fast()
                dls64.train.rng = random.Random(0)
                t = time.perf_counter()
                with l.no_bar(), l.no_logging(): l.fit(1, 3e-3)
                ts[fast].append(time.perf_counter() - t)
        med = {k: sorted(v)[len(v)//2] for k, v in ts.items()}
        rows += [dict(model=f'{arch} 64 px, epoch (s), 2 threads', loop='fastai Learner', ms_per_batch=float('nan'), epoch_s=med[False]),
                 dict(model=f'{arch} 64 px, epoch (s), 2 threads', loop='fastai Learner + fast()', ms_per_batch=float('nan'), epoch_s=med[True])]
    # one optimiser step over resnet18's parameters (2 threads): fastai's Adam vs torch's fused AdamW (`fused_adam`)
    from fastai.vision.all import Adam
    import timm
    for name, mk in (('fastai Adam', lambda ps: Adam(ps, lr=1e-3)), ('fused_adam', lambda ps: fused_adam(ps))):
        ps = list(timm.create_model('resnet18', num_classes=6).parameters())
        for p in ps: p.grad = torch.randn_like(p)
        o = mk(ps)
        for _ in range(3): o.step()
        t = time.perf_counter()
        for _ in range(20): o.step()
        rows.append(dict(model='resnet18 optimiser step (ms), 2 threads', loop=name, ms_per_batch=(time.perf_counter() - t)/20*1e3))
    torch.set_num_threads(1)
    # inference for reports (`get_split_preds`: fastai `get_preds` with losses), host reads per batch, plain vs fast()
    from glamdebug.fastpath import HostSyncs
    from glamdebug.data import split_dl
    import glamdebug.preds
    from fastai.vision.all import error_rate
    n_test = len(split_dl(dls, 'test'))
    for fast in (False, True):
        l = Learner(dls, tiny(dls.c), loss_func=CrossEntropyLossFlat(), metrics=error_rate)
        if fast: l.fast()
        with l.no_bar(), HostSyncs('cpu') as h: l.get_split_preds('test', cache=False)
        rows.append(dict(model='linear, inference', loop='get_split_preds' + (' + fast()' if fast else ''),
                         ms_per_batch=float('nan'), syncs_per_train_batch=float('nan'),
                         host_reads_per_inference_batch=sum(h.counts.values())/n_test))
    res = pd.DataFrame(rows)
    t_ = res.ms_per_batch.fillna(res.get('epoch_s'))
    base = t_.where(res.loop.isin(['fastai Learner', 'fastai Adam']))  # the plain-fastai row of each model
    res['vs_fastai'] = t_/base.groupby(res.model).transform('max')
    txt = (f'training-loop time per training batch (train + valid loops over {EPOCHS} epochs, divided by training batches), '
           f'median of {REPS} interleaved runs; sample collection at 32 px, batch 16, {len(dls.train)} batches/epoch; '
           f'CPU {os.cpu_count()} cores, torch threads 1; syncs counted by learn.sync_audit as if the CPU were the GPU; '
           f'vs_fastai = time / plain fastai Learner time (below 1: faster); epoch_s: median of 6 (LeNet) or 4 (resnet18) interleaved runs; host_reads_per_inference_batch: all reads during one get_split_preds call '
           f'(including the few made once per call) / {n_test} batches. total {time.perf_counter()-t0:.0f} s\n'
           + res.to_string(index=False, float_format=lambda v: f'{v:.3g}'))
    print(txt)
    out = ROOT/'benchmarks'/'results'; out.mkdir(parents=True, exist_ok=True)
    (out/'loop.txt').write_text(txt + '\n')
