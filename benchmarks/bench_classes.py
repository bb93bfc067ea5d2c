"""How `learn.troubleshoot()` scales with the number of classes, and whether its input-independent check still tells
a clean collection from one with shuffled labels.

Generated collections of k classes (`hue_collection`: noisy flat colours, neighbouring classes alike), 10 training and 2 validation
items per class, 32 px, version-zero LeNet. For each k: the input-independent probe (items, steps, status, accuracies,
paired t of the item losses, seconds) on the clean labels and on shuffled ones (three seeds each), quick-mode
`troubleshoot()` wall time, and plain fastai's `learn.fit(1)` on the same learner as the yardstick (ratio = time /
one fastai epoch). Usage: `python benchmarks/bench_classes.py [k ...]`; writes benchmarks/results/classes.txt.
"""
import os, sys, time, tempfile, warnings, platform
from pathlib import Path
import numpy as np, pandas as pd, torch
warnings.filterwarnings('ignore')
from fastai.vision.all import set_seed
from glamdebug.data import read_collection, collection_dls
from glamdebug.models import defaults_learner
from glamdebug.debug import check_input_independent
from glamdebug.samples import hue_collection

KS = [int(a) for a in sys.argv[1:]] or [6, 30, 120, 480]
SIZE, SEEDS = 32, (0, 1, 2)
torch.set_num_threads(2)

def learner(df, path, seed=0):
    set_seed(seed)
    return defaults_learner(collection_dls(df, path, size=SIZE), 'lenet')

rows, t0 = [], time.perf_counter()
for k in KS:
    path = Path(tempfile.mkdtemp(prefix=f'classes{k}_'))
    df = read_collection(hue_collection(path, k)/'collection.csv', progress=False)
    bad = df.copy(); bad['label'] = np.random.default_rng(0).permutation(df.label.values)
    for name, d in (('clean', df), ('shuffled', bad)):
        for seed in SEEDS:
            l = learner(d, path, seed)
            t = time.perf_counter(); c = check_input_independent(l, seed=seed); s = time.perf_counter() - t
            e = c.evidence
            rows.append(dict(k=k, labels=name, seed=seed, status=c.status, n_train=e.get('n_train'), n_steps=e.get('n_steps'),
                             real_acc=e.get('real_accuracy'), zeroed_acc=e.get('zeroed_accuracy'), chance=1/k,
                             loss_gain_t=e.get('loss_gain_t'), probe_s=s))
    l = learner(df, path)
    t = time.perf_counter(); rep = l.troubleshoot(quick=True, show_progress=False); ts = time.perf_counter() - t
    l = learner(df, path)
    t = time.perf_counter()
    with l.no_bar(), l.no_logging(): l.fit(1)
    ep = time.perf_counter() - t
    rows.append(dict(k=k, labels='clean', seed='-', status=f'troubleshoot: {rep.verdict}', probe_s=ts, fastai_epoch_s=ep))
    print(f'k={k} done', flush=True)

res = pd.DataFrame(rows)
probe = res[res.seed != '-']
summ = (probe.groupby(['k', 'labels'])
        .agg(statuses=('status', lambda s: ' '.join(s)), n_train=('n_train', 'first'), n_steps=('n_steps', 'first'),
             real_acc=('real_acc', 'mean'), chance=('chance', 'first'), loss_gain_t=('loss_gain_t', 'mean'), probe_s=('probe_s', 'mean'))
        .reset_index().astype({'n_train': int, 'n_steps': int}))
ts = res[res.seed == '-'][['k', 'status', 'probe_s', 'fastai_epoch_s']].rename(columns=dict(probe_s='troubleshoot_quick_s', status='verdict'))
ts['x_epoch'] = ts.troubleshoot_quick_s/ts.fastai_epoch_s
with pd.option_context('display.width', 200):
    txt = (f'bench_classes: generated collections, 10 train + 2 valid items per class, {SIZE} px, LeNet version zero; torch threads '
           f'{torch.get_num_threads()}, {os.cpu_count()} CPUs, python {platform.python_version()}, torch {torch.__version__}; '
           f'total {time.perf_counter() - t0:.0f} s\n\n'
           '## input_independent probe, three seeds each (real_acc, loss_gain_t, probe_s: means)\n'
           + summ.to_string(index=False, float_format=lambda v: f'{v:.3g}') +
           '\n\n## quick troubleshoot() on the clean collection, next to one epoch of plain fastai learn.fit(1)\n'
           + ts.to_string(index=False, float_format=lambda v: f'{v:.3g}') + '\n')
print(txt)
out = Path(__file__).parent/'results'; out.mkdir(exist_ok=True)
(out/'classes.txt').write_text(txt)
