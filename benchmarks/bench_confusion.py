"""Confusion matrix and most_confused: glamdebug vs fastai's `ClassificationInterpretation`, in one run.

k (classes) in {10, 100, 300, 1000}, n (items) in {1e4, 1e5}. Every case runs in its own subprocess:
time (best of up to 3 runs) and peak extra memory (Linux peak RSS `VmHWM`, reset through `/proc/self/clear_refs`
after the inputs exist, minus the RSS at that point). fastai's cases run under an address-space cap
(`RLIMIT_AS` = address space after imports + `--cap-gb`) and a timeout, and report OOM / timeout instead of
taking the shared machine down.

fastai 2.8's `ClassificationInterpretation(learn, dl, losses, act)` calls `learn.get_preds` inside
`confusion_matrix` (and `most_confused` calls `confusion_matrix`); here `learn` is a stand-in whose `get_preds`
returns the precomputed tensors, so only the matrix computation is timed (a real learner would add inference
on top, on every call). Both sides get the same `targs` and decoded predictions (70 % right).
`glamdebug (object)` also times the whole `GlamInterpretation.from_preds(probs, ...)` path
(validation of the `(n, k)` probabilities, argmax, matrix, most_confused), the probabilities not counted.

    python benchmarks/bench_confusion.py [--cap-gb 8] [--timeout 300] [--out benchmarks/results/confusion.txt]
"""
import argparse, json, os, subprocess, sys, time, resource, platform
from pathlib import Path

KS, NS = (10, 100, 300, 1000), (10_000, 100_000)
IMPLS = ('glamdebug', 'glamdebug (object)', 'fastai')


def _status(key):
    for l in open('/proc/self/status'):
        if l.startswith(key): return int(l.split()[1]) * 1024


def _reset_peak():
    with open('/proc/self/clear_refs', 'w') as f: f.write('5')
    return _status('VmRSS')


def _inputs(k, n, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, k, (n,), generator=g)
    p = torch.where(torch.rand(n, generator=g) < .7, t, torch.randint(0, k, (n,), generator=g))
    return t, p


def _measure(fn, max_reps=3, budget=5.):
    "best time of up to `max_reps` runs of `fn`, and peak extra RSS of the first"
    base = _reset_peak()
    t0 = time.perf_counter(); res = fn(); best = time.perf_counter() - t0
    extra = _status('VmHWM') - base
    del res
    spent = best
    for _ in range(max_reps - 1):
        if spent > budget: break
        t0 = time.perf_counter(); fn(); dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return dict(seconds=best, extra_bytes=extra)


def child(impl, k, n, cap_gb):
    "one case, printing one JSON line per operation as soon as it is measured"
    import torch
    torch.set_num_threads(1)
    vocab = [f'c{i:04d}' for i in range(k)]
    if impl == 'fastai':
        from fastai.interpret import ClassificationInterpretation
        from fastai.data.transforms import CategoryMap
        t, p = _inputs(k, n)
        class Learn:  # stand-in: returns the kept predictions instead of running a model
            def get_preds(self, dl=None, **kwargs): return None, t, p
        class DL: pass
        DL.vocab = CategoryMap(vocab)
        interp = ClassificationInterpretation(Learn(), DL(), losses=torch.zeros(n))
        cm_fn, mc_fn = interp.confusion_matrix, interp.most_confused
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (_status('VmSize') + int(cap_gb * 2**30), hard))
    elif impl == 'glamdebug':
        from glamdebug.interpret import confusion_matrix, most_confused
        t, p = _inputs(k, n)
        cm_fn = lambda: confusion_matrix(t, p, k)
        mc_fn = lambda: most_confused(confusion_matrix(t, p, k), vocab)
    else:
        from glamdebug.interpret import GlamInterpretation
        t, p = _inputs(k, n)
        probs = torch.full((n, k), 0.3 / max(k - 1, 1)); probs[torch.arange(n), p] = 0.7
        cm_fn = lambda: GlamInterpretation.from_preds(probs, t, vocab).confusion_matrix()
        mc_fn = lambda: GlamInterpretation.from_preds(probs, t, vocab).most_confused()
    ref = None
    for op, fn in (('confusion_matrix', cm_fn), ('most_confused', mc_fn)):
        try: r = _measure(fn)
        except (MemoryError, RuntimeError) as e:
            for o in ('confusion_matrix', 'most_confused')[(0 if op == 'confusion_matrix' else 1):]:
                print(json.dumps(dict(op=o, status='OOM', error=str(e)[:120])), flush=True)
            return
        if op == 'confusion_matrix': r['total'] = int(fn().sum())
        else: r['n_pairs'] = len(fn())
        print(json.dumps(dict(op=op, status='ok', **r)), flush=True)


def run_case(impl, k, n, cap_gb, timeout):
    cmd = [sys.executable, __file__, '--child', impl, str(k), str(n), '--cap-gb', str(cap_gb)]
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        lines, rc, err = out.stdout, out.returncode, out.stderr
    except subprocess.TimeoutExpired as e:
        lines, rc, err = (e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ''), 'timeout', ''
    res = {}
    for l in lines.splitlines():
        if l.startswith('{'): d = json.loads(l); res[d['op']] = d
    for op in ('confusion_matrix', 'most_confused'):
        if op not in res:
            why = 'timeout' if rc == 'timeout' else ('OOM' if rc in (-9, 137) or 'MemoryError' in err or 'alloc' in err.lower() else f'failed rc={rc}')
            res[op] = dict(op=op, status=why, error=err.strip().splitlines()[-1][:160] if err.strip() else '')
    return res


def fmt_t(r): return f"{r['seconds']:.4f} s" if r['status'] == 'ok' else r['status']
def fmt_m(r): return f"{r['extra_bytes']/2**20:.1f} MB" if r['status'] == 'ok' else '-'


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--child', nargs=3, metavar=('IMPL', 'K', 'N'))
    ap.add_argument('--cap-gb', type=float, default=8.)
    ap.add_argument('--timeout', type=int, default=300)
    ap.add_argument('--ks', type=int, nargs='*', default=KS)
    ap.add_argument('--ns', type=int, nargs='*', default=NS)
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'confusion.txt'))
    a = ap.parse_args()
    if a.child:
        impl, k, n = a.child
        return child(impl, int(k), int(n), a.cap_gb)
    import torch, fastai
    head = [f'# bench_confusion: glamdebug vs fastai {fastai.__version__} ClassificationInterpretation (torch {torch.__version__}, '
            f'{platform.machine()}, {os.cpu_count()} CPUs shared with other users, 1 thread each side)',
            f'# time = best of up to 3 runs; mem = peak extra RSS; fastai capped at +{a.cap_gb:g} GB address space, timeout {a.timeout} s',
            '']
    rows = []
    for n in a.ns:
        for k in a.ks:
            res = {impl: run_case(impl, k, n, a.cap_gb, a.timeout) for impl in IMPLS}
            for op in ('confusion_matrix', 'most_confused'):
                g, o, f = res['glamdebug'][op], res['glamdebug (object)'][op], res['fastai'][op]
                ok = f['status'] == 'ok' and g['status'] == 'ok'
                rows.append(dict(op=op, k=k, n=n, glam_t=fmt_t(g), glam_m=fmt_m(g), obj_t=fmt_t(o), obj_m=fmt_m(o),
                                 fa_t=fmt_t(f), fa_m=fmt_m(f),
                                 t_ratio=f"{f['seconds']/max(g['seconds'],1e-9):.0f}x" if ok else '-',
                                 m_ratio=('both < 1 MB' if max(f['extra_bytes'], g['extra_bytes']) < 2**20 else
                                          f"{f['extra_bytes']/max(g['extra_bytes'],2**20):.0f}x") if ok else '-'))
                print(rows[-1], flush=True)
    import pandas as pd
    df = pd.DataFrame(rows)
    df.columns = ['op', 'k', 'n', 'glamdebug time', 'glamdebug mem', 'glamdebug object time', 'object mem',
                  'fastai time', 'fastai mem', 'fastai/glam time', 'fastai/glam mem']
    text = '\n'.join(head) + df.to_string(index=False) + '\n'
    text += ('\nmem ratio divides by max(glamdebug mem, 1 MB) (glamdebug\'s extra is often below page-level resolution).\n'
             '"glamdebug object" = GlamInterpretation.from_preds(probs) + the operation; it includes checking the (n, k) probabilities.\n')
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)


if __name__ == '__main__': main()
