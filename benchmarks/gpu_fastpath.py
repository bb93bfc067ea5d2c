"""GPU benchmark for issue 7: plain fastai vs glamdebug's fast path, resnet50 at 224 px, batch 128, one run.

Reproduces the issue's two tables for plain fastai (model ceiling, fastai DataLoader, fastai training fp32 /
to_fp16 / to_fp16().to_channelslast(); scan-sized JPEG decoding) and puts glamdebug's figures beside them
(cache build, cached DataLoader, training with `cached_dls` + `learn.fast()`), as a fraction of the bf16 ceiling
measured in the same run. Each row is in its own try/except. Output: a table on stdout and in $OUT (or
benchmarks/results/). `GLAM_TINY=1` runs a tiny version on the CPU to check the script.

On the device machine (torch there, no network, Python 3.12): put fastai 2.8.12 and its pure-Python dependencies in
`.whl/` here first (`pip download --no-deps -d .whl fastai==2.8.12 fastcore fasttransform fastprogress fastdownload
beartype` and `plum-dispatch<2.10` for cp312; `.whl/` is in .git/info/exclude), then run, with `carry=['.whl']` and a
600 s timeout: `pip install -q --no-index --find-links .whl fastai && PYTHONPATH=. python benchmarks/gpu_fastpath.py`.
"""
import os, sys, time, json, tempfile, traceback, collections, multiprocessing as mp
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image
import torch

TINY = bool(os.environ.get('GLAM_TINY'))
CUDA = torch.cuda.is_available() and not TINY
DEV = torch.device('cuda' if CUDA else 'cpu')
SIZE, BS = (32, 8) if TINY else (224, 128)
N_SMALL, N_VALID, N_SCAN = (64, 16, 16) if TINY else (4096, 256, 480)
SMALL_PX, SCAN_WH = (48, (300, 225)) if TINY else (256, (2400, 1800))
WORKERS = 2 if TINY else min(15, (os.cpu_count() or 2) - 1)
STEADY_S = 0.5 if TINY else 2.5  # seconds of steady state per loader/model row
OUT = Path(os.environ.get('OUT') or Path(__file__).parent/'results')
OUT.mkdir(parents=True, exist_ok=True)
torch.backends.cudnn.benchmark = True
if TINY: torch.set_num_threads(1)

from fastai.vision.all import (ImageDataLoaders, Resize, aug_transforms, vision_learner, create_vision_model, resnet50,
                               resnet18, Callback, CrossEntropyLossFlat, error_rate)
from glamdebug.fastpath import cached_dls, ImageCache
ARCH = resnet18 if TINY else resnet50

rows, ceiling, audits = [], {}, []
def row(table, name, ips, note=''):
    rows.append(dict(table=table, what=name, images_per_s=ips, note=note))
    print(f'[{table}] {name}: {ips:,.0f} images/s {note}', flush=True)
    (OUT/('gpu_fastpath_tiny.json' if TINY else 'gpu_fastpath.json')).write_text(json.dumps(rows, indent=1))

def attempt(f):
    try: f()
    except Exception as e:
        traceback.print_exc()
        rows.append(dict(table='error', what=f.__name__, images_per_s=float('nan'), note=f'{type(e).__name__}: {e}'[:200]))

def sync():
    if CUDA: torch.cuda.synchronize()

# ---------------------------------------------------------------- data, generated on the device
tmp = Path(tempfile.mkdtemp(prefix='glamfast'))
def _small(i):
    r = np.random.default_rng(i)
    a = (r.random((SMALL_PX//16, SMALL_PX//16, 3))*255).astype(np.uint8)
    im = Image.fromarray(a).resize((SMALL_PX, SMALL_PX), Image.BICUBIC)
    fn = tmp/'small'/f'{i}.jpg'; im.save(fn, quality=90); return fn.name
def _scan(i):
    r = np.random.default_rng(1000 + i)
    w, h = SCAN_WH
    a = (r.random((h//40, w//40, 3))*255).astype(np.uint8)
    a = np.asarray(Image.fromarray(a).resize((w, h), Image.BICUBIC)).astype(np.int16)
    a = np.clip(a + r.normal(0, 5, (h, w, 1)).astype(np.int16), 0, 255).astype(np.uint8)
    fn = tmp/'scans'/f'{i}.jpg'; Image.fromarray(a).save(fn, quality=90); return fn.name

def table(folder, names, n_valid):
    labels = ['a', 'b']
    df = pd.DataFrame(dict(fname=names, label=[labels[i % 2] for i in range(len(names))],
                           split=['valid' if i < n_valid else 'train' for i in range(len(names))]))
    df['is_valid'] = df.split == 'valid'
    df.attrs['path'] = str(folder)
    return df

t0 = time.perf_counter()
(tmp/'small').mkdir(); (tmp/'scans').mkdir()
with mp.get_context('fork').Pool(WORKERS) as pool:
    small = pool.map(_small, range(N_SMALL + N_VALID), chunksize=32)
    scans = pool.map(_scan, range(N_SCAN), chunksize=4)
df_small, df_scan = table(tmp/'small', small, N_VALID), table(tmp/'scans', scans, 0)
mb = np.mean([(tmp/'scans'/f).stat().st_size for f in scans[:20]])/1e6
print(f'generated {len(small)} {SMALL_PX} px JPEGs and {len(scans)} {SCAN_WH[0]}×{SCAN_WH[1]} JPEGs '
      f'({mb:.2f} MB each) in {time.perf_counter()-t0:.1f} s; device {torch.cuda.get_device_name() if CUDA else "cpu"}', flush=True)

# ---------------------------------------------------------------- helpers
def loader_rate(dl, skip=3, max_s=STEADY_S):
    "images/s of iterating `dl` (device transfer and batch transforms included), after `skip` warm-up batches"
    n, seen, t = 0, 0, None
    while True:
        for b in dl:
            sync(); seen += 1
            if t is None:
                if seen >= skip: t = time.perf_counter()
                continue
            n += len(b[0])
            if time.perf_counter() - t > max_s: return n/(time.perf_counter() - t)

class Rate(Callback):
    "images/s over training batches in steady state (skips the first `skip` batches and each epoch's first); syncs only at the ends"
    order = 99
    def __init__(self, skip=5): self.skip, self.total_t, self.total_n, self.count = skip, 0., 0, 0
    def before_epoch(self): self.t0, self.n = None, 0
    def after_batch(self):
        if not self.training: return
        self.count += 1
        if self.t0 is None:
            if self.count >= self.skip: sync(); self.t0 = time.perf_counter()
        else: self.n += len(self.yb[0])
    def after_train(self):
        if self.t0 is None or not self.n: return
        sync(); self.total_t += time.perf_counter() - self.t0; self.total_n += self.n
    @property
    def ips(self): return self.total_n/self.total_t

def train_rate(dls, setup=lambda l: l, epochs=None, fast=None):
    learn = vision_learner(dls, ARCH, pretrained=False, loss_func=CrossEntropyLossFlat())
    learn = setup(learn)
    cb = Rate()
    n_ep = epochs or 2
    with learn.no_bar(), learn.no_logging(): learn.fit(n_ep, 1e-3, cbs=cb)
    return cb.ips, learn

def model_rate(bf16, channels_last):
    model = create_vision_model(ARCH, n_out=2, pretrained=False).to(DEV)
    if channels_last: model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=CUDA)
    x = torch.rand(BS, 3, SIZE, SIZE, device=DEV)
    if channels_last: x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (BS,), device=DEV)
    lf = torch.nn.CrossEntropyLoss()
    def step():
        with torch.autocast(DEV.type, dtype=torch.bfloat16, enabled=bf16):
            loss = lf(model(x).float(), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(5): step()
    sync(); t = time.perf_counter(); n = 0
    while time.perf_counter() - t < STEADY_S: step(); n += BS; sync() if n % (4*BS) == 0 else None
    sync(); return n/(time.perf_counter() - t)

# ---------------------------------------------------------------- table 1: 256 px JPEGs
T1 = f'{SMALL_PX} px JPEGs'
def model_fp32(): row(T1, 'model alone, GPU-resident batch, fp32', model_rate(False, False), '(torch AdamW step)')
def model_bf16():
    ceiling['ips'] = model_rate(True, True)
    row(T1, 'model alone, bf16 autocast + channels_last (the ceiling)', ceiling['ips'], '(torch AdamW step)')
attempt(model_fp32); attempt(model_bf16)

gdls = {}
def glam_cache_small():
    t = time.perf_counter()
    gdls['small'] = cached_dls(df_small, size=SIZE, bs=BS, batch_tfms=aug_transforms(), cache_dir=tmp/'cache',
                               n_workers=WORKERS, device=DEV, progress=False)
    row(T1, f'glamdebug: cache build, {WORKERS} processes (once)', len(df_small)/(time.perf_counter() - t))
def glam_dl_small(): row(T1, 'glamdebug: cached DataLoader alone (uint8 memmap -> GPU, aug_transforms there)', loader_rate(gdls['small'].train))
def glam_train():
    ips, learn = train_rate(gdls['small'], lambda l: l.fast(), epochs=3)
    row(T1, 'glamdebug training: cached_dls + learn.fast() (bf16, channels_last, fused AdamW, no per-batch sync, plain tensors)', ips,
        f"= {ips/ceiling['ips']:.0%} of the ceiling" if ceiling else '')
def _of(ips): return f"= {ips/ceiling['ips']:.0%} of the ceiling" if ceiling else ''
def glam_train_variants():
    for kw, what in [(dict(plain=False), 'fast(plain=False): fastai tensor subclasses into the model'),
                     (dict(no_sync=False), 'fast(no_sync=False): host sync per batch, as fastai does'),
                     (dict(fused_opt=False), 'fast(fused_opt=False): fastai Adam'),
                     (dict(bf16=False, channels_last=False, fused_opt=False, no_sync=False, plain=False), 'every fast() option off: fp32, fastai defaults')]:
        try:
            ips, _ = train_rate(gdls['small'], lambda l: l.fast(**kw), epochs=2)
            row(T1, f'glamdebug training, {what}', ips, _of(ips))
        except Exception as e: traceback.print_exc(); rows.append(dict(table='error', what=what, images_per_s=float('nan'), note=str(e)[:200]))
def torch_loop():
    "the cached DataLoader feeding a plain torch loop (bf16, channels_last, fused AdamW, no host sync)"
    model = create_vision_model(ARCH, n_out=2, pretrained=False).to(DEV).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=CUDA); lf = torch.nn.CrossEntropyLoss()
    n, t, seen = 0, None, 0
    while t is None or time.perf_counter() - t < STEADY_S:
        for xb, yb in gdls['small'].train:
            xb, yb = xb.as_subclass(torch.Tensor), yb.as_subclass(torch.Tensor)
            with torch.autocast(DEV.type, dtype=torch.bfloat16): loss = lf(model(xb).float(), yb)
            loss.backward(); opt.step(); opt.zero_grad(set_to_none=True); seen += 1
            if seen == 5: sync(); t = time.perf_counter()
            elif seen > 5: n += len(xb)
    sync(); ips = n/(time.perf_counter() - t)
    row(T1, 'glamdebug cached DataLoader -> plain torch loop (bf16, channels_last, fused AdamW)', ips, _of(ips))
def audit(what, dls, setup=lambda l: l):
    "host syncs per training batch (learn.sync_audit: 6 batches, weights restored), with the top call site"
    learn = setup(vision_learner(dls, ARCH, pretrained=False, loss_func=CrossEntropyLossFlat()))
    r = learn.sync_audit(6)
    t = r.table[r.table.phase == 'training']
    top = f"{t.iloc[0].what} at {t.iloc[0]['where'].split(' ← ')[0]}" if len(t) else ''
    audits.append(dict(what=what, train=r.per_batch('training'), valid=r.per_batch('validation'), top=top))
    print(f'[sync audit] {what}: {r.summary}', flush=True)
def glam_audits():
    audit('fastai Learner on the cached DataLoader', gdls['small'])
    audit('fastai Learner on the cached DataLoader + learn.fast()', gdls['small'], lambda l: l.fast())
    audit('... + learn.fast(no_sync=False)', gdls['small'], lambda l: l.fast(no_sync=False))

class _Window(Callback):
    "Switch `state['on']` on for training batches `skip` .. `skip+n` (after a sync), off after them"
    order = -1000
    def __init__(self, state, skip=5, n=20): self.state, self.skip, self.n, self.count = state, skip, n, 0
    def before_batch(self):
        if not self.training: return
        self.count += 1
        if self.count == self.skip: sync(); self.state.update(on=True, t0=time.perf_counter(), n=0)
    def after_batch(self):
        if not self.training or not self.state.get('on'): return
        self.state['n'] += 1
        if self.state['n'] == self.n:
            self.state['on'] = False; t = time.perf_counter(); self.state['host'] = t - self.state['t0']
            sync(); self.state['wall'] = time.perf_counter() - self.state['t0']; self.state['drain'] = time.perf_counter() - t

timelines = []
def glam_timeline():
    "where the host's time goes per training batch of cached_dls + learn.fast(): fastai's loop steps and each callback"
    from fastai.learner import Learner
    orig, acc, state = Learner._call_one, collections.Counter(), {}
    def timed(self, event_name):
        t0 = time.perf_counter()
        if state.get('on') and 'last' in state: acc[('loop', f"{state['last_ev']} -> {event_name}")] += t0 - state['last']
        for cb in self.cbs.sorted('order'):
            t = time.perf_counter(); cb(event_name)
            if state.get('on'): acc[(type(cb).__name__, event_name)] += time.perf_counter() - t
        state['last'], state['last_ev'] = time.perf_counter(), event_name
    learn = vision_learner(gdls['small'], ARCH, pretrained=False, loss_func=CrossEntropyLossFlat()).fast()
    n = max(1, min(20, len(gdls['small'].train) - 5))
    Learner._call_one = timed
    try:
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=_Window(state, n=n))
    finally: Learner._call_one = orig
    t = pd.DataFrame([dict(who=k[0], step=k[1], ms_per_batch=v/n*1e3) for k, v in acc.items()])
    t = t.sort_values('ms_per_batch', ascending=False).head(14)
    gpu_ms = BS/ceiling['ips']*1e3 if ceiling else float('nan')
    head = (f"host time per training batch of cached_dls + learn.fast(), {n} batches: {state['host']/n*1e3:.1f} ms "
            f"(the GPU drained {state['drain']*1e3:.0f} ms after the last one; wall {state['wall']/n*1e3:.1f} ms per batch; "
            f"the model alone at the ceiling: {gpu_ms:.1f} ms per batch). 'loop' rows are fastai's own work between events "
            f"(before_batch -> after_pred: the forward pass; after_batch -> before_batch: waiting for the next batch)")
    timelines.append(head + '\n' + t.to_string(index=False, float_format=lambda v: f'{v:.2f}'))
    print('[timeline] ' + timelines[-1], flush=True)

def glam_profile():
    "CUDA runtime calls per training batch of cached_dls + learn.fast() (torch.profiler, 10 batches): what makes the host wait"
    from torch.profiler import profile, ProfilerActivity
    state = {}
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if CUDA else [])
    prof = profile(activities=acts)
    class P(_Window):
        def before_batch(self):
            super().before_batch()
            if self.state.get('on') and not self.state.get('started'): prof.__enter__(); self.state['started'] = True
        def after_batch(self):
            super().after_batch()
            if self.state.get('started') and not self.state.get('on') and not self.state.get('stopped'):
                prof.__exit__(None, None, None); self.state['stopped'] = True
    learn = vision_learner(gdls['small'], ARCH, pretrained=False, loss_func=CrossEntropyLossFlat()).fast()
    n = max(1, min(10, len(gdls['small'].train) - 5))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=P(state, n=n))
    ev = prof.key_averages()
    dev_us = lambda e: getattr(e, 'self_device_time_total', 0) or getattr(e, 'self_cuda_time_total', 0)
    busy = sum(dev_us(e) for e in ev)/1e3/n
    keys = ('Synchronize', 'HostAlloc', 'MallocHost', 'FreeHost', 'Memcpy', 'EventQuery', 'item', 'local_scalar_dense', 'pin_memory')
    t = pd.DataFrame([dict(call=e.key, per_batch=e.count/n, cpu_ms_per_batch=e.cpu_time_total/1e3/n) for e in ev
                      if any(k in e.key for k in keys)], columns=['call', 'per_batch', 'cpu_ms_per_batch'])
    t = t.sort_values('cpu_ms_per_batch', ascending=False)
    head = (f"torch.profiler, {n} training batches of cached_dls + learn.fast(): device busy {busy:.1f} ms per batch "
            f"(kernels), host {state['host']/n*1e3:.1f} ms per batch (profiler on); calls that wait or copy:")
    timelines.append(head + '\n' + (t.to_string(index=False, float_format=lambda v: f'{v:.2f}') if len(t) else '(none)'))
    print('[profile] ' + timelines[-1], flush=True)

attempt(glam_cache_small); attempt(glam_dl_small); attempt(glam_train); attempt(torch_loop); attempt(glam_audits)
attempt(glam_timeline); attempt(glam_profile)
attempt(glam_train_variants)

fdls = {}
def fastai_dls():
    fdls['small'] = ImageDataLoaders.from_df(df_small, tmp/'small', fn_col='fname', label_col='label', valid_col='is_valid',
                                            item_tfms=Resize(SIZE), batch_tfms=aug_transforms(), bs=BS,
                                            num_workers=WORKERS, device=DEV)
    row(T1, f'fastai DataLoader alone (decode, Resize, aug_transforms), {WORKERS} workers', loader_rate(fdls['small'].train))
attempt(fastai_dls)
attempt(lambda: audit('fastai Learner on the fastai DataLoader', fdls['small']))
def fastai_fp32(): row(T1, 'fastai training, defaults (fp32)', train_rate(fdls['small'])[0])
def fastai_fp16(): row(T1, 'fastai training, to_fp16()', train_rate(fdls['small'], lambda l: l.to_fp16())[0])
def fastai_fp16_cl(): row(T1, 'fastai training, to_fp16().to_channelslast()', train_rate(fdls['small'], lambda l: l.to_fp16().to_channelslast())[0])
attempt(fastai_fp32); attempt(fastai_fp16); attempt(fastai_fp16_cl)

# ---------------------------------------------------------------- table 2: scan-sized JPEGs
T2 = f'{SCAN_WH[0]}x{SCAN_WH[1]} JPEGs'
def _pil_full(fn):
    with Image.open(fn) as im: return np.asarray(im.convert('RGB').resize((SIZE, SIZE), Image.BILINEAR)).shape
def _pil_draft(fn):
    with Image.open(fn) as im:
        im.draft('RGB', (SIZE*2, SIZE*2)); return np.asarray(im.convert('RGB').resize((SIZE, SIZE), Image.BILINEAR)).shape
def pool_rate(f, n):
    fns = [tmp/'scans'/s for s in scans[:n]]
    with mp.get_context('fork').Pool(WORKERS) as pool:
        pool.map(f, fns[:WORKERS])
        t = time.perf_counter(); pool.map(f, fns, chunksize=2); return len(fns)/(time.perf_counter() - t)
def fastai_dl_scan():
    d = df_scan.copy(); d.loc[d.index[:BS], 'is_valid'] = True
    dls = ImageDataLoaders.from_df(d, tmp/'scans', fn_col='fname', label_col='label', valid_col='is_valid',
                                   item_tfms=Resize(SIZE), batch_tfms=aug_transforms(), bs=BS // 2 if not TINY else BS,
                                   num_workers=WORKERS, device=DEV)
    row(T2, f'fastai DataLoader (Resize item tfm + aug_transforms), {WORKERS} workers', loader_rate(dls.train, skip=1))
def pil_full(): row(T2, f'PIL full decode + resize, {WORKERS} processes', pool_rate(_pil_full, min(len(scans), 8*WORKERS)))
def pil_draft(): row(T2, f'PIL draft-mode decode + resize, {WORKERS} processes', pool_rate(_pil_draft, len(scans)))
attempt(fastai_dl_scan); attempt(pil_full); attempt(pil_draft)
def glam_cache_scan():
    t = time.perf_counter()
    gdls['scan'] = cached_dls(df_scan.assign(split=['valid' if i < BS else 'train' for i in range(len(df_scan))]),
                              size=SIZE, bs=BS, batch_tfms=aug_transforms(), cache_dir=tmp/'cache', n_workers=WORKERS,
                              device=DEV, progress=False)
    row(T2, f'glamdebug: cache build with draft decoding, {WORKERS} processes (once)', len(df_scan)/(time.perf_counter() - t))
    t = time.perf_counter()
    cached_dls(df_scan.assign(split=['valid' if i < BS else 'train' for i in range(len(df_scan))]), size=SIZE, bs=BS,
               cache_dir=tmp/'cache', n_workers=WORKERS, device=DEV, progress=False)
    row(T2, 'glamdebug: cache re-open, nothing changed (per later run)', len(df_scan)/(time.perf_counter() - t))
def glam_dl_scan(): row(T2, 'glamdebug: cached DataLoader, one process (uint8 memmap -> GPU, aug_transforms there)', loader_rate(gdls['scan'].train))
def glam_train_scan():
    ips, _ = train_rate(gdls['scan'], lambda l: l.fast(), epochs=4)
    row(T2, 'glamdebug training from the scan cache: learn.fast()', ips, f"= {ips/ceiling['ips']:.0%} of the ceiling" if ceiling else '')
attempt(glam_cache_scan); attempt(glam_dl_scan)

# ---------------------------------------------------------------- report
res = pd.DataFrame(rows)
if ceiling: res['of_ceiling'] = (res.images_per_s/ceiling['ips']).map(lambda v: f'{v:.1%}' if v == v else '')
with pd.option_context('display.width', 200, 'display.max_colwidth', 95):
    txt = (f"device: {torch.cuda.get_device_name() if CUDA else 'cpu (tiny check)'}; torch {torch.__version__}; "
           f"{ARCH.__name__} at {SIZE} px, batch {BS}; {WORKERS} workers; total {time.perf_counter()-t0:.0f} s\n"
           + res.to_string(index=False, float_format=lambda v: f'{v:,.0f}'))
if audits:
    with pd.option_context('display.width', 250, 'display.max_colwidth', 120):
        txt += '\n\nhost syncs per batch (learn.sync_audit on CUDA)\n' + pd.DataFrame(audits).to_string(index=False, float_format=lambda v: f'{v:.2f}')
if timelines: txt += '\n\n' + '\n\n'.join(timelines)
print('\n' + txt)
(OUT/('gpu_fastpath_tiny.txt' if TINY else 'gpu_fastpath.txt')).write_text(txt + '\n')
(OUT/('gpu_fastpath_tiny.json' if TINY else 'gpu_fastpath.json')).write_text(res.to_json(orient='records', indent=1))
