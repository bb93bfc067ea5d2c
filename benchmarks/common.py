"""What the benchmark scripts share: `say` (print a line and keep it), the header line naming the machine, `save`,
which writes the kept lines to benchmarks/results/NAME.txt, and `train`: the seeded version-zero model on a collection."""
import os, platform, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))   # `oracle_merge` & co. import as modules
torch.set_num_threads(2)
OUT = []

def say(*a):
    s = ' '.join(str(x) for x in a); print(s, flush=True); OUT.append(s)

def header(name):
    say(f'# {name} — {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {time.strftime("%Y-%m-%d")}')

def save(name):
    (ROOT/'benchmarks/results').mkdir(exist_ok=True)
    (ROOT/'benchmarks/results'/f'{name}.txt').write_text('\n'.join(OUT) + '\n')

def train(df, size, seed, epochs=8, path=None):
    "The version-zero model (`defaults_learner`) trained `epochs` on the collection `df` at `size` px, seeded, quietly"
    from fastai.torch_core import set_seed
    from glamdebug.data import collection_dls
    from glamdebug.models import defaults_learner
    set_seed(seed, reproducible=True)
    learn = defaults_learner(collection_dls(df, path=path, size=size, bs=64))
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn
