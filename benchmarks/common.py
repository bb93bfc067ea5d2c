"""What the benchmark scripts share: `say` (print a line and keep it), the header line naming the machine, and
`save`, which writes the kept lines to benchmarks/results/NAME.txt."""
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
