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

def cost_pool(folder, n=10_000, noise=0.):
    """The cost benchmarks' pool: `n` image files under `folder` made from the sample collection's test images (copies;
    with `noise`, each a distinct PNG with its own Gaussian noise of that σ), and the version-zero LeNet trained 2 epochs
    at 32 px on the sample collection, seed 0: `(learn, files)`"""
    import shutil
    import numpy as np
    from PIL import Image
    from glamdebug.data import read_collection
    from glamdebug.samples import sample_collection
    root = sample_collection()
    df = read_collection(root/'collection.csv', progress=False)
    src = [root/f for f in df[df.split == 'test'].fname]
    Path(folder).mkdir()
    rng, fs = np.random.default_rng(0), []
    for i in range(n):
        s = src[i % len(src)]
        if noise:
            a = np.asarray(Image.open(s).convert('RGB')).astype(float)
            fs.append(Path(folder)/f'{i:05d}.png')
            Image.fromarray((a + rng.normal(0, noise, a.shape)).clip(0, 255).astype(np.uint8)).save(fs[-1])
        else:
            fs.append(Path(folder)/f'{i:05d}{s.suffix}'); shutil.copyfile(s, fs[-1])
    return train(df, 32, 0, epochs=2), fs

def plain_preds_seconds(learn, files):
    "Seconds plain fastai takes to predict `files`: `get_preds` over a `test_dl`"
    t0 = time.perf_counter()
    with learn.no_bar(): learn.get_preds(dl=learn.dls.test_dl([str(f) for f in files]))
    return time.perf_counter() - t0
