"""Benchmark for `learn.shift_report`: its time against plain fastai's two inference passes, and what it finds on real scans.

On ../shared/data/oracle-mnist (3,000 real scans; skipped when absent) a version-zero model is trained on 2,000 scans;
the 1,000 held-out scans are `valid`, and the same 1,000 put through a planted "different scanner" (darker, blurred,
saved as JPEG) are `valid_shifted`; the same 1,000 again, untouched but copied, are `valid_copy` (the clean case).
Rows, side by side in one run:
  - plain fastai: `learn.get_preds` on both splits (what a user runs to compare two errors by hand);
  - `learn.shift_report`: both passes plus image statistics, file headers and the cross-validated feature test.
`python benchmarks/bench_shift.py`; writes benchmarks/results/shift.txt.
"""
import os, sys, time, tempfile, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
from PIL import Image, ImageFilter
warnings.filterwarnings('ignore')
sys.path.insert(0, str(Path(__file__).parent))
from oracle_merge import ORACLE, oracle_collection
from fastai.torch_core import set_seed
from glamdebug.data import collection_dls, split_dl
from glamdebug.models import defaults_learner
import glamdebug.shift

torch.set_num_threads(2)
ROOT = Path(__file__).parent.parent
if not ORACLE.exists(): sys.exit(f'{ORACLE} is absent: nothing to measure')

tmp = Path(tempfile.mkdtemp(prefix='oracle'))
df = oracle_collection(tmp, n_train=200)
rows = []
for r in df[df.split == 'valid'].itertuples():
    im = Image.open(tmp/r.fname).convert('L')
    a = np.asarray(im.filter(ImageFilter.GaussianBlur(0.8)), np.float32)*0.7
    fn = Path(r.fname).with_name(Path(r.fname).stem + '_s.jpg')
    Image.fromarray(a.round().astype(np.uint8)).save(tmp/fn, quality=50)
    rows.append(dict(fname=str(fn), label=r.label, split='valid_shifted'))
    fc = Path(r.fname).with_name(Path(r.fname).stem + '_c.png')
    Image.open(tmp/r.fname).save(tmp/fc)
    rows.append(dict(fname=str(fc), label=r.label, split='valid_copy'))
df = pd.concat([df, pd.DataFrame(rows)], ignore_index=True)
df.attrs['path'] = str(tmp)

set_seed(0, reproducible=True)
dls = collection_dls(df, size=28, bs=64)
learn = defaults_learner(dls, lr=3e-3)
with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(8)

out = [f'oracle-mnist: version-zero LeNet, 8 epochs one-cycle on {int((df.split == "train").sum())} scans; '
       f'1,000 scans per compared split; 2 threads; load average {os.getloadavg()[0]:.1f}']
for split in ('valid_shifted', 'valid_copy'):
    t = time.perf_counter()
    with learn.no_bar():
        for s in ('valid', split): learn.get_preds(dl=split_dl(learn.dls, s) if s != 'valid' else learn.dls.valid)
    plain = time.perf_counter() - t
    t = time.perf_counter()
    rep = learn.shift_report(split)
    ours = time.perf_counter() - t
    out += ['', f'valid → {split}: plain fastai get_preds × 2 {plain:.2f} s, shift_report {ours:.2f} s ({ours/plain:.2f}×)',
            rep.summary, rep.stats.to_string(float_format=lambda v: f'{v:.3g}')]
txt = '\n'.join(out)
print(txt)
(ROOT/'benchmarks'/'results'/'shift.txt').write_text(txt + '\n')
